"""The demo in its smallest setting: every stage runs, outputs say SYNTHETIC, a rerun reuses everything."""

from __future__ import annotations

import json
from pathlib import Path

from optidel.demo.pipeline import quick_config, run_demo


def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    cfg = quick_config(pool_images=16, synthetic_pairs=16)
    summary = run_demo(cfg, tmp_path / "demo")
    out = tmp_path / "demo"
    assert [r["encoder"] for r in summary["rows"]] == ["random init", "MAE on optidel 5%", "MAE on random 5%"]
    for r in summary["rows"]:
        assert 0 <= r["miou"] <= 1 and set(r["floors"]) >= {"all-background", "mean-mask prior"}
    md = (out / "summary.md").read_text()
    assert "SYNTHETIC" in md and "not show" in md and "BENCHMARKS.md" in md
    assert (out / "select-optidel" / "report.html").is_file()
    assert len(list((out / "select-optidel" / "images").glob("*.png"))) == 4  # 0.25 x 16 pool images
    assert (out / "DONE").is_file()
    again = run_demo(cfg, out)  # finished stages are reused
    assert [r["miou"] for r in again["rows"]] == [r["miou"] for r in summary["rows"]]
    assert json.loads((out / "summary.json").read_text())["synthetic"] is True


def test_real_data_pool_is_a_seeded_sample_of_the_train_split(tmp_path: Path, tiny_seg: Path) -> None:
    from optidel.data.pool import list_pool
    from optidel.demo.pipeline import _train_sample

    folder = Path(_train_sample(tiny_seg, 12, 0, tmp_path))
    pool = list_pool([folder])
    train = {im.path.resolve(): im for im in list_pool([f"{tiny_seg}:train"])}
    assert len(pool) == 12 and all(
        im.path.resolve() in train for im in pool
    )  # train images only, no test image
    assert _train_sample(tiny_seg, 12, 0, tmp_path) == folder  # reused
    assert [im.path.resolve() for im in list_pool([_train_sample(tiny_seg, 12, 0, tmp_path / "b")])] == [
        im.path.resolve() for im in pool
    ]  # same seed, same sample
    other = {im.path.resolve() for im in list_pool([_train_sample(tiny_seg, 12, 1, tmp_path / "c")])}
    assert other != {im.path.resolve() for im in pool}
    assert _train_sample(tiny_seg, 100, 0, tmp_path) == f"{tiny_seg}:train"  # small split: used whole
