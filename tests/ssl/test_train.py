"""The pre-training loop end to end: outputs, re-runs, a real kill + resume, 2-process DDP, bad images, the CLI.

Runs are tiny (18 generated 64 px images resized to 32 px, ViT-Tiny patch 8, batch 8, a few steps) and use one
torch thread (in this process and in every subprocess) so results are comparable and the shared cores are spared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from optidel.cli import app
from optidel.config import load_config
from optidel.data.image import ImageDecodeError
from optidel.models.encoder_io import load_encoder, read_encoder_metadata
from optidel.models.mae import load_mae
from optidel.ssl.config import PretrainConfig
from optidel.ssl.metrics_log import METRIC_COLUMNS
from optidel.ssl.plots import read_metrics
from optidel.ssl.result import PretrainError
from optidel.ssl.train import pretrain

STEPS = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _args(tiny_seg: Path, steps: int = STEPS) -> list[str]:
    return [
        "--data", f"{tiny_seg}:train",
        "--img-size", "32",
        "--patch-size", "8",
        "--batch-size", "8",
        "--steps", str(steps),
        "--seed", "3",
        "--checkpoint-every", "3",
        "--set", "log_every=1",
        "--set", "mae.decoder_depth=1",
        "--set", "mae.decoder_dim=64",
    ]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPTIDEL_PROGRESS="0", HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def _hooked(config: Path, out: Path, *options: str) -> list[str]:
    """A subprocess that runs ``pretrain`` with test callbacks (see hooked_pretrain.py)."""
    script = Path(__file__).with_name("hooked_pretrain.py")
    return [sys.executable, str(script), str(config), str(out), *options]


def _steps(run: Path) -> list[int]:
    return [int(r["step"]) for r in read_metrics(run / "metrics.csv")]


@pytest.fixture(scope="module")
def mae_run(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted MAE run made through the CLI (in this process)."""
    out = tmp_path_factory.mktemp("runs") / "mae"
    result = CliRunner().invoke(app, ["pretrain", *_args(tiny_seg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_run_folder_holds_every_output(mae_run: Path):
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.csv",
        "checkpoint.pt",
        "encoder.safetensors",
        "mae.safetensors",
        "loss.png",
        "DONE",
    ):
        assert (mae_run / name).is_file(), name
    cfg = load_config(PretrainConfig, mae_run / "config.yaml")
    assert (
        cfg.arch == "vit_tiny" and cfg.steps == STEPS and cfg.mae.decoder_dim == 64
    )  # resolved, with overrides
    rows = read_metrics(mae_run / "metrics.csv")
    assert tuple(rows[0]) == METRIC_COLUMNS
    assert _steps(mae_run) == list(range(1, STEPS + 1))
    assert rows[-1]["loss"] < rows[0]["loss"]  # it learns
    assert rows[0]["lr"] < rows[1]["lr"] or rows[0]["lr"] == pytest.approx(1e-3)  # warmup, then the peak
    assert rows[-1]["lr"] < 1e-3
    assert (mae_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    done = json.loads((mae_run / "DONE").read_text())
    assert done["steps"] == STEPS and done["n_images"] == 18 and done["final_loss"] == rows[-1]["loss"]
    ckpt = torch.load(mae_run / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == STEPS and {"model", "optimizer", "scheduler", "rng", "sampler"} <= set(ckpt)
    assert ckpt["sampler"]["n_images"] == 18


def test_encoder_loads_into_timm_and_matches_the_mae(mae_run: Path):
    path = mae_run / "encoder.safetensors"
    meta = read_encoder_metadata(path)
    assert meta["arch"] == "vit_tiny_patch16_224"
    assert meta["timm_kwargs"] == {"num_classes": 0, "img_size": 32, "patch_size": 8}
    model = timm.create_model(meta["arch"], checkpoint_path=str(path), **meta["timm_kwargs"])
    mae = load_mae(mae_run)
    for k, v in model.state_dict().items():
        assert torch.equal(v, mae.vit.state_dict()[k]), k
    assert load_encoder(path)(torch.rand(2, 3, 32, 32)).shape == (2, 192)


def test_finished_run_is_left_alone_and_conflicts_are_errors(mae_run: Path, tiny_seg: Path):
    mtime = (mae_run / "encoder.safetensors").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["pretrain", *_args(tiny_seg), "--out", str(mae_run), "--workers", "1"])
    assert result.exit_code == 0 and "already done" in result.output
    assert (mae_run / "encoder.safetensors").stat().st_mtime_ns == mtime

    cfg = load_config(PretrainConfig, mae_run / "config.yaml")
    import dataclasses

    for resume in (False, True):
        with pytest.raises(PretrainError, match=r"different config \(lr: 0\.001 \(in the folder\) vs 0\.002"):
            pretrain(dataclasses.replace(cfg, lr=2e-3), mae_run, resume=resume)
    result = CliRunner().invoke(app, ["pretrain", *_args(tiny_seg), "--out", str(mae_run), "--lr", "0.002"])
    assert result.exit_code == 2 and "different config" in result.output


def test_killed_run_resumes_to_the_same_weights(mae_run: Path, tiny_seg: Path, tmp_path: Path):
    out = tmp_path / "killed"
    # the same config as the uninterrupted run, slowed down by an on_step callback so it can be killed mid-way
    cmd = _hooked(mae_run / "config.yaml", out, "--delay", "0.4")
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE)
    info = out / "checkpoint.json"
    deadline = time.monotonic() + 120
    ckpt_step = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if info.is_file():
                ckpt_step = json.loads(info.read_text())["step"]
                if (out / "metrics.csv").is_file() and max(_steps(out), default=0) > ckpt_step:
                    break  # past a checkpoint, mid-way between two
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "DONE").exists() and ckpt_step is not None and ckpt_step < STEPS
    assert max(_steps(out)) > ckpt_step  # rows the resumed run must not repeat

    # rerun here (the killed process was real; its successor need not be): without --resume it is refused
    args = ["pretrain", *_args(tiny_seg), "--out", str(out)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--resume" in refused.output
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (out / "DONE").is_file()
    assert f"resumed from {out / 'checkpoint.pt'} at step {ckpt_step}" in (out / "log.txt").read_text()
    assert _steps(out) == list(range(1, STEPS + 1))  # no step twice
    for name in ("encoder.safetensors", "mae.safetensors"):
        ref, got = load_file(mae_run / name), load_file(out / name)
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.equal(ref[k], got[k]), f"{name}: {k} differs after kill + resume"
    assert [r["loss"] for r in read_metrics(out / "metrics.csv")] == [
        r["loss"] for r in read_metrics(mae_run / "metrics.csv")
    ]


def test_two_process_ddp_keeps_ranks_identical_and_the_global_batch(
    mae_run: Path, tiny_seg: Path, tmp_path: Path
):
    import dataclasses

    from optidel.config import save_config

    steps = 3
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cfg = dataclasses.replace(load_config(PretrainConfig, mae_run / "config.yaml"), steps=steps)
    save_config(cfg, tmp_path)  # tmp_path/config.yaml: the CLI arguments below with 3 steps
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += _hooked(tmp_path / "config.yaml", ddp_out, "--rank-state")[1:]  # every rank records its parameters
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((ddp_out / "debug" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    assert (ddp_out / "DONE").is_file() and _steps(ddp_out) == [1, 2, 3]

    # the same global batch in one process: identical first loss (same images, crops and masks), close afterwards
    result = CliRunner().invoke(app, ["pretrain", *_args(tiny_seg, steps), "--out", str(single_out)])
    assert result.exit_code == 0, result.output
    ddp_loss = [r["loss"] for r in read_metrics(ddp_out / "metrics.csv")]
    one_loss = [r["loss"] for r in read_metrics(single_out / "metrics.csv")]
    assert ddp_loss[0] == pytest.approx(one_loss[0], rel=1e-5)
    assert ddp_loss == pytest.approx(one_loss, rel=1e-3)


def test_simclr_with_bad_images_skipped_or_fatal(tmp_path: Path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        Image.fromarray(torch.randint(0, 256, (40, 40, 3), generator=g, dtype=torch.uint8).numpy()).save(
            folder / f"{i}.png"
        )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    base = ["--data", str(folder), "--ssl", "simclr", "--img-size", "32", "--batch-size", "4", "--steps", "2"]
    base += ["--set", "simclr.proj_hidden_dim=64"]

    result = CliRunner().invoke(app, ["pretrain", *base, "--out", str(tmp_path / "lenient")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "lenient"
    done = json.loads((run / "DONE").read_text())
    assert done["n_images"] == 6 and done["n_bad_images"] == 1
    assert "broken.png" in (run / "log.txt").read_text()
    assert load_config(PretrainConfig, run / "config.yaml").arch == "resnet18"
    assert load_encoder(run / "encoder.safetensors")(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert not (run / "mae.safetensors").exists()

    with pytest.raises(ImageDecodeError, match="broken.png"):
        cfg = load_config(PretrainConfig, run / "config.yaml")
        import dataclasses

        pretrain(dataclasses.replace(cfg, strict=True), tmp_path / "strict")


def test_cli_help_and_input_errors(tmp_path: Path):
    runner = CliRunner()
    help_text = runner.invoke(app, ["pretrain", "--help"]).output
    for option in (
        "--data",
        "--ssl",
        "--arch",
        "--img-size",
        "--patch-size",
        "--batch-size",
        "--steps",
        "--lr",
    ):
        assert option in help_text
    for option in ("--seed", "--resume", "--config", "--set", "--workers", "--strict", "--checkpoint-every"):
        assert option in help_text
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(
        app, ["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--set", "nope=1"]
    )
    assert result.exit_code == 2 and "unknown config key" in result.output
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "x"),
            "--ssl",
            "mae",
            "--arch",
            "resnet18",
        ],
    )
    assert result.exit_code == 2 and "MAE needs a ViT" in result.output
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("steps: 5\nlr: 0.01\n")
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--data",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "y"),
            "--config",
            str(cfg_file),
        ],
    )
    assert result.exit_code == 2 and "missing does not exist" in " ".join(result.output.split())


def test_config_precedence_defaults_file_options_set(tmp_path: Path):
    from optidel.ssl.command import build_config

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("steps: 5\nlr: 0.01\nseed: 9\nmae:\n  mask_ratio: 0.5\n")
    cfg = build_config(
        cfg_file, {"lr": 0.02, "seed": None, "data": ["a", "b:train"]}, ["seed=4", "mae.decoder_depth=3"]
    )
    assert cfg.steps == 5  # from the file
    assert cfg.lr == 0.02  # a named option beats the file
    assert cfg.seed == 4  # --set beats both
    assert cfg.mae.mask_ratio == 0.5 and cfg.mae.decoder_depth == 3  # nested keys from file and --set merge
    assert cfg.data == ("a", "b:train") and cfg.batch_size == 64  # untouched default
    assert (
        cfg.resolved().arch == "vit_tiny"
        and build_config(None, {"ssl": "simclr"}, []).resolved().arch == "resnet18"
    )


def test_config_differences_ignore_what_cannot_change_the_result(tmp_path: Path):
    import dataclasses

    from optidel.ssl.run_folder import config_differences

    data = tmp_path / "pool"
    a = PretrainConfig(data=(str(data),), ssl="simclr")
    b = dataclasses.replace(
        a,
        workers=7,
        checkpoint_every=3,
        log_every=1,
        patch_size=16,
        mae=dataclasses.replace(a.mae, mask_ratio=0.5),
    )
    assert (
        config_differences(a, b) == []
    )  # execution fields, MAE settings and a CNN's patch size do not matter
    rel = PretrainConfig(data=(os.path.relpath(data),), ssl="simclr")
    assert config_differences(a, rel) == []  # the same folder written differently
    diffs = config_differences(a, dataclasses.replace(a, seed=1, arch="resnet50"))
    assert [d.split(":")[0] for d in diffs] == ["arch", "seed"]
