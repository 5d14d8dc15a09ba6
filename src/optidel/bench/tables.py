"""Benchmark tables: ``results.csv`` (one row per fine-tuning) and ``results.md`` (means, NormDEL, paired CIs).

``results.md`` holds, per SSL method and label fraction: a table per dataset (mean +- s.d. over seeds, NormDEL,
paired bootstrap differences to random init, random selection and full-pool pre-training), whether the dataset is
*informative* (:func:`informativeness`), the average over the informative datasets only (with paired CIs) and, when
the grid has the ``noise`` control, whether the pool's content shows at all (:func:`content_check`), the
per-centre mIoU of datasets that name their centres (PolypGen's unseen centres), MAE beside SimCLR when the grid has
both, the V-information of each selected set beside its arm's mIoU, and the paired differences that answer the
benchmark's questions (``BenchmarkConfig.comparisons`` and every variant against its method, each with a plain
verdict on the informative average, :func:`choices_table`). Everything is computed from result rows
(:mod:`optidel.bench.results`); this module reads no run folder but the per-image counts those rows point to.
"""

from __future__ import annotations

import csv
import functools
import io
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optidel.bench.grid import FULL, NOISE, RANDOM_INIT
from optidel.bench.plots import write_plots
from optidel.bench.results import COLUMNS, PRIOR, REFERENCE_METHODS, per_image_counts
from optidel.metrics.bootstrap import (
    Interval,
    mean_paired_miou_difference,
    miou_from_counts,
    paired_miou_difference,
)
from optidel.metrics.normdel import normdel
from optidel.metrics.vinfo import vinfo_miou_rank_correlation
from optidel.runtime.atomic import atomic_write_text

BASELINES = (RANDOM_INIT, "random", FULL)
# the compact-set baselines a selection method must beat by the goal margin (issue #19: random 5% and MedDEL 5%)
GOAL_BASELINES = ("random", "meddel")
Rows = list[dict[str, Any]]
CountPairs = list[tuple[np.ndarray, np.ndarray]]
# (method, ratio, seed) -> the selected set's V-information in nats (from the selection's vinfo.json)
SetVInfo = Mapping[tuple[str, float, int], float]


@functools.lru_cache(maxsize=4096)
def _counts(run_dir: str) -> dict[str, np.ndarray] | None:
    return per_image_counts(run_dir)


def _runs(rows: Rows, method: str, ratio: float, dataset: str, ssl: str, lf: float) -> dict[int, str]:
    """{seed: run folder} of one arm on one dataset (the mean-mask prior has no SSL method)."""
    want_ssl = "-" if method == PRIOR else ssl
    return {
        r["seed"]: r["run_dir"]
        for r in rows
        if (r["method"], r["ratio"], r["dataset"], r["ssl"], r["label_fraction"])
        == (method, ratio, dataset, want_ssl, lf)
    }


def _baseline_ratio(rows: Rows, baseline: str, ratio: float) -> float | None:
    """The ratio a method at ``ratio`` is compared with: random at the same ratio, full at 1, random init at 0."""
    if baseline == RANDOM_INIT:
        return 0.0
    if baseline == FULL:
        return 1.0
    return ratio if any(r["method"] == baseline and r["ratio"] == ratio for r in rows) else None


def paired_counts(a_runs: dict[int, str], b_runs: dict[int, str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(S, I, 4) counts of both arms on their common seeds and test images, or None when a run lacks counts."""
    seeds = sorted(set(a_runs) & set(b_runs))
    if not seeds:
        return None
    a_counts = [_counts(a_runs[s]) for s in seeds]
    b_counts = [_counts(b_runs[s]) for s in seeds]
    if any(c is None for c in a_counts + b_counts):
        return None
    ids = sorted(set.intersection(*(set(c) for c in a_counts + b_counts)))  # type: ignore[arg-type]
    if not ids:
        return None
    return (
        np.stack([[c[i] for i in ids] for c in a_counts]),  # type: ignore[index]
        np.stack([[c[i] for i in ids] for c in b_counts]),  # type: ignore[index]
    )


def comparison_pairs(
    rows: Rows, method: str, ratio: float, baseline: str, ssl: str, lf: float, datasets: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{dataset: paired counts} of ``method`` at ``ratio`` against ``baseline`` (datasets where both ran)."""
    b_ratio = _baseline_ratio(rows, baseline, ratio)
    if b_ratio is None or (method, ratio) == (baseline, b_ratio):
        return {}
    out = {}
    for ds in datasets:
        pair = paired_counts(
            _runs(rows, method, ratio, ds, ssl, lf), _runs(rows, baseline, b_ratio, ds, ssl, lf)
        )
        if pair is not None:
            out[ds] = pair
    return out


@dataclass(frozen=True)
class Informativeness:
    """Whether full-pool pre-training beats random init on a dataset by more than twice the seed s.d.

    Attributes:
        informative: the verdict (False also when it cannot be decided).
        reason: one line for the table.
        gap: mean(full) - mean(random init), or None.
    """

    informative: bool
    reason: str
    gap: float | None = None


def informativeness(rows: Rows, dataset: str, ssl: str, lf: float) -> Informativeness:
    """A dataset is informative when full-pool pre-training's mean mIoU exceeds random init's by more than twice the
    larger of the two arms' seed standard deviations (the criterion of BENCHMARKS.md, "A regime with signal").

    Undecidable (so excluded, with the reason) without a full-pool arm, a random-init arm, or two seeds of each.
    """
    full = [
        r["miou"]
        for r in rows
        if (r["method"], r["dataset"], r["ssl"], r["label_fraction"]) == (FULL, dataset, ssl, lf)
    ]
    init = [
        r["miou"]
        for r in rows
        if (r["method"], r["dataset"], r["ssl"], r["label_fraction"]) == (RANDOM_INIT, dataset, ssl, lf)
    ]
    if not full or not init:
        missing = "full-pool" if not full else "random-init"
        return Informativeness(
            False, f"not decided: no {missing} run, so no evidence that pre-training matters here"
        )
    gap = float(np.mean(full) - np.mean(init))
    if min(len(full), len(init)) < 2:
        return Informativeness(
            False, f"not decided: full - random init = {gap:+.3f} from one seed (no spread)", gap
        )
    sd = max(float(np.std(full, ddof=1)), float(np.std(init, ddof=1)))
    if gap > 2 * sd:
        return Informativeness(
            True, f"informative: full - random init = {gap:+.3f} > 2 x seed s.d. ({2 * sd:.3f})", gap
        )
    return Informativeness(
        False, f"not informative: full - random init = {gap:+.3f} <= 2 x seed s.d. ({2 * sd:.3f})", gap
    )


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def ci_text(iv: Interval | None) -> str:
    """``+0.012 [-0.003, +0.027]`` with `` *`` when the interval excludes 0; ``-`` for no comparison."""
    if iv is None:
        return "-"
    star = " *" if iv.excludes_zero() else ""
    return f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]{star}"


def mean_sd(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f}" + (f" +- {v.std(ddof=1):.3f}" if len(v) > 1 else "")


def _arms(rows: Rows) -> list[tuple[str, float]]:
    """(method, ratio) of every pre-trained arm, then the reference rows."""
    methods = sorted({(r["method"], r["ratio"]) for r in rows if r["method"] not in REFERENCE_METHODS})
    return methods + [(m, 0.0) for m in REFERENCE_METHODS]


def _arm_rows(rows: Rows, method: str, ratio: float, ds: str, ssl: str, lf: float) -> Rows:
    want_ssl = "-" if method == PRIOR else ssl
    return [
        r
        for r in rows
        if (r["method"], r["ratio"], r["dataset"], r["ssl"], r["label_fraction"])
        == (method, ratio, ds, want_ssl, lf)
    ]


def dataset_table(rows: Rows, ds: str, ssl: str, lf: float, n_boot: int) -> list[str]:
    """One dataset's table: an arm per line, mean +- s.d. over seeds, NormDEL, paired CIs to the baselines."""
    lines = [
        "| method | ratio | n | miou | NormDEL | vs random init | vs random | vs full |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, rt in _arms(rows):
        rs = _arm_rows(rows, m, rt, ds, ssl, lf)
        if not rs:
            continue
        nd = np.array([r["normdel"] for r in rs], float)
        cis = []
        for b in BASELINES:
            pair = None if m in REFERENCE_METHODS else comparison_pairs(rows, m, rt, b, ssl, lf, [ds]).get(ds)
            cis.append(ci_text(paired_miou_difference(*pair, n_boot=n_boot) if pair else None))
        nd_text = _fmt(float(np.nanmean(nd)) if np.isfinite(nd).any() else None, 2)
        lines.append(
            f"| {m} | {rt:g} | {len(rs)} | {mean_sd([r['miou'] for r in rs])} | {nd_text} | "
            + " | ".join(cis)
            + " |"
        )
    return lines


def average_table(rows: Rows, datasets: list[str], ssl: str, lf: float, n_boot: int) -> list[str]:
    """The average over ``datasets`` (the informative ones): mean mIoU, NormDEL, and paired CIs of the average."""
    lines = [
        "| method | ratio | seeds | datasets | mean miou | NormDEL | vs random init | vs random | vs full |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, rt in _arms(rows):
        per_ds = [[r["miou"] for r in _arm_rows(rows, m, rt, ds, ssl, lf)] for ds in datasets]
        means = [np.mean(v or [np.nan]) for v in per_ds]
        if not datasets or np.isnan(means).any():
            continue
        mean = float(np.mean(means))
        cis = []
        for b in BASELINES:
            pairs = {} if m in REFERENCE_METHODS else comparison_pairs(rows, m, rt, b, ssl, lf, datasets)
            ok = len(pairs) == len(datasets)
            cis.append(
                ci_text(mean_paired_miou_difference(list(pairs.values()), n_boot=n_boot) if ok else None)
            )
        nd = _fmt(float(normdel(mean, rt)), 2) if m not in REFERENCE_METHODS else "-"
        # the mean is over each dataset's seeds; the pairs over the seeds both arms share
        seeds = min(len(v) for v in per_ds)
        lines.append(
            f"| {m} | {rt:g} | {seeds} | {len(datasets)} | {mean:.3f} | {nd} | " + " | ".join(cis) + " |"
        )
    return lines


def verdict(a: str, b: str, iv: Interval | None, goal: float | None) -> str:
    """A plain reading of the paired difference ``iv`` of A - B on the informative average.

    The direction is claimed only when the 95% interval excludes 0. Against random or MedDEL (``GOAL_BASELINES``) it
    also says whether the benchmark's goal holds: a difference of at least ``goal`` with the interval above 0;
    against the full pool the goal is A at least level with it (an estimate >= 0).
    """
    if iv is None:
        return "-"
    if iv.low > 0:
        text = f"{a} higher"
    elif iv.high < 0:
        text = f"{b} higher"
    else:
        text = "no difference shown"
    if NOISE in (a, b):
        return text  # a control: the goal is not asked of it
    if goal is not None and b in GOAL_BASELINES:
        met = iv.estimate >= goal and iv.low > 0
        text += f"; goal (+{goal:g}, interval above 0) {'met' if met else 'not met'}"
    elif goal is not None and b == FULL:
        text += f"; goal (at least {FULL}) {'met' if iv.estimate >= 0 else 'not met'}"
    return text


def choices_table(
    rows: Rows,
    comparisons: tuple[tuple[str, str], ...],
    datasets: list[str],
    kept: list[str],
    ssl: str,
    lf: float,
    n_boot: int,
    goal: float | None = None,
) -> list[str]:
    """Paired differences A - B of the benchmark's questions: a line per (A, B, ratio) where both arms ran, a column
    per dataset, one for the average over the informative datasets ``kept`` (when both ran on all) and its
    :func:`verdict`.

    B is taken at A's ratio, except the full pool (ratio 1). The seeds column counts the seeds both arms share (the
    pairs are over those seeds and the test images).
    """
    lines = [
        "| A - B | ratio | seeds | " + " | ".join(datasets) + " | average (informative) | verdict |",
        "|---|---|---|" + "---|" * len(datasets) + "---|---|",
    ]
    ratios = sorted({r["ratio"] for r in rows if r["method"] not in REFERENCE_METHODS})
    for a, b in comparisons:
        for rt in ratios:
            b_rt = 1.0 if b == FULL else rt
            pairs = {}
            for ds in datasets:
                pair = paired_counts(_runs(rows, a, rt, ds, ssl, lf), _runs(rows, b, b_rt, ds, ssl, lf))
                if pair is not None:
                    pairs[ds] = pair
            if not pairs:
                continue
            seeds = min(p[0].shape[0] for p in pairs.values())
            cells = [
                ci_text(paired_miou_difference(*pairs[ds], n_boot=n_boot) if ds in pairs else None)
                for ds in datasets
            ]
            avg = None
            if kept and all(ds in pairs for ds in kept):
                avg = mean_paired_miou_difference([pairs[ds] for ds in kept], n_boot=n_boot)
            lines.append(
                f"| {a} - {b} | {rt:g} | {seeds} | "
                + " | ".join(cells)
                + f" | {ci_text(avg)} | {verdict(a, b, avg, goal)} |"
            )
    return lines if len(lines) > 2 else []


def centre_miou(run_dir: str, centres: Mapping[str, str]) -> dict[str, float]:
    """{centre: mIoU} of one fine-tuning, from its per-image counts summed over each centre's test images."""
    counts = _counts(run_dir)
    if counts is None:
        return {}
    by_centre: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(4))
    for i, c in counts.items():
        if i in centres:
            by_centre[centres[i]] += c
    return {c: float(miou_from_counts(v)) for c, v in sorted(by_centre.items())}


def centre_table(rows: Rows, ds: str, ssl: str, lf: float, centres: Mapping[str, str]) -> list[str]:
    """mIoU per centre of ``ds``'s test images (mean +- s.d. over seeds), one arm per line; [] without counts."""
    per_arm: dict[tuple[str, float], list[dict[str, float]]] = {}
    for m, rt in _arms(rows):
        if m == PRIOR:  # no predictions of its own
            continue
        vals = [centre_miou(r["run_dir"], centres) for r in _arm_rows(rows, m, rt, ds, ssl, lf)]
        vals = [v for v in vals if v]
        if vals:
            per_arm[(m, rt)] = vals
    names = sorted({c for vals in per_arm.values() for v in vals for c in v})
    if not names:
        return []
    lines = ["| method | ratio | n | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for (m, rt), vals in per_arm.items():
        cells = [mean_sd([v[c] for v in vals if c in v]) if any(c in v for v in vals) else "-" for c in names]
        lines.append(f"| {m} | {rt:g} | {len(vals)} | " + " | ".join(cells) + " |")
    return lines


def ssl_side_by_side(rows: Rows, lf: float, datasets: list[str]) -> list[str]:
    """Each (method, ratio) pre-trained with every SSL method of the grid, side by side (mean mIoU over seeds)."""
    ssls = sorted(
        {r["ssl"] for r in rows if r["method"] not in REFERENCE_METHODS and r["label_fraction"] == lf}
    )
    if len(ssls) < 2:
        return []
    lines = ["| method | ratio | dataset | " + " | ".join(ssls) + " |", "|---|---|---|" + "---|" * len(ssls)]
    for m, rt in _arms(rows):
        if m in REFERENCE_METHODS:
            continue
        for ds in datasets:
            cells = [
                mean_sd([r["miou"] for r in rs]) if (rs := _arm_rows(rows, m, rt, ds, s, lf)) else "-"
                for s in ssls
            ]
            if sum(c != "-" for c in cells) > 1:
                lines.append(f"| {m} | {rt:g} | {ds} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def vinfo_table(rows: Rows, set_vinfo: SetVInfo, ds: str, ssl: str, lf: float, n_boot: int) -> list[str]:
    """Per selected set: its V-information (nats, from its selection's ``vinfo.json``) beside its arm's mIoU on
    ``ds``, and Spearman's rho between the two with a bootstrap interval over sets
    (:func:`optidel.metrics.vinfo.vinfo_miou_rank_correlation`)."""
    pts = [
        (r["method"], r["ratio"], r["seed"], set_vinfo[(r["method"], r["ratio"], r["seed"])], r["miou"])
        for r in rows
        if (r["dataset"], r["ssl"], r["label_fraction"]) == (ds, ssl, lf)
        and (r["method"], r["ratio"], r["seed"]) in set_vinfo
    ]
    if len(pts) < 2:
        return []
    lines = ["| method | ratio | seed | I_V of the set (nats) | miou |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {rt:g} | {s} | {v:.3f} | {mi:.3f} |" for m, rt, s, v, mi in sorted(pts)]
    if len(pts) >= 3:
        corr = vinfo_miou_rank_correlation([p[3] for p in pts], [p[4] for p in pts], n_boot=n_boot)
        lines += ["", f"Spearman's rank correlation between I_V and mIoU over these sets: {corr}."]
        if any("+" in p[0] for p in pts):
            lines += [
                "A variant arm (`method+variant`) whose variant leaves the selected patches as they are (a tile "
                "filling, for instance) repeats its method's I_V."
            ]
    else:
        lines += ["", "Rank correlation: needs at least 3 selected sets."]
    return lines


@dataclass(frozen=True)
class TableContext:
    """What the tables need beyond the rows.

    Attributes:
        name: the benchmark's name (title).
        n_boot: bootstrap replicates.
        centres: {dataset: {image id: centre}} for datasets that name their centres.
        set_vinfo: per selected set, its V-information (see :data:`SetVInfo`).
        comparisons: (A, B) method labels compared pairwise (:func:`choices_table`).
        goal: the margin a method must gain over random and MedDEL on the informative average (:func:`verdict`);
            None: the verdicts give the direction only.
        config_hash: the benchmark config's :func:`optidel.config.config_hash`, named under the title (None: not).
    """

    name: str
    n_boot: int = 2000
    centres: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    set_vinfo: SetVInfo | None = None
    comparisons: tuple[tuple[str, str], ...] = ()
    goal: float | None = None
    config_hash: str | None = None


HEADER = (
    "miou = mean IoU over {background, foreground} on each test set (mean +- s.d. over seeds, n = seeds). "
    "NormDEL = 100 / (1 + exp(-miou * exp(-ratio))). Differences are paired bootstrap estimates over seeds and "
    "test images with 95% intervals (* = the interval excludes 0). Reference rows: random init (no pre-training) "
    "and the mean-mask prior (no model). A dataset is informative when full-pool pre-training beats random init "
    "by more than twice the larger seed s.d.; only informative datasets enter the average."
)


def content_check(rows: Rows, kept: list[str], ssl: str, lf: float, n_boot: int) -> str | None:
    """One line on the content control: full - noise on the average of the informative datasets ``kept``.

    Where pre-training on noise (no image content, ``noise``) does as well as on the whole pool, which images were
    pre-trained on cannot move the result, so no selection method can be told apart in that setting. None without
    a noise arm that ran on every kept dataset.
    """
    for rt in sorted({r["ratio"] for r in rows if r["method"] == NOISE}):
        noise_vs_full = comparison_pairs(rows, NOISE, rt, FULL, ssl, lf, kept)
        if len(noise_vs_full) != len(kept):
            continue
        pairs = [(full, noise) for noise, full in noise_vs_full.values()]
        iv = mean_paired_miou_difference(pairs, n_boot=n_boot)
        seeds = min(p[0].shape[0] for p in pairs)
        head = f"content control: full - noise ({rt:g}) = {ci_text(iv)} on the informative average ({seeds} seeds)"
        if iv.low > 0:
            return f"{head}: the pool's content shows, so a selection can matter in this setting"
        return (
            f"{head}: **the content does not show**: pre-training on noise does as well as on the pool here, so no "
            "selection method can be told apart in this setting"
        )
    return None


def _section(rows: Rows, ssl: str, lf: float, ctx: TableContext) -> list[str]:
    datasets = sorted({r["dataset"] for r in rows})
    lines = ["", f"## {ssl}, label fraction {lf:g}", ""]
    verdicts = {ds: informativeness(rows, ds, ssl, lf) for ds in datasets}
    for ds in datasets:
        lines += [f"### {ds}", "", f"_{verdicts[ds].reason}_", ""]
        lines += dataset_table(rows, ds, ssl, lf, ctx.n_boot) + [""]
        if ds in ctx.centres and (t := centre_table(rows, ds, ssl, lf, ctx.centres[ds])):
            lines += [f"#### {ds}: mIoU per centre of the test split", ""] + t + [""]
        if ctx.set_vinfo and (t := vinfo_table(rows, ctx.set_vinfo, ds, ssl, lf, ctx.n_boot)):
            lines += [f"#### {ds}: V-information of each selected set and its mIoU", ""] + t + [""]
    kept = [ds for ds in datasets if verdicts[ds].informative]
    lines += ["### average over the informative datasets", ""]
    for ds in datasets:
        if not verdicts[ds].informative:
            lines.append(f"- excluded: {ds} ({verdicts[ds].reason})")
    if kept:
        lines += ["", f"Averaged over: {', '.join(kept)}.", ""] + average_table(
            rows, kept, ssl, lf, ctx.n_boot
        )
        if (line := content_check(rows, kept, ssl, lf, ctx.n_boot)) is not None:
            lines += ["", f"_{line}_"]
    else:
        lines += ["", "No informative dataset in this setting: no average is shown."]
    if ctx.comparisons and (
        t := choices_table(rows, ctx.comparisons, datasets, kept, ssl, lf, ctx.n_boot, ctx.goal)
    ):
        lines += ["", "### the method's choices, paired", ""] + t
    return lines + [""]


def results_markdown(rows: Rows, ctx: TableContext) -> str:
    """The whole ``results.md``: a section per (SSL method, label fraction), then MAE vs SimCLR when both ran."""
    lines = [f"# Benchmark results: {ctx.name}", ""]
    if ctx.config_hash:
        lines += [
            f"Config: `config.yaml` of this folder, hash `{ctx.config_hash}` (`optidel benchmark --config FILE "
            "--plan` prints the hash of a config file).",
            "",
        ]
    lines.append(HEADER)
    settings = sorted({(r["ssl"], r["label_fraction"]) for r in rows if r["method"] not in REFERENCE_METHODS})
    for ssl, lf in settings:
        lines += _section(rows, ssl, lf, ctx)
    datasets = sorted({r["dataset"] for r in rows})
    for lf in sorted({lf for _, lf in settings}):
        if t := ssl_side_by_side(rows, lf, datasets):
            lines += [f"## SSL methods side by side, label fraction {lf:g}", ""] + t + [""]
    return "\n".join(lines) + "\n"


def rows_csv(rows: Rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


ARCH_NAMES = {"resnet18": "ResNet-18", "vit_tiny_patch16_224": "ViT-Tiny"}


def _cell_label(r: Mapping[str, Any]) -> str:
    """A row of :func:`cells_markdown`: ``optidel (mae 5%)``, ``full (mae, whole pool)``, ``random-init (ViT-Tiny)``,
    ``mean-mask prior``."""
    method, ssl = r["method"], r["ssl"]
    if method == RANDOM_INIT:
        arch = r.get("arch", "-")
        return f"{method} ({ARCH_NAMES.get(arch, arch)})"
    if method in REFERENCE_METHODS:
        return method
    return f"{method} ({ssl}, whole pool)" if r["ratio"] >= 1 else f"{method} ({ssl} {r['ratio']:.0%})"


def cells_markdown(rows: Rows, title: str = "") -> str:
    """Every cell of the grid (``cells.md``): a row per arm and seed, a column per dataset x label fraction, test mIoU.

    ``results.md`` summarises over seeds; this keeps each measured number. Rows: by seed, then SSL method (reference
    rows first), then run order; an unfinished fine-tuning is ``-``.
    """
    columns = sorted({(r["dataset"], r["label_fraction"]) for r in rows})
    # reference rows (ssl "-") first, then by SSL method; run order within one
    arms = sorted(dict.fromkeys((r["ssl"], _cell_label(r)) for r in rows), key=lambda a: (a[0] != "-", a[0]))
    cell = {(r["seed"], r["ssl"], _cell_label(r), r["dataset"], r["label_fraction"]): r["miou"] for r in rows}
    lines = [f"# Every cell: {title}", ""] if title else []
    lines += [
        "Test mIoU of every fine-tuning, a row per arm and seed (`-`: not finished).",
        "",
        "| arm | seed | " + " | ".join(f"{d} {lf:.0%}" for d, lf in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for seed in sorted({r["seed"] for r in rows}):
        for ssl, label in arms:
            values = [cell.get((seed, ssl, label, d, lf)) for d, lf in columns]
            if any(v is not None for v in values):
                text = " | ".join("-" if v is None else f"{v:.3f}" for v in values)
                lines.append(f"| {label} | {seed} | {text} |")
    return "\n".join(lines) + "\n"


def write_tables(out: str | Path, rows: Rows, ctx: TableContext) -> Path:
    """Rewrite ``out/results.csv``, ``out/results.md``, ``out/cells.md`` and ``out/plots/``; returns the csv's path."""
    out = Path(out)
    _counts.cache_clear()  # per-image files may have been rewritten since the last call
    atomic_write_text(out / "results.csv", rows_csv(rows))
    atomic_write_text(out / "results.md", results_markdown(rows, ctx))
    atomic_write_text(out / "cells.md", cells_markdown(rows, ctx.name))
    if rows:
        write_plots(rows, out / "plots")
    return out / "results.csv"
