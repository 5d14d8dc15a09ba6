"""Benchmark pictures: one distinct colour per method shared by both pictures, and the ratio plot of a large grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from optidel.bench.plots import _method_colours, _ordered_methods, plot_vs_ratio, write_plots

matplotlib.use("Agg")

METHODS = ["random", "optidel", "meddel", "semdedup", "hard-only", "mosaic-random", "noise", "optidel-cover"]


def _rows() -> list[dict]:
    """Fake result rows of a grid: the methods above at 5% (random and optidel also at 20%), full, random init."""
    rng = np.random.default_rng(0)
    arms = [(m, 0.05) for m in METHODS] + [
        ("random", 0.2),
        ("optidel", 0.2),
        ("full", 1.0),
        ("random-init", 0.0),
    ]
    return [
        {"method": m, "ratio": ratio, "ssl": "-" if m == "random-init" else "mae", "dataset": ds,
         "label_fraction": lf, "seed": seed, "miou": float(rng.uniform(0.5, 0.7))}
        for m, ratio in arms for ds in ("a", "b") for lf in (0.1, 1.0) for seed in (0, 1, 2)
    ]  # fmt: skip


def test_every_method_has_its_own_colour_the_full_pool_first() -> None:

    rows = _rows()
    assert _ordered_methods(rows) == ["full", *sorted(METHODS)]
    colours = _method_colours(rows)
    assert len(set(colours.values())) == len(METHODS) + 1


def test_a_setting_with_fewer_methods_keeps_the_grids_colours(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    rows = _rows()
    simclr = [dict(r, ssl="simclr") for r in rows if r["method"] in ("full", "random", "optidel")]
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: None)  # keep the figure to read its legend
    plot_vs_ratio(rows + simclr, "simclr", 0.1, tmp_path / "simclr.png")
    legend = plt.gcf().legends[0]
    drawn = {t.get_text(): h.get_color() for t, h in zip(legend.texts, legend.legend_handles, strict=True)}
    assert set(drawn) == {"full", "optidel", "random", "random-init"}
    grid = _method_colours(rows)
    for m in ("full", "optidel", "random"):
        assert matplotlib.colors.same_color(drawn[m], grid[m]), m
    # what a picture of the SimCLR rows alone would have given optidel: another colour
    assert not matplotlib.colors.same_color(drawn["optidel"], _method_colours(simclr)["optidel"])
    close("all")


def test_write_plots_draws_each_setting_of_a_grid(tmp_path: Path) -> None:
    written = write_plots(_rows(), tmp_path)
    assert sorted(p.name for p in written) == [
        "miou_per_method.png",
        "miou_vs_ratio_mae_lf0.1.png",
        "miou_vs_ratio_mae_lf1.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in written)
