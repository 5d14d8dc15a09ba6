"""Issue 17's "done when", tried as a user would: a CVC-ClinicDB-like TIFF dataset reports every pair and fine-tunes;
a folder mixing a DICOM series, a multi-frame DICOM, a NIfTI volume and PNGs runs through ``optidel select`` to
mosaics whose manifest names the slice/frame of every patch; ``data verify`` names every bad file and exits 1."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from optidel.data.sources import samples
from optidel.data.sources.locator import parse_locator

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def _cli(*args: object):
    from optidel.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output[-2000:]
    assert "Traceback" not in r.output
    return r


def test_cvc_like_tiff_dataset_reports_every_pair_and_finetunes(tmp_path: Path) -> None:
    from optidel.downstream import FinetuneConfig, finetune

    root = samples.write_cvc_like_dataset(tmp_path / "cvc", n=12, size=64)
    r = _cli("data", "info", root)
    assert (
        r.exit_code == 0
        and "pairs (image + mask) │ 12" in r.output
        and "unreadable files     │ 0" in r.output
    )
    fast = {"img_size": 32, "patch_size": 8, "epochs": 1, "min_steps": 0, "batch_size": 8, "head_dim": 32}
    res = finetune(FinetuneConfig(dataset=str(root), out=str(tmp_path / "ft"), **fast))
    assert (tmp_path / "ft" / "DONE").is_file() and 0.0 <= res.test["miou"] <= 1.0


class _MeanColourGrid:
    """Four quadrant boxes per image; embedding = each quadrant's 2x2 mean grey (a cheap stand-in for SAM)."""

    name = "test-quadrants"
    embed_dim = 4

    def cache_key(self) -> dict[str, Any]:
        return {"kind": "test-quadrants", "v": 1}

    def process(self, img: np.ndarray):
        from optidel.select.patches.types import ImagePatches

        h, w = img.shape[:2]
        boxes = np.array(
            [[0, 0, w // 2, h // 2], [w // 2, 0, w, h // 2], [0, h // 2, w // 2, h], [w // 2, h // 2, w, h]]
        )
        grey = img.mean(axis=2) / 255.0
        emb = []
        for x0, y0, x1, y1 in boxes:
            c = grey[y0:y1, x0:x1]
            hh, ww = c.shape[0] // 2, c.shape[1] // 2
            emb.append([c[:hh, :ww].mean(), c[:hh, ww:].mean(), c[hh:, :ww].mean(), c[hh:, ww:].mean()])
        n = len(boxes)
        nan = np.full(n, np.nan, np.float32)
        return ImagePatches(
            boxes.astype(np.int32), np.full(n, 0.25, np.float32), nan, nan, np.asarray(emb, np.float32)
        )


def test_mixed_medical_folder_selects_to_mosaics_with_provenance(tmp_path: Path) -> None:
    from optidel.select.outputs.manifest import read_manifest
    from optidel.select.pipeline import run_selection, selection_config

    pool = samples.write_mixed_pool(tmp_path / "mixed")
    out = tmp_path / "sel"
    cfg = selection_config(pool=[str(pool)], out=out, ratio=0.5, **{"report.enabled": False})
    run_selection(cfg, proposer=_MeanColourGrid())
    table, _ = read_manifest(out / "manifest.parquet")
    rows = table.to_pylist()
    assert len({r["image_uid"] for r in rows}) == 16 and (out / "DONE").is_file()
    items = {r["image_uid"]: (r["image_item"], r["image_window"]) for r in rows}
    assert items["mixed/volume/slice_0003"] == ("nifti:slice=3,axis=2", "auto")
    assert items["mixed/cine/frame_0002"] == ("dicom:frame=2", "auto")
    assert items["mixed/ct_series/slice_0001"] == ("dicom:frame=0,slice=1", "auto")
    assert items["mixed/photos/p0"] == (None, None)
    for r in rows:  # the patch's image path names the file and the item
        loc = parse_locator(r["image_path"])
        assert (loc is None) == (r["image_item"] is None)
    assert any(r["selected"] and r["image_item"] for r in rows)
    assert sorted(p.name for p in (out / "images").iterdir())[0].startswith("mosaic_")


def test_verify_names_every_bad_file_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(samples.bundled_dicom("rtplan.dcm"), bad / "plan.dcm")
    samples.write_truncated_nifti(bad / "cut.nii.gz")
    samples.write_png(bad / "ok.png")
    (bad / "empty.png").write_bytes(b"")
    (bad / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    samples.write_cvc_like_tiff(bad / "cvc.tif", np.zeros((16, 16, 3), np.uint8))
    samples.write_multiframe_dicom(bad / "cine.dcm")
    expected = ["plan.dcm", "cut.nii.gz", "empty.png", "dangling.png"]
    r = _cli("data", "verify", bad)
    assert r.exit_code == 1, r.output
    text = r.output.replace("\n", " ")
    for name in expected:
        assert name in text
    assert "no pixel data" in text and "truncated" in text and "empty file" in text and "dangling" in text
    assert "4 problem(s)" in text  # the good files (a TIFF, a multi-frame DICOM, a PNG) are not among them
