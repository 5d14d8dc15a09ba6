"""Model files never run code, and bad ones are refused with one line (issue 16, items 1 and 6).

The attack: a file that is valid safetensors AND a legacy torch tar/pickle whose payload creates a marker file
(:mod:`reliability.helpers`). Every command that takes a model file (``finetune --encoder``, ``evaluate --encoder``,
``select --embedder``) must refuse it with one line and no traceback, and the payload must never run. Even when it is
renamed ``*.safetensors`` (so it is accepted), loading it must not reach ``torch.load``, timm's checkpoint loader or
pickle: the weights come from the safetensors data section only.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from optidel.models.encoder_io import (
    EncoderFileError,
    EncoderFileNotFound,
    check_encoder,
    load_encoder,
)
from reliability.conftest import DiskFullRun
from reliability.helpers import invoke, one_line_error, polyglot_runs_payload, run_cli


def test_the_polyglot_is_a_real_attack(polyglot: tuple[Path, Path], tiny_encoder: Path):
    path, marker = polyglot
    assert load_file(path).keys() == load_file(tiny_encoder).keys()  # a valid safetensors encoder...
    assert not marker.exists()
    assert polyglot_runs_payload(path, marker)  # ...whose payload runs under torch.load(weights_only=False)
    marker.unlink()


def test_polyglot_refused_by_finetune_evaluate_and_select(
    polyglot: tuple[Path, Path], tiny_seg: Path, tiny_pool: Path, tmp_path: Path
):
    path, marker = polyglot
    assert not marker.exists()
    common = ["--img-size", "32", "--epochs", "1", "--batch-size", "4"]
    runs = {
        "finetune": ["finetune", "--encoder", path, "--dataset", tiny_seg, "--out", tmp_path / "ft", *common],
        "evaluate": ["evaluate", "--encoder", path, "--dataset", tiny_seg, "--out", tmp_path / "ev", *common],
        "select": [
            "select",
            "--pool",
            tiny_pool,
            "--patches",
            "grid",
            "--embedder",
            path,
            "--out",
            tmp_path / "sel",
        ],
    }
    for name, args in runs.items():
        if name == "select":  # one real process (its output is what a user sees); the others in this process
            proc = run_cli(*args)
            code, output = proc.returncode, proc.stdout
        else:
            result = invoke(*args)
            code, output = result.exit_code, result.output
        assert code == 2, (name, output[-2000:])
        msg = one_line_error(output)
        assert str(path) in msg and "*.safetensors" in msg, (name, msg)
        assert not marker.exists(), f"{name} ran the payload"
    assert not (tmp_path / "ft" / "DONE").exists() and not (tmp_path / "sel" / "DONE").exists()


def _forbid_unpicklers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every loader that may unpickle fail the test if called; returns the log of attempted calls."""
    import timm.models
    import timm.models._helpers as helpers

    calls: list[str] = []

    def forbidden(name: str):
        def fail(*args, **kwargs):
            calls.append(f"{name}{args[:1]}")
            raise AssertionError(f"{name} called with {args[:1]}")

        return fail

    monkeypatch.setattr(torch, "load", forbidden("torch.load"))
    monkeypatch.setattr(torch.serialization, "load", forbidden("torch.serialization.load"))
    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(pickle, "Unpickler", forbidden("pickle.Unpickler"))
    for name in ("load_checkpoint", "load_state_dict", "_torch_load"):
        if hasattr(helpers, name):
            monkeypatch.setattr(helpers, name, forbidden(f"timm.{name}"))
        if hasattr(timm.models, name):
            monkeypatch.setattr(timm.models, name, forbidden(f"timm.models.{name}"))
    return calls


def test_user_path_never_reaches_torch_load_or_timm_loader(
    polyglot: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tiny_seg: Path, tmp_path: Path
):
    from optidel.downstream.config import FinetuneConfig
    from optidel.downstream.finetune import build_encoder
    from optidel.select.patches.embedders import TimmPatchEmbedder

    evil, marker = polyglot
    accepted = shutil.copy(evil, tmp_path / "evil.safetensors")  # the same bytes under an accepted name
    assert not marker.exists()
    calls = _forbid_unpicklers(monkeypatch)

    model = load_encoder(accepted)
    want = load_file(accepted)  # the weights are the safetensors data section, nothing else
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    at_64 = load_encoder(accepted, img_size=64)  # the resampling path (another image size)
    assert at_64.pos_embed.shape[1] == 1 + (64 // 8) ** 2
    cfg = FinetuneConfig(encoder=str(accepted), dataset=str(tiny_seg), img_size=32)
    assert build_encoder(cfg)[1]["path"] == str(Path(accepted).resolve())
    assert TimmPatchEmbedder(encoder_path=accepted, img_size=32).dim == 192
    assert calls == [] and not marker.exists()


def _save(path: Path, state: dict[str, torch.Tensor], **metadata: str) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def test_wrong_keys_and_shapes_are_listed_in_one_line(tiny_encoder: Path, tmp_path: Path, tiny_seg: Path):
    meta = {
        "arch": "vit_tiny_patch16_224",
        "timm_kwargs": json.dumps({"num_classes": 0, "img_size": 32, "patch_size": 8}),
    }
    state = load_file(tiny_encoder)
    state.pop("blocks.0.norm1.weight")
    state["extra.weight"] = torch.zeros(3)
    state["pos_embed"] = torch.zeros(1, 5, 192)
    bad = _save(tmp_path / "bad.safetensors", state, **meta)
    with pytest.raises(EncoderFileError) as err:
        load_encoder(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg
    assert "1 missing keys (blocks.0.norm1.weight)" in msg
    assert "1 unexpected keys (extra.weight)" in msg
    assert "pos_embed (1, 5, 192) vs (1, 17, 192)" in msg

    result = invoke(
        "finetune", "--encoder", bad, "--dataset", tiny_seg, "--out", tmp_path / "ft", "--img-size", "32"
    )
    assert result.exit_code == 2 and "missing keys" in one_line_error(result.output)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"arch": "vit_tiny_patch16_224", "timm_kwargs": "{img_size: 32"}, "'timm_kwargs' is not JSON"),
        ({"arch": "vit_tiny_patch16_224", "timm_kwargs": "[32, 8]"}, "must be a JSON object"),
        ({"timm_kwargs": "{}"}, "no 'arch'"),
        ({"arch": "no_such_net", "timm_kwargs": "{}"}, "architecture 'no_such_net'"),
        (
            {"arch": "vit_tiny_patch16_224", "timm_kwargs": '{"img_size": 30, "patch_size": 8}'},
            "not a multiple",
        ),
        ({"arch": "vit_tiny_patch16_224", "timm_kwargs": '{"img_size": "big"}'}, "must be integers"),
    ],
)
def test_bad_metadata_is_one_clear_line(tmp_path: Path, metadata: dict[str, str], expected: str):
    path = _save(tmp_path / "enc.safetensors", {"w": torch.zeros(2)}, **metadata)
    with pytest.raises(EncoderFileError, match=expected) as err:
        check_encoder(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_not_safetensors_or_missing(tmp_path: Path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(EncoderFileError, match="not a readable safetensors file"):
        load_encoder(junk)
    with pytest.raises(EncoderFileNotFound, match="does not exist"):
        load_encoder(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):  # still a FileNotFoundError for callers that catch that
        load_encoder(tmp_path / "nope.safetensors")


def test_a_pretrain_folder_is_an_encoder_only_when_finished(
    disk_full_pretrain: DiskFullRun, clean_pretrain: Path
):
    from optidel.select.patches.proposers import make_embedder

    unfinished = disk_full_pretrain.out
    for use in (load_encoder, check_encoder, lambda p: make_embedder(str(p), img_size=32)):
        with pytest.raises(EncoderFileError, match=r"unfinished pretrain run \(no DONE\).*--resume") as err:
            use(unfinished)
        assert str(unfinished) in str(err.value)
    model = load_encoder(clean_pretrain)  # a finished run folder stands for its encoder.safetensors
    assert all(
        torch.equal(v, load_file(clean_pretrain / "encoder.safetensors")[k])
        for k, v in model.state_dict().items()
    )


def test_an_mae_run_for_select_scores_is_checked_the_same_way(
    disk_full_pretrain: DiskFullRun, clean_pretrain: Path, tmp_path: Path
):
    from optidel.models.mae import load_mae

    with pytest.raises(EncoderFileError, match=r"unfinished pretrain run \(no DONE\)"):
        load_mae(disk_full_pretrain.out)
    assert load_mae(clean_pretrain).vit is not None
    good = load_file(clean_pretrain / "mae.safetensors")
    bad = _save(
        tmp_path / "mae.safetensors", good, arch="vit_tiny_patch16_224", timm_kwargs="{oops", mae="{}"
    )
    with pytest.raises(EncoderFileError, match="not a usable MAE file") as err:
        load_mae(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_no_code_path_in_optidel_can_unpickle_a_file():
    """Every ``torch.load`` in the package passes ``weights_only=True``; nothing calls pickle loaders, ``np.load``
    with ``allow_pickle=True`` or timm's ``checkpoint_path=`` / ``load_checkpoint`` (a guard against regressions)."""
    import ast

    import optidel

    problems = []
    for path in Path(optidel.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
            unsafe = (
                name.endswith("torch.load") and kw.get("weights_only") != "True",
                name.endswith(("pickle.load", "pickle.loads", "Unpickler")),
                "checkpoint_path" in kw,
                "timm" in name and name.endswith(("load_checkpoint", "load_state_dict")),
                name.endswith("np.load") and kw.get("allow_pickle") == "True",
            )
            if any(unsafe):
                problems.append(f"{path.name}:{node.lineno} {name}")
    assert problems == []
