"""One encoder over several datasets: the table, resuming, and refusing stale runs."""

from __future__ import annotations

import csv
import dataclasses
import importlib
from pathlib import Path

import pytest

from optidel.downstream import FinetuneConfig, evaluate

BASE = FinetuneConfig(img_size=32, patch_size=8, epochs=1, min_steps=0, batch_size=8, head_dim=16)


@pytest.fixture(scope="module")
def two_datasets(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from optidel.data.synthetic import make_synthetic_seg_dataset

    other = make_synthetic_seg_dataset(
        tmp_path_factory.mktemp("ds") / "synthetic-other", n=16, size=48, seed=1
    )
    return [tiny_seg, other]


def test_table_and_resume(two_datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "eval"
    rows = evaluate("none", two_datasets, out, base=BASE)
    assert [r["dataset"] for r in rows] == ["synthetic-tiny", "synthetic-other"]
    table = list(csv.DictReader((out / "results.csv").open()))
    assert [t["dataset"] for t in table] == ["synthetic-tiny", "synthetic-other"]
    assert set(table[0]) >= {
        "miou",
        "iou_fg",
        "dice_fg",
        "floor_all_background_miou",
        "floor_mean_mask_prior_miou",
    }
    md = (out / "results.md").read_text()
    assert "| synthetic-tiny |" in md and "mean-mask prior miou" in md
    for name in ("synthetic-tiny", "synthetic-other"):
        assert (out / name / "DONE").is_file() and (out / name / "metrics.json").is_file()
    assert (out / "DONE").is_file()

    # resuming: finished datasets are read back, never re-run
    ft = importlib.import_module(
        "optidel.downstream.finetune"
    )  # the module (the package attribute is the function)

    def boom(cfg):
        raise AssertionError(f"re-ran {cfg.dataset}")

    monkeypatch.setattr(ft, "finetune", boom)
    again = evaluate("none", two_datasets, out, base=BASE)
    assert again == rows

    # a finished run with another protocol is refused, naming the field
    with pytest.raises(ValueError, match="epochs"):
        evaluate("none", two_datasets, out, base=dataclasses.replace(BASE, epochs=2))


def test_duplicate_names_and_missing_encoder(tiny_seg: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="share the folder name"):
        evaluate("none", [tiny_seg, tiny_seg], tmp_path / "e", base=BASE)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        evaluate(tmp_path / "nope.safetensors", [tiny_seg], tmp_path / "e", base=BASE)
