"""The demo in its smallest setting: it runs through the benchmark runner, labels rows by the actual method and
ratio, says SYNTHETIC and what the rows mean, and a rerun reuses everything; its real-data pool is a seeded sample."""

from __future__ import annotations

import json
from pathlib import Path

from optidel.bench.config import BenchmarkConfig
from optidel.bench.shipped import preset_path
from optidel.config import resolve_config
from optidel.demo.pipeline import quick_config, run_demo
from optidel.demo.summary import arm_label


def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    cfg = quick_config(pool_images=8, synthetic_pairs=16)
    out = tmp_path / "demo"
    summary = run_demo(cfg, out)
    ratio = resolve_config(BenchmarkConfig, preset_path("demo-quick")).ratios[0]
    pct = f"{ratio * 100:.3g}%"  # the label comes from the preset's ratio (0.25 -> 25%), not a fixed "5%"
    assert [r["encoder"] for r in summary["rows"]] == [
        "random init",
        f"MAE on optidel {pct}",
        f"MAE on random {pct}",
    ]
    for r in summary["rows"]:
        assert 0 <= r["miou"] <= 1 and r["seeds"] == [0] and "mean-mask prior" in r["floors"]
    md = (out / "summary.md").read_text()
    assert "SYNTHETIC" in md and "What this means:" in md and "BENCHMARKS.md" in md
    assert "Over 1 seed" in summary["verdict"] and "one seed: no spread" in summary["verdict"]
    # the benchmark runner's folders and tables: the demo is a preset of it
    assert (out / "results.md").is_file() and (out / "finetune").is_dir() and (out / "config.yaml").is_file()
    assert (out / summary["report"]).is_file() and "optidel" in summary["report"]
    n_pool = 8 + 12  # bundled crops + the synthetic task's 12 train images
    selected = out / "select" / f"random_r{ratio:g}_s0" / "images"
    assert len(list(selected.glob("*.png"))) == round(ratio * n_pool)
    assert (out / "DONE").is_file() and not (out / ".lock").exists()
    again = run_demo(cfg, out)  # finished stages are reused
    assert [r["miou"] for r in again["rows"]] == [r["miou"] for r in summary["rows"]]
    assert json.loads((out / "summary.json").read_text())["synthetic"] is True


def test_labels_follow_method_ratio_and_ssl() -> None:
    assert arm_label("optidel", 0.05, "mae") == "MAE on optidel 5%"
    assert arm_label("random", 0.25, "simclr") == "SimCLR on random 25%"
    assert arm_label("full", 1.0, "mae") == "MAE on the full pool"
    assert arm_label("random-init", 1.0, "mae") == "random init"


def test_real_data_pool_is_a_seeded_sample_of_the_train_split(tmp_path: Path, tiny_seg: Path) -> None:
    from optidel.data.pool import list_pool
    from optidel.demo.data import train_sample

    folder = Path(train_sample(tiny_seg, 12, 0, tmp_path))
    pool = list_pool([folder])
    train = {im.path.resolve(): im for im in list_pool([f"{tiny_seg}:train"])}
    assert len(pool) == 12 and all(im.path.resolve() in train for im in pool)  # train images only
    assert train_sample(tiny_seg, 12, 0, tmp_path) == folder  # reused
    same = [im.path.resolve() for im in list_pool([train_sample(tiny_seg, 12, 0, tmp_path / "b")])]
    assert same == [im.path.resolve() for im in pool]  # same seed, same sample
    other = {im.path.resolve() for im in list_pool([train_sample(tiny_seg, 12, 1, tmp_path / "c")])}
    assert other != {im.path.resolve() for im in pool}
    assert train_sample(tiny_seg, 100, 0, tmp_path) == f"{tiny_seg}:train"  # small split: used whole


def _fake_rows(tmp_path: Path, arms: dict[tuple[str, float], float], seeds: int) -> list[dict]:
    """Result rows whose per-image counts make each arm's mIoU about ``quality`` (4 test images, 100 px each)."""
    import csv

    import numpy as np

    rows = []
    for (method, ratio), quality in arms.items():
        for s in range(seeds):
            errors = np.random.default_rng([s, int(quality * 100)]).integers(
                0, 1 + int(20 * (1 - quality)), 4
            )
            d = tmp_path / f"{method}-{s}"
            d.mkdir()
            with open(d / "per_image.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "tp", "fp", "fn", "tn"])
                w.writerows([[f"im{i}", 20 - e, e, e, 80 - e] for i, e in enumerate(errors)])
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    "ssl": "mae",
                    "seed": s,
                    "miou": quality,
                    "iou_fg": 0.5,
                    "dice_fg": 0.5,
                    "run_dir": str(d),
                }
            )
    return rows


def test_verdict_calls_a_difference_only_beyond_the_interval_and_the_seed_spread(tmp_path: Path) -> None:
    from optidel.demo.summary import comparisons, summary_rows, verdict

    rows = _fake_rows(tmp_path, {("random-init", 0.0): 0.2, ("optidel", 0.1): 0.95, ("random", 0.1): 0.95}, 3)
    comps = comparisons(summary_rows(rows), n_boot=200)
    assert [(c["a"], c["b"]) for c in comps] == [
        ("MAE on optidel 10%", "random init"),
        ("MAE on random 10%", "random init"),
        ("MAE on optidel 10%", "MAE on random 10%"),
    ]
    text = verdict(comps, 3, synthetic=False)
    assert text.startswith("Over 3 seeds:")
    assert (
        "MAE on optidel 10% beats random init by" not in text
    )  # the clause names the difference in brackets
    assert "MAE on optidel 10% beats random init (+" in text
    assert "MAE on optidel 10% and MAE on random 10% are not distinguishable (+0.000 mIoU" in text


def test_verdict_names_a_lead_whose_interval_excludes_0_but_not_the_seed_spread() -> None:
    """An interval above or below 0 that twice the seed s.d. swallows is neither "beats" nor "not distinguishable"."""
    from optidel.demo.summary import verdict
    from optidel.metrics.bootstrap import Interval

    def comp(iv: Interval, seeds: int) -> dict:
        return {"a": "MAE on random 10%", "b": "random init", "interval": iv, "spread": 0.124, "seeds": seeds}

    behind = comp(Interval(-0.117, -0.198, -0.040), 2)
    text = verdict([{**behind, "clear": False}], 2, synthetic=True)
    assert text == (
        "Over 2 seeds on a SYNTHETIC task: MAE on random 10% is behind random init but not clearly (-0.117 mIoU, "
        "95% CI [-0.198, -0.040]; less than twice the seed s.d., 0.124)."
    )
    ahead = comp(Interval(0.05, 0.01, 0.09), 1)
    assert "MAE on random 10% is ahead of random init but not clearly (+0.050 mIoU" in verdict(
        [{**ahead, "clear": False}], 1, synthetic=False
    )
    assert "; one seed)" in verdict([{**ahead, "clear": False}], 1, synthetic=False)
