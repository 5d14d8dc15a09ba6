"""A bad ``checkpoint.pt`` in a run folder is one line on ``--resume``, never a traceback (issue 16, items 1 and 6).

Checkpoints are read with ``torch.load(weights_only=True)`` and then checked field by field. The folder is a real
unfinished run (the disk-full run: checkpoint at step 3, no DONE) whose checkpoint is replaced by each bad variant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from reliability.conftest import DiskFullRun
from reliability.helpers import invoke, one_line_error, pretrain_args, run_cli


def _with_checkpoint(run: DiskFullRun, dest: Path, make) -> Path:
    shutil.copytree(run.out, dest)
    make(dest / "checkpoint.pt")
    return dest


def _good_state(run: DiskFullRun) -> dict:
    return torch.load(run.out / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("list", "not an optidel checkpoint (holds a list, not a dict)"),
        ("missing-keys", "not an optidel checkpoint (missing model, optimizer"),
        ("wrong-types", "a malformed checkpoint (step is a str; sampler has no 'data_fingerprint')"),
        ("wrong-model", "its model weights do not fit this run's model (1 missing keys"),
        ("truncated", "cannot be read"),
    ],
)
def test_bad_checkpoint_is_one_line_naming_the_file(
    disk_full_pretrain: DiskFullRun, tiny_seg: Path, tmp_path: Path, variant: str, expected: str
):
    good = _good_state(disk_full_pretrain)

    def make(path: Path) -> None:
        if variant == "list":
            torch.save([1, 2, 3], path)
        elif variant == "missing-keys":
            torch.save({"format": 1, "step": 3}, path)
        elif variant == "wrong-types":
            sampler = {k: v for k, v in good["sampler"].items() if k != "data_fingerprint"}
            torch.save({**good, "step": "three", "sampler": sampler}, path)
        elif variant == "wrong-model":
            model = dict(good["model"])
            model.pop(sorted(model)[0])
            torch.save({**good, "model": model}, path)
        else:
            path.write_bytes(path.read_bytes()[:1000])

    out = _with_checkpoint(disk_full_pretrain, tmp_path / variant, make)
    result = invoke("pretrain", *pretrain_args(tiny_seg), "--out", out, "--resume")
    assert result.exit_code == 2, result.output
    msg = one_line_error(result.output)
    assert str(out / "checkpoint.pt") in msg and expected in msg, msg
    assert "restart the run from step 0" in msg
    assert not (out / "DONE").exists()


def test_a_pickle_with_code_as_checkpoint_is_refused_without_running(
    disk_full_pretrain: DiskFullRun, polyglot: tuple[Path, Path], tiny_seg: Path, tmp_path: Path
):
    evil, marker = polyglot
    assert not marker.exists()
    out = _with_checkpoint(disk_full_pretrain, tmp_path / "evil", lambda p: shutil.copy(evil, p))
    proc = run_cli(
        "pretrain", *pretrain_args(tiny_seg), "--out", out, "--resume"
    )  # a real process: no traceback
    assert proc.returncode == 2
    msg = one_line_error(proc.stdout)
    assert str(out / "checkpoint.pt") in msg and "cannot be read" in msg
    assert not marker.exists()
