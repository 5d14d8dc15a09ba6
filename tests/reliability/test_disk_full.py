"""A full disk is one line naming the file and the free space, and the run folder stays resumable (issue 16, item 5).

ENOSPC is injected where a real full disk would hit: half-way through pretrain's second checkpoint write (``torch.save``
inside the atomic writer) and while select writes ``report.html``. The rerun then finishes, and the pretrain ends with
the same weights as a run that never failed.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from optidel.runtime.errors import OptidelError, RunFileError
from reliability.conftest import DiskFullRun
from reliability.helpers import invoke, one_line_error, pretrain_args, same_tensors


def test_pretrain_checkpoint_on_a_full_disk_is_one_line_and_resumes_exactly(
    disk_full_pretrain: DiskFullRun, clean_pretrain: Path, tiny_seg: Path, tmp_path: Path
):
    run = disk_full_pretrain
    ckpt = run.out / "checkpoint.pt"
    assert run.exit_code == 1
    msg = one_line_error(run.output)
    assert f"no space left on device writing {ckpt}" in msg and "free on" in msg and "--resume" in msg
    assert not (run.out / "DONE").exists()
    assert not list(run.out.glob(".*.tmp")), "the partial temporary file must be removed"
    # the step-3 checkpoint (and its step file) survived the failed step-6 write untouched
    assert json.loads((run.out / "checkpoint.json").read_text())["step"] == 3
    assert torch.load(ckpt, weights_only=True)["step"] == 3

    out = tmp_path / "resumed"
    shutil.copytree(run.out, out)
    result = invoke("pretrain", *pretrain_args(tiny_seg), "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert (out / "DONE").is_file()
    assert "resumed from" in (out / "log.txt").read_text()
    for name in ("encoder.safetensors", "mae.safetensors"):
        assert same_tensors(out / name, clean_pretrain / name), f"{name} differs from the uninterrupted run"


def _select_fakes():
    """tests/select/select_fakes.py (the fast fake proposer and pool maker), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "select" / "select_fakes.py"
    spec = importlib.util.spec_from_file_location("select_fakes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest(out: Path) -> dict[str, list]:
    """manifest.parquet as comparable lists (NaN != NaN, so NaN becomes the string "nan")."""
    d = pq.read_table(out / "manifest.parquet").to_pydict()
    return {k: ["nan" if isinstance(x, float) and x != x else x for x in v] for k, v in d.items()}


def test_select_report_on_a_full_disk_is_one_line_and_the_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import optidel.runtime.atomic as atomic
    from optidel.select.pipeline import run_selection, selection_config

    fakes = _select_fakes()
    pool = str(fakes.make_pool(tmp_path / "pool", 8))
    out = tmp_path / "sel"
    cfg = selection_config(pool=[pool], out=out, ratio=0.25, **{"runtime.shard_size": 4})
    real_open = atomic.atomic_open

    @contextlib.contextmanager
    def full_disk_at_the_report(path, mode="wb"):
        with real_open(path, mode) as f:
            if Path(path).name == "report.html":
                f.write(b"<html>half a report")
                raise OSError(errno.ENOSPC, "No space left on device")
            yield f

    monkeypatch.setattr(atomic, "atomic_open", full_disk_at_the_report)
    with pytest.raises(RunFileError) as err:
        run_selection(cfg, proposer=fakes.FakeGridProposer())
    assert isinstance(err.value, OptidelError) and isinstance(err.value, OSError)
    msg = str(err.value)
    assert (
        "\n" not in msg
        and f"no space left on device writing {out / 'report.html'}" in msg
        and "free on" in msg
    )
    assert not (out / "DONE").exists() and not (out / "report.html").exists()
    assert not list(out.glob(".*.tmp"))
    manifest_before = _manifest(out)

    monkeypatch.setattr(atomic, "atomic_open", real_open)  # space freed
    run_selection(cfg, proposer=fakes.FakeGridProposer())
    assert (out / "DONE").is_file() and (out / "report.html").stat().st_size > 1000
    assert _manifest(out) == manifest_before
