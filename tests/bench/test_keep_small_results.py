"""benchmarks/keep_small_results.py: a save then a restore brings back what the tables read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _keep():
    spec = importlib.util.spec_from_file_location(
        "keep_small_results", ROOT / "benchmarks" / "keep_small_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_save_then_restore_keeps_selections_vinfo_and_finished_finetunings(tmp_path):
    keep = _keep()
    run, kept, fresh = tmp_path / "run", tmp_path / "kept", tmp_path / "fresh"
    for name in ("DONE", "metrics.json", "per_image.csv", "config.yaml", "history.csv"):
        _write(run / "finetune" / "optidel_r0.05_mae_s0" / "busi_lf0.1" / name)
    _write(run / "finetune" / "random_r0.05_mae_s0" / "busi_lf0.1" / "metrics.json")  # unfinished: no DONE
    for name in ("DONE", "vinfo.json", "selected.csv"):
        _write(run / "select" / "optidel_r0.05_s0" / name)
    _write(run / "select" / "optidel_r0.05_s1" / "vinfo.json")  # unfinished selection: no DONE
    _write(run / "select" / "optidel_r0.05_s1" / "selected.csv")

    keep.copy_small(run, kept)
    keep.copy_small(kept, fresh)

    assert (fresh / "select" / "optidel_r0.05_s0" / "vinfo.json").is_file()
    assert not (
        fresh / "select" / "optidel_r0.05_s0" / "DONE"
    ).exists()  # a restored marker would skip the stage
    assert not (fresh / "select" / "optidel_r0.05_s1").exists()
    cell = fresh / "finetune" / "optidel_r0.05_mae_s0" / "busi_lf0.1"
    assert sorted(p.name for p in cell.iterdir()) == ["DONE", "config.yaml", "metrics.json", "per_image.csv"]
    assert not (fresh / "finetune" / "random_r0.05_mae_s0").exists()
