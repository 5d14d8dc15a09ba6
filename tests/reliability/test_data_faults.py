"""Data faults of issue 16: 0/1 masks, all-empty masks, an unfinished selection used as a pool, zip bombs, symlink
loops and dangling links. Every CLI case asserts a one-line error and no Python traceback."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.data.archive import safe_extract
from optidel.data.array_cache import load_stack
from optidel.data.errors import MaskError, PoolError, UnsafeArchiveError
from optidel.data.pool import list_pool
from optidel.data.segmentation import load_mask, load_seg_dataset
from reliability.helpers import invoke


def _no_traceback(result) -> str:
    out = result.output
    assert "Traceback" not in out, out[-2000:]
    return out


def _copy_with_masks(src: Path, dst: Path, fn) -> Path:
    """A copy of dataset ``src`` whose masks are rewritten by ``fn(bool mask) -> uint8 array`` (PNG)."""
    shutil.copytree(src, dst)
    for m in sorted((dst / "masks").iterdir()):
        fg = np.asarray(Image.open(m).convert("L")) > 127
        m.unlink()
        Image.fromarray(fn(fg)).save(m.with_suffix(".png"))
    return dst


# ------------------------------------------------------------------------------------------------------------- masks


def test_zero_one_masks_decode_and_train_like_the_0_255_copy(tiny_seg: Path, tmp_path: Path) -> None:
    """Masks stored as 0/1 give the same decoded masks as their 0/255 copy, hence the same fine-tuning metrics."""
    from optidel.downstream import FinetuneConfig, finetune

    a = _copy_with_masks(tiny_seg, tmp_path / "a255", lambda fg: fg.astype(np.uint8) * 255)
    b = _copy_with_masks(tiny_seg, tmp_path / "b01", lambda fg: fg.astype(np.uint8))
    da, db = load_seg_dataset(a), load_seg_dataset(b)
    ma = load_stack([p.mask for p in da.pairs], 32, "mask", use_cache=False).array
    mb = load_stack([p.mask for p in db.pairs], 32, "mask", use_cache=False).array
    assert ma.any() and np.array_equal(ma, mb)
    fast = {"img_size": 32, "patch_size": 8, "epochs": 1, "min_steps": 0, "batch_size": 8, "head_dim": 32}
    ra = finetune(FinetuneConfig(dataset=str(a), out=str(tmp_path / "ra"), **fast))
    rb = finetune(FinetuneConfig(dataset=str(b), out=str(tmp_path / "rb"), **fast))
    assert ra.test == rb.test
    out = _no_traceback(invoke("data", "verify", b))
    assert "labels {0, 1}" in out


def test_a_chosen_label_value_selects_one_label(tmp_path: Path) -> None:
    from optidel.data.sources import SourceOptions

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "images" / "a.png")
    labels = np.zeros((16, 16), np.uint8)
    labels[:4] = 1
    labels[8:] = 2
    Image.fromarray(labels).save(root / "masks" / "a.png")
    (pair,) = load_seg_dataset(root).pairs
    assert load_mask(pair.mask).sum() == 4 * 16 + 8 * 16  # any non-zero label
    (pair2,) = load_seg_dataset(root, options=SourceOptions(mask_label=2)).pairs
    assert np.array_equal(load_mask(pair2.mask), labels == 2)


def test_all_empty_train_masks_are_an_error(tiny_seg: Path, tmp_path: Path) -> None:
    from optidel.downstream import FinetuneConfig, finetune

    empty = _copy_with_masks(tiny_seg, tmp_path / "empty", lambda fg: np.zeros(fg.shape, np.uint8))
    with pytest.raises(MaskError, match="every train mask is empty"):
        finetune(FinetuneConfig(dataset=str(empty), out=str(tmp_path / "run"), img_size=32, patch_size=8))
    args = ["--encoder", "none", "--dataset", empty, "--out", tmp_path / "run2", "--img-size", "32"]
    r = invoke("finetune", *args, "--patch-size", "8")
    out = _no_traceback(r)
    assert r.exit_code == 2 and "every train mask is empty" in out and str(empty) in out.replace("\n", "")
    r = invoke("data", "verify", empty)
    assert r.exit_code == 1 and "every train mask" in _no_traceback(r)


# ----------------------------------------------------------------------------------------------- unfinished outputs


def _unfinished_selection(tmp_path: Path) -> Path:
    """What a killed ``optidel select --out X`` leaves: images and a manifest, no DONE."""
    out = tmp_path / "sel"
    (out / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(out / "images" / "mosaic_00000.png")
    (out / "manifest.parquet").write_bytes(b"PAR1")
    (out / "log.txt").write_text("select: started\n")
    return out


def test_unfinished_selection_is_refused_as_a_pool(tmp_path: Path) -> None:
    out = _unfinished_selection(tmp_path)
    with pytest.raises(PoolError, match="unfinished `optidel select` output"):
        list_pool([out])
    for args in (
        ("data", "info", out),
        ("pretrain", "--data", out, "--out", tmp_path / "pt", "--steps", "1"),
    ):
        r = invoke(*args)
        text = _no_traceback(r).replace("\n", "")
        assert r.exit_code == 2 and "unfinished" in text and f"--out {out}" in text, text
    (out / "DONE").write_text("{}\n")
    assert [im.id for im in list_pool([out])] == ["mosaic_00000"]


# ---------------------------------------------------------------------------------------------------------- archives


def test_zip_bomb_is_refused_by_bytes_written(tmp_path: Path) -> None:
    """200 MB of zeros in a ~0.2 MB zip; the limits are lowered so the refusal comes after a few MB."""
    bomb = tmp_path / "bomb.zip"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as f:
        for _ in range(200):
            f.write(chunk)
    assert bomb.stat().st_size < 1_000_000
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="limit"):
        safe_extract(bomb, target, max_total_bytes=4 << 20)
    assert not target.exists()  # created by the call, removed on refusal
    with pytest.raises(UnsafeArchiveError, match="expands more than 50x"):
        safe_extract(bomb, target, max_ratio=50)
    assert not target.exists()


def test_a_normal_archive_still_extracts(tmp_path: Path) -> None:
    arc = tmp_path / "ok.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/a.bin", rng.bytes(50_000))
        zf.writestr("d/b.txt", "hello\n" * 10)
    assert safe_extract(arc, tmp_path / "x") == 2
    assert (tmp_path / "x" / "d" / "a.bin").stat().st_size == 50_000


# ---------------------------------------------------------------------------------------------------------- symlinks


def test_symlinks_followed_once_loops_and_dangling_links_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    outside = tmp_path / "elsewhere.png"
    for p in (pool / "a.png", outside):
        Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(p)
    (pool / "linked.png").symlink_to(outside)
    (pool / "dangling.png").symlink_to(tmp_path / "missing.png")
    (pool / "loop.png").symlink_to(pool / "loop.png")
    (pool / "sub").symlink_to(pool)  # a folder link back to the pool
    with caplog.at_level(logging.WARNING, logger="optidel"):
        ids = [im.id for im in list_pool([pool])]
    assert ids == ["a", "linked"]  # the outside file is taken once, through its link
    log = caplog.text
    assert "dangling.png" in log and "dangling symbolic link" in log
    assert "loop.png" in log and "symbolic link loop" in log
    assert "sub" in log and "link to a folder" in log
    r = invoke("data", "verify", pool)
    out = _no_traceback(r)
    assert r.exit_code == 1 and all(n in out for n in ("dangling.png", "loop.png", "sub"))
    r = invoke("data", "info", pool)
    assert r.exit_code == 0 and "3 file(s) or id(s) have problems" in _no_traceback(r)
