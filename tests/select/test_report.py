"""The report: self-contained HTML with every figure embedded, PNGs on disk, PCA helpers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from optidel.select.outputs.report import ReportData, map_sample, pca_2d, write_report


def test_pca_2d_finds_the_main_axis() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((200, 5))
    x[:, 2] = rng.normal(size=200) * 10
    x[:, 4] = rng.normal(size=200)
    xy = pca_2d(x)
    assert xy.shape == (200, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 2])[0, 1]) > 0.99 and xy[:, 0].var() > xy[:, 1].var()
    assert pca_2d(x[:1]).shape == (1, 2)


def test_map_sample_keeps_all_selected() -> None:
    sel = np.zeros(1000, bool)
    sel[::50] = True
    rows = map_sample(1000, sel, np.random.default_rng(0), m=100)
    assert rows.size == 100 and set(np.flatnonzero(sel)) <= set(rows.tolist())
    assert np.all(np.diff(rows) > 0)


def test_write_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    sel = np.zeros(n, bool)
    sel[:12] = True
    crops = [(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), f"{i}") for i in range(5)]
    data = ReportData(
        title="test report",
        summary=[("pool images", 100), ("N", 12)],
        timings=[("patches", 1.5, "computed")],
        source_counts=[("a", 60, 200, 8), ("b", 40, 100, 4)],
        scores={
            "margin": rng.uniform(size=n),
            "prototype": rng.uniform(size=n),
            "reconstruction": np.full(n, np.nan),
        },
        selected=sel,
        threshold=0.1,
        hardest=crops,
        easiest=crops,
        samples=[(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "mosaic_00000.png")],
        map_xy=rng.normal(size=(n, 2)),
        map_cluster=rng.integers(0, 7, n),
        map_selected=sel,
        failed=[("a/bad", "empty file (0 bytes)")],
    )
    path = write_report(tmp_path, data)
    html = path.read_text()
    pngs = {p.name for p in (tmp_path / "report").glob("*.png")}
    assert pngs == {
        "sources.png",
        "scores.png",
        "embedding_map.png",
        "hardest.png",
        "easiest.png",
        "samples.png",
    }
    assert len(re.findall(r'src="data:image/png;base64,', html)) == len(pngs)
    assert not re.search(r'src="(http|/|\.)', html)  # self-contained
    for text in ("pool images", "Counts per source", "Hardest patches", "a/bad", "Runtime per stage"):
        assert text in html


def _vinfo_dict(source: str, circular: bool, iv: float) -> dict:
    est = {
        "n_set": 60,
        "n_pool": 500,
        "labels": f"labels of {source}",
        "family": "multinomial logistic regression",
        "cross_fitting_folds": 5,
        "label_source": source,
        "circular": circular,
    }
    return {
        "estimator": est,
        "set": {
            "h_y_nats": 1.0,
            "h_y_given_x_nats": 1.0 - iv,
            "vinfo_nats": iv,
            "vinfo_ci95_nats": [iv - 0.1, iv + 0.1],
        },
        "random": {
            "n_draws": 3,
            "h_y_mean_nats": 1.1,
            "h_y_given_x_mean_nats": 0.5,
            "vinfo_mean_nats": 0.6,
            "vinfo_p2.5_p97.5_nats": [0.5, 0.7],
        },
        "verdict": f"verdict {source}",
    }


def test_report_shows_cluster_coverage_and_every_vinfo_source(tmp_path: Path) -> None:
    counts = {
        "pool": np.array([50, 30, 15, 5]),
        "selected": np.array([4, 3, 2, 1]),
        "optidel": np.array([9, 1, 0, 0]),
    }
    vinfo = _vinfo_dict("lesion", False, 0.42) | {"alternatives": [_vinfo_dict("embedding", True, 0.3)]}
    data = ReportData(title="t", summary=[("N", 10)], cluster_counts=counts, vinfo=vinfo)
    html = write_report(tmp_path, data).read_text()
    assert (tmp_path / "report" / "cluster_coverage.png").is_file()
    assert "Coverage of the k-means clusters" in html and "plain optidel" in html
    # clusters covered: 4 of 4 for this selection, 2 for plain optidel
    assert re.search(r"clusters covered \(of 4\)</td><td[^>]*>4</td><td[^>]*>2</td>", html)
    assert "V-information, Y = lesion" in html and "V-information, Y = embedding (alternative)" in html
    assert "labels of lesion" in html and "multinomial logistic regression" in html and "CIRCULAR" in html
    assert html.index("Y = lesion") < html.index("Y = embedding")


def test_gallery_outline_marks_the_box_inside_its_context_square() -> None:
    """A context thumbnail shows the square around the patch; the patch's own box is drawn on it, nothing else."""
    from optidel.select.outputs.mosaic import context_box, render_tile
    from optidel.select.stages.report import OUTLINE, THUMB, _outline

    img = np.random.default_rng(1).integers(30, 200, (120, 160, 3), dtype=np.uint8)
    box = np.array([70, 50, 110, 70])  # 40 x 20: the square is 40 x 40, rows 40-80
    region = context_box(box, 120, 160)
    tile = render_tile(img, box, THUMB, "context")
    drawn = _outline(tile, box, region)
    changed = np.any(drawn != tile, axis=2)
    ys, xs = np.nonzero(changed)
    s = THUMB / 40  # 2.4 px per image px
    assert (ys.min(), ys.max()) == (round(10 * s), round(30 * s)) and (xs.min(), xs.max()) == (0, THUMB - 1)
    assert (drawn[changed] == OUTLINE).all() and changed.mean() < 0.1  # a 1-px frame, not a fill
