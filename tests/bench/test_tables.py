"""Benchmark tables from synthetic results: the informative rule, the average over informative datasets only, the
per-centre table, the SSL side-by-side table and the paired CIs of an average (no training: fake run folders)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from optidel.bench.tables import (
    TableContext,
    cells_markdown,
    informativeness,
    results_markdown,
    verdict,
    write_tables,
)
from optidel.metrics.bootstrap import (
    Interval,
    mean_paired_miou_difference,
    miou_from_counts,
    paired_miou_difference,
)

N_IMG = 12


def _counts(rng: np.random.Generator, quality: float) -> np.ndarray:
    """(N_IMG, 4) tp, fp, fn, tn of 100-pixel images, 20 foreground each; higher quality = fewer errors."""
    fp = rng.integers(0, 1 + int(20 * (1 - quality)), N_IMG)
    fn = rng.integers(0, 1 + int(20 * (1 - quality)), N_IMG)
    fn = np.minimum(fn, 20)
    tp = 20 - fn
    tn = 80 - fp
    return np.stack([tp, fp, fn, tn], axis=1)


def _run(root: Path, name: str, counts: np.ndarray, ids: list[str]) -> str:
    d = root / name
    d.mkdir(parents=True)
    with open(d / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "iou_fg", "tp", "fp", "fn", "tn"])
        for i, c in zip(ids, counts, strict=True):
            w.writerow([i, 0.5, *map(int, c)])
    return str(d)


def _rows(tmp_path: Path, quality: dict[tuple[str, str, str], float], seeds=(0, 1, 2)) -> list[dict]:
    """Rows like collect_rows': one per (method, dataset, ssl, seed); miou from the written counts. Counts depend on
    (quality, dataset, seed) only: two arms of equal quality on a dataset get identical results."""
    rows = []
    for (method, ds, ssl), q in quality.items():
        ratio = {"random-init": 0.0, "full": 1.0}.get(method, 0.05)
        ids = [f"{ds}-{i}" for i in range(N_IMG)]
        for s in seeds:
            c = _counts(np.random.default_rng([int(q * 1000), len(ds), s]), q)
            run = _run(tmp_path, f"{method}-{ds}-{ssl}-{s}", c, ids)
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    "ssl": ssl,
                    "seed": s,
                    "dataset": ds,
                    "label_fraction": 0.1,
                    "miou": float(miou_from_counts(c.sum(0))),
                    "iou_fg": 0.5,
                    "dice_fg": 0.6,
                    "normdel": float("nan") if method == "random-init" else 60.0,
                    "run_dir": run,
                }
            )
    return rows


def test_informative_rule_and_average_excludes_the_uninformative(tmp_path: Path) -> None:
    quality = {}
    for ssl in ("mae", "simclr"):
        # "polyps": full pre-training far above random init -> informative; "vessels": equal -> not informative
        quality.update({("random-init", "polyps", ssl): 0.3, ("full", "polyps", ssl): 0.9})
        quality.update({("random-init", "vessels", ssl): 0.6, ("full", "vessels", ssl): 0.6})
        quality.update({("optidel", "polyps", ssl): 0.95, ("random", "polyps", ssl): 0.85})
        quality.update({("optidel", "vessels", ssl): 0.6, ("random", "vessels", ssl): 0.6})
    rows = _rows(tmp_path, quality)
    v = informativeness(rows, "polyps", "mae", 0.1)
    full = [r["miou"] for r in rows if (r["method"], r["dataset"], r["ssl"]) == ("full", "polyps", "mae")]
    init = [
        r["miou"] for r in rows if (r["method"], r["dataset"], r["ssl"]) == ("random-init", "polyps", "mae")
    ]
    sd = max(np.std(full, ddof=1), np.std(init, ddof=1))
    assert v.informative and v.gap == pytest.approx(np.mean(full) - np.mean(init)) and v.gap > 2 * sd
    assert not informativeness(rows, "vessels", "mae", 0.1).informative
    assert "not decided" in informativeness(rows[:1], "polyps", "mae", 0.1).reason  # no full-pool run

    md = results_markdown(rows, TableContext("t", n_boot=200))
    section = md.split("## mae, label fraction 0.1")[1].split("## simclr")[0]
    avg = section.split("### average over the informative datasets")[1]
    assert "- excluded: vessels (not informative: full - random init" in avg
    assert "Averaged over: polyps." in avg
    opt = next(line for line in avg.splitlines() if line.startswith("| optidel |"))
    polyps_opt = np.mean(
        [r["miou"] for r in rows if (r["method"], r["dataset"], r["ssl"]) == ("optidel", "polyps", "mae")]
    )
    assert f"| 3 | 1 | {polyps_opt:.3f} |" in opt  # 3 seeds; the average is the informative dataset's alone
    vs_init = opt.split("|")[7]
    assert vs_init.strip().startswith("+") and vs_init.strip().endswith(
        "*"
    )  # far above random init: CI excludes 0
    # both SSL methods in the grid: a side-by-side table
    assert "## SSL methods side by side, label fraction 0.1" in md
    assert "| optidel | 0.05 | polyps |" in md.split("side by side")[1]


def test_mean_paired_difference_is_the_mean_of_the_datasets_differences() -> None:
    rng = np.random.default_rng(1)
    pairs = [
        (np.stack([_counts(rng, 0.9) for _ in range(3)]), np.stack([_counts(rng, 0.5) for _ in range(3)]))
        for _ in range(2)
    ]
    each = [paired_miou_difference(a, b, n_boot=300) for a, b in pairs]
    avg = mean_paired_miou_difference(pairs, n_boot=300)
    assert avg.estimate == pytest.approx(np.mean([e.estimate for e in each]))
    assert avg.low < avg.estimate < avg.high and avg.excludes_zero()


def test_per_centre_table_from_per_image_counts(tmp_path: Path) -> None:
    rows = _rows(
        tmp_path, {("random-init", "polypgen", "mae"): 0.3, ("optidel", "polypgen", "mae"): 0.9}, seeds=(0, 1)
    )
    ids = [f"polypgen-{i}" for i in range(N_IMG)]
    centres = {i: ("C5" if k < 8 else "C6") for k, i in enumerate(ids)}
    md = results_markdown(rows, TableContext("t", n_boot=100, centres={"polypgen": centres}))
    table = md.split("#### polypgen: mIoU per centre of the test split")[1].split("\n\n")[1]
    assert table.splitlines()[0] == "| method | ratio | n | C5 | C6 |"
    opt = next(line for line in table.splitlines() if line.startswith("| optidel |"))
    c5 = []
    for r in rows:
        if r["method"] == "optidel":
            c = np.loadtxt(
                Path(r["run_dir"]) / "per_image.csv", delimiter=",", skiprows=1, usecols=(2, 3, 4, 5)
            )
            c5.append(miou_from_counts(c[:8].sum(0)))
    assert opt.split("|")[4].strip() == f"{np.mean(c5):.3f} +- {np.std(c5, ddof=1):.3f}"


def test_write_tables_writes_csv_md_and_the_ratio_plot(tmp_path: Path) -> None:
    rows = _rows(
        tmp_path / "runs",
        {("random-init", "a", "mae"): 0.3, ("full", "a", "mae"): 0.8, ("optidel", "a", "mae"): 0.8},
    )
    write_tables(tmp_path, rows, TableContext("t", n_boot=50))
    assert (tmp_path / "results.csv").read_text().count("\n") == len(rows) + 1
    assert (tmp_path / "plots" / "miou_vs_ratio_mae_lf0.1.png").is_file()
    assert (tmp_path / "plots" / "miou_per_method.png").is_file()
    assert (tmp_path / "cells.md").read_text() == cells_markdown(rows, "t")


def test_cells_table_has_a_row_per_arm_and_seed_and_marks_missing_cells() -> None:
    def row(method, ratio, ssl, seed, arch, ds, lf, miou):
        return dict(
            method=method,
            ratio=ratio,
            ssl=ssl,
            seed=seed,
            arch=arch,
            dataset=ds,
            label_fraction=lf,
            miou=miou,
        )

    rows = [
        row("random-init", 0.0, "mae", 0, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5204),
        row("optidel", 0.05, "mae", 0, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5681),
        row("optidel", 0.05, "mae", 0, "vit_tiny_patch16_224", "busi", 1.0, 0.6749),
        row("full", 1.0, "mae", 1, "vit_tiny_patch16_224", "kvasir-seg", 0.1, 0.5801),
        row("random", 0.2, "simclr", 0, "resnet18", "busi", 1.0, 0.6),
        row("mean-mask prior", 0.0, "-", 0, "-", "kvasir-seg", 0.1, 0.528),
    ]
    lines = cells_markdown(rows).splitlines()
    assert lines[2] == "| arm | seed | busi 100% | kvasir-seg 10% |"
    assert lines[4:] == [
        "| mean-mask prior | 0 | - | 0.528 |",  # no model first, then MAE, then SimCLR arms; seed by seed
        "| random-init (ViT-Tiny) | 0 | - | 0.520 |",
        "| optidel (mae 5%) | 0 | 0.675 | 0.568 |",
        "| random (simclr 20%) | 0 | 0.600 | - |",
        "| full (mae, whole pool) | 1 | - | 0.580 |",
    ]


def test_vinfo_table_ranks_sets_against_their_miou(tmp_path: Path) -> None:
    rows = _rows(tmp_path, {("optidel", "polyps", "mae"): 0.7, ("random", "polyps", "mae"): 0.7})
    # I_V that orders the sets exactly as their mIoU does: Spearman's rho is 1
    set_vinfo = {(r["method"], r["ratio"], r["seed"]): 2 * r["miou"] for r in rows}
    md = results_markdown(rows, TableContext("t", n_boot=100, set_vinfo=set_vinfo))
    table = md.split("#### polyps: V-information of each selected set and its mIoU")[1]
    assert table.count("| optidel | 0.05 |") == 3 and table.count("| random | 0.05 |") == 3
    assert "Spearman's rank correlation between I_V and mIoU over these sets: rho = 1.00" in table


def test_choices_table_pairs_the_named_methods_and_variants(tmp_path: Path) -> None:
    quality = {("random-init", "polyps", "mae"): 0.3, ("full", "polyps", "mae"): 0.9}
    quality.update({("random-init", "vessels", "mae"): 0.6, ("full", "vessels", "mae"): 0.6})
    for ds in ("polyps", "vessels"):
        quality.update({("optidel", ds, "mae"): 0.7, ("optidel+context", ds, "mae"): 0.95})
        quality.update({("optidel-cover", ds, "mae"): 0.7})  # equal quality: identical counts to optidel
    rows = _rows(tmp_path, quality)
    comparisons = (("optidel-cover", "optidel"), ("optidel+context", "optidel"), ("optidel", "meddel"))
    md = results_markdown(rows, TableContext("t", n_boot=200, comparisons=comparisons))
    section = md.split("### the method's choices, paired")[1]
    assert "| A - B | ratio | seeds | polyps | vessels | average (informative) | verdict |" in section
    assert "optidel - meddel" not in section  # meddel did not run: no line
    cover = next(ln for ln in section.splitlines() if ln.startswith("| optidel-cover - optidel |"))
    cells = [c.strip() for c in cover.strip("|").split("|")]
    assert cells[1:3] == ["0.05", "3"] and cells[3].startswith(
        ("+0.000", "-0.000")
    )  # same counts: no difference
    context = next(ln for ln in section.splitlines() if ln.startswith("| optidel+context - optidel |"))
    cells = [c.strip() for c in context.strip("|").split("|")]
    polyps = [r for r in rows if r["dataset"] == "polyps"]
    gap = np.mean([r["miou"] for r in polyps if r["method"] == "optidel+context"]) - np.mean(
        [r["miou"] for r in polyps if r["method"] == "optidel"]
    )
    assert cells[3].startswith(f"{gap:+.3f}") and cells[3].endswith("*")
    # the average is over the informative dataset (polyps) alone: the same point estimate (its own bootstrap draws)
    assert cells[5].split()[0] == cells[3].split()[0]


def test_benchmark_config_comparisons_include_every_variant_against_its_method_and_within_it() -> None:
    from optidel.bench.config import BenchmarkConfig
    from optidel.config import ConfigError

    cfg = BenchmarkConfig(
        comparisons=("optidel-cover vs optidel",),
        variants={"context": {"select": {"synthesis": {"tile_fit": "context"}}}},
        blocks=(
            {"methods": ["optidel", "mosaic-random"], "variant": "context"},
            {"methods": ["optidel", "optidel-cover"], "variant": "context", "seeds": [3]},
        ),
    )
    assert cfg.comparison_pairs() == [
        ("optidel-cover", "optidel"),
        ("optidel+context", "optidel"),
        ("mosaic-random+context", "mosaic-random"),
        ("optidel-cover+context", "optidel-cover"),
        ("optidel-cover+context", "optidel+context"),  # the comparison within the variant both ran with
    ]
    with pytest.raises(ConfigError, match=r"comparisons\[0\]: expected 'METHOD vs METHOD'"):
        BenchmarkConfig(comparisons=("optidel against random",))


def test_verdicts_answer_the_questions_on_the_informative_average(tmp_path: Path) -> None:
    """optidel far above random and level with full: the verdict column says so, with the goal (+0.02) checked
    against random and "at least level" against the full pool (paired with full at ratio 1)."""
    quality = {("random-init", "polyps", "mae"): 0.3, ("full", "polyps", "mae"): 0.9}
    quality.update({("optidel", "polyps", "mae"): 0.9, ("random", "polyps", "mae"): 0.6})
    rows = _rows(tmp_path, quality)
    comparisons = (("optidel", "full"), ("optidel", "random"), ("random", "optidel"))
    md = results_markdown(rows, TableContext("t", n_boot=200, comparisons=comparisons, goal=0.02))
    lines = {
        ln.split("|")[1].strip(): ln
        for ln in md.split("### the method's choices, paired")[1].splitlines()[3:]
        if ln.startswith("|")
    }
    vs_random = [c.strip() for c in lines["optidel - random"].strip("|").split("|")]
    assert vs_random[-2].endswith("*") and float(vs_random[-2].split()[0]) > 0.02
    assert vs_random[-1] == "optidel higher; goal (+0.02, interval above 0) met"
    # equal quality gives identical counts: a zero difference, level with the full pool
    vs_full = [c.strip() for c in lines["optidel - full"].strip("|").split("|")]
    assert vs_full[1] == "0.05" and vs_full[-1] == "no difference shown; goal (at least full) met"
    assert lines["random - optidel"].rstrip(" |").endswith("optidel higher")  # no goal: B is not a baseline


def test_verdict_claims_a_direction_only_when_the_interval_excludes_zero() -> None:
    small = Interval(0.012, 0.004, 0.020)
    assert (
        verdict("optidel", "random", small, 0.02) == "optidel higher; goal (+0.02, interval above 0) not met"
    )
    tie = Interval(0.03, -0.001, 0.06)
    assert (
        verdict("optidel", "meddel", tie, 0.02)
        == "no difference shown; goal (+0.02, interval above 0) not met"
    )
    assert (
        verdict("optidel", "full", Interval(-0.01, -0.02, -0.001), 0.02)
        == "full higher; goal (at least full) not met"
    )
    assert verdict("optidel", "random", small, None) == "optidel higher"
    assert verdict("optidel", "random", None, 0.02) == "-"


def test_content_control_says_whether_the_pools_content_shows(tmp_path: Path) -> None:
    """A noise arm level with the full pool: no selection can be told apart; far below it: content shows."""
    base = {("random-init", "polyps", "mae"): 0.3, ("full", "polyps", "mae"): 0.9}
    base.update({("random", "polyps", "mae"): 0.8})
    ctx = TableContext("t", n_boot=200, comparisons=(("noise", "random"),), goal=0.02)
    level = results_markdown(_rows(tmp_path / "a", {**base, ("noise", "polyps", "mae"): 0.9}), ctx)
    assert "content control: full - noise (0.05) = +0.000" in level and "the content does not show" in level
    far = results_markdown(_rows(tmp_path / "b", {**base, ("noise", "polyps", "mae"): 0.4}), ctx)
    line = next(ln for ln in far.splitlines() if "content control" in ln)
    assert "(3 seeds): the pool's content shows" in line and float(line.split("= ")[1].split()[0]) > 0.2
    noise_row = next(ln for ln in far.splitlines() if ln.startswith("| noise - random"))
    assert noise_row.rstrip(" |").endswith("random higher")  # a control: no goal is checked against it
    assert "content control" not in results_markdown(
        _rows(tmp_path / "c", base), ctx
    )  # no noise arm, no line
