"""Hardness scores of patches, and the ranking they induce.

Three readings of the paper's hardness (docs/PAPER.md), all stored in the manifest; ``--score`` picks the one that
ranks:

- ``margin`` (default; the paper's v4 "margin-driven hard-sample selection"): ``d2 - d1``, the gap between the
  distances to the nearest and the second-nearest k-means centroid. A small gap puts the patch near a cluster
  boundary: **small = hard**.
- ``prototype`` (Sorscher et al. 2022's self-supervised prototype metric): ``d1``, the distance to its own centroid:
  **far = hard**.
- ``reconstruction`` (the paper's v1/v2): the MAE reconstruction error of the patch crop under a pre-trained optidel
  MAE run: **high = hard**. NaN when no run is given.

:func:`hardness` maps each score to one orientation (larger = harder) so that rankings are uniform.

- [0] Sorscher, Geirhos, Shekhar, Ganguli & Morcos, Beyond neural scaling laws: beating power law scaling via data
  pruning, NeurIPS 2022, https://arxiv.org/abs/2206.14486
- [1] He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022, https://arxiv.org/abs/2111.06377
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.log import logger
from optidel.select.patches.compute import prefetched

SCORE_COLUMNS = {
    "margin": "score_margin",
    "prototype": "score_prototype",
    "reconstruction": "score_reconstruction",
}
HARD_IS_HIGH = {"margin": False, "prototype": True, "reconstruction": True}


def margin_score(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Boundary margin ``d2 - d1`` (n,) float32; small = hard."""
    return (np.asarray(d2, np.float32) - np.asarray(d1, np.float32)).astype(np.float32)


def prototype_score(d1: np.ndarray) -> np.ndarray:
    """Distance to the own centroid (n,) float32; large = hard (Sorscher et al. 2022)."""
    return np.asarray(d1, np.float32).copy()


def hardness(name: str, score: np.ndarray) -> np.ndarray:
    """Orient a score so that larger = harder; NaN (score missing) becomes -inf (never chosen as hard).

    Args:
        name: ``margin``, ``prototype`` or ``reconstruction``.
        score: (n,) the raw score.
    Returns:
        (n,) float64.
    """
    if name not in HARD_IS_HIGH:
        raise ValueError(f"unknown score {name!r}; known: {sorted(HARD_IS_HIGH)}")
    h = np.asarray(score, np.float64)
    h = h if HARD_IS_HIGH[name] else -h
    return np.where(np.isnan(h), -np.inf, h)


def rank_order(h: np.ndarray, descending: bool = True) -> np.ndarray:
    """Indices that sort ``h`` (n,) hardest first (``descending``) or easiest first; ties keep index order.

    With ``descending=False`` the -inf of missing scores would come first, so missing rows always go last.
    """
    h = np.asarray(h, np.float64)
    idx = np.arange(h.size)
    if descending:
        return np.lexsort((idx, -h))
    missing = ~np.isfinite(h)
    key = np.where(missing, np.inf, h)
    return np.lexsort((idx, key))


def _model_input_size(model: Any, default: int = 224) -> int:
    for path in (
        "img_size",
        "image_size",
        "input_size",
        "patch_embed.img_size",
        "encoder.patch_embed.img_size",
        "backbone.patch_embed.img_size",
        "vit.patch_embed.img_size",
    ):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is None:
            continue
        if isinstance(obj, list | tuple):
            obj = obj[0]
        try:
            return int(obj)
        except (TypeError, ValueError):
            continue
    return default


def _load_mae(mae_run: str | Path, device: str, seed: int) -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    """The MAE of ``mae_run`` in eval mode on ``device``, its error function and that function's keyword options."""
    try:
        from optidel.models.mae import load_mae, reconstruction_error
    except ImportError as e:  # the pre-training engine is a separate module
        raise ImportError(
            f"score=reconstruction needs optidel.models.mae (load_mae, reconstruction_error): {e}"
        ) from e

    mae_kw = {"device": device} if "device" in inspect.signature(load_mae).parameters else {}
    model = load_mae(mae_run, **mae_kw)
    if hasattr(model, "eval"):
        model.eval()
    if not mae_kw and hasattr(model, "to"):
        model.to(device)
    err_kw = {"seed": seed} if "seed" in inspect.signature(reconstruction_error).parameters else {}
    return model, reconstruction_error, err_kw


def reconstruction_scores(
    image_paths: Sequence[str],
    image_index: np.ndarray,
    boxes: np.ndarray,
    mae_run: str | Path,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 1,
    device: str = "cpu",
    load: Callable[[str], np.ndarray] | None = None,
) -> np.ndarray:
    """MAE reconstruction error of every patch crop (the paper's v1/v2 hardness; high = hard).

    Crops are stretched to the MAE's input size and scored with
    ``optidel.models.mae.reconstruction_error(model, imgs, seed=seed)`` (fixed, seeded masks: a patch's score does not
    depend on its batch), so the scores are reproducible.

    Args:
        image_paths: path of every pool image (indexed by ``image_index``).
        image_index: (n,) int, image of each patch.
        boxes: (n, 4) int ``x0, y0, x1, y1``.
        mae_run: an optidel MAE run directory (``optidel.models.mae.load_mae``).
    Returns:
        (n,) float32 errors.
    Raises:
        ImportError: when optidel.models.mae is not available.
    """
    import torch

    from optidel.data.image import load_rgb, resize_rgb

    load = load or load_rgb
    model, reconstruction_error, err_kw = _load_mae(mae_run, device, seed)
    size = _model_input_size(model)
    n = int(image_index.shape[0])
    out = np.full(n, np.nan, np.float32)
    order = np.argsort(image_index, kind="stable")
    images = np.unique(image_index)
    torch.manual_seed(seed)
    batch: list[np.ndarray] = []
    rows: list[int] = []

    def flush() -> None:
        if not batch:
            return
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(255.0).to(device)
        with torch.no_grad():
            err = reconstruction_error(model, x, **err_kw)
        out[np.asarray(rows)] = np.asarray(
            err.detach().cpu().numpy() if hasattr(err, "detach") else err, np.float32
        )
        batch.clear()
        rows.clear()

    starts = np.searchsorted(image_index[order], images, side="left")
    ends = np.searchsorted(image_index[order], images, side="right")
    decoded = prefetched(lambda i: load(str(image_paths[int(i)])), list(images), workers)
    for j, img in enumerate(decoded):
        for r in order[starts[j] : ends[j]]:
            x0, y0, x1, y1 = (int(v) for v in boxes[r])
            crop = img[max(0, y0) : max(y0 + 1, y1), max(0, x0) : max(x0 + 1, x1)]
            batch.append(resize_rgb(crop, size))
            rows.append(int(r))
            if len(batch) >= batch_size:
                flush()
    flush()
    logger.info("reconstruction scores: %d patches under %s", n, mae_run)
    return out
