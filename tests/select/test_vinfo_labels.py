"""The report's V-information: its headline Y comes from the masks (or pixels), never from the scored clusters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from select_fakes import FakeGridProposer

from optidel.data.pool import list_pool
from optidel.data.segmentation import load_mask
from optidel.select.pipeline import run_selection, selection_config
from optidel.select.stages.vinfo_labels import mask_paths, patch_pixels


def test_patch_pixels_lesion_share_matches_the_mask(tiny_seg: Path) -> None:
    pool = [im.path for im in list_pool([f"{tiny_seg}:train"])[:3]]
    masks = mask_paths([f"{tiny_seg}:train"], pool)
    assert all(m is not None for m in masks)
    boxes = np.array([[0, 0, 64, 64], [10, 5, 40, 30], [0, 0, 8, 8]], np.int32)
    image_index = np.array([0, 1, 2])
    feats, share, ok = patch_pixels(pool, image_index, boxes, np.arange(3), masks)
    assert ok.all() and feats.shape == (3, 21) and np.isfinite(feats).all()
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert share[i] == load_mask(masks[i])[y0:y1, x0:x1].mean()
    assert mask_paths(["/nowhere"], pool) == [None, None, None]


def test_report_vinfo_headline_is_lesion_labels(tiny_seg: Path, tmp_path: Path) -> None:
    cfg = selection_config(pool=[f"{tiny_seg}:train"], out=tmp_path / "o", ratio=0.8, leakage_guard=False)
    run_selection(cfg, proposer=FakeGridProposer())
    v = json.loads((tmp_path / "o" / "vinfo.json").read_text())
    assert v["estimator"]["label_source"] == "lesion" and v["estimator"]["circular"] is False
    assert [a["estimator"]["label_source"] for a in v["alternatives"]] == ["lowlevel", "embedding"]
    assert v["alternatives"][1]["estimator"]["circular"] is True
    html = (tmp_path / "o" / "report.html").read_text()
    assert "V-information, Y = lesion" in html and "Coverage of the k-means clusters" in html
