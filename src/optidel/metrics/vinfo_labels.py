"""Label sources for V-information that are not built from the hardness score (:mod:`optidel.metrics.vinfo`).

- :func:`lesion_labels`: downstream labels from masks (the lesion share of a patch box, binned);
- :func:`lowlevel_features` / :func:`lowlevel_label_source`: k-means pseudo-labels of colour and texture statistics
  of the patch pixels, a representation unrelated to the scored embedding.

References:
    - [0] Ojala, Pietikainen, Maenpaa. Multiresolution gray-scale and rotation invariant texture classification with
      local binary patterns. TPAMI 2002.
"""

from __future__ import annotations

import numpy as np

from optidel.metrics.vinfo import LabelSource, pseudo_labels

LESION_BINS = (0.01, 0.5)  # box share covered by the lesion: none < 1% <= partial < 50% <= mostly lesion


def lesion_labels(fractions: np.ndarray, bins: tuple[float, ...] = LESION_BINS) -> np.ndarray:
    """Downstream labels of patches from their masks: (n,) lesion share of each box in [0, 1] -> (n,) int bins.

    With the default bins: 0 = no lesion (< 1% of the box), 1 = partial (1% to < 50%), 2 = mostly lesion
    (>= 50%);
    ``bins=(0.01,)`` gives lesion present / absent.
    """
    f = np.asarray(fractions, np.float64)
    return np.searchsorted(np.asarray(bins), f, side="right").astype(np.int64)


LBP_POINTS = 8  # local binary patterns: 8 neighbours at radius 1, rotation-invariant "uniform": 10 codes [0]
LOWLEVEL_DIM = 6 + 3 + 2 + (LBP_POINTS + 2)


def lowlevel_features(crops: list[np.ndarray], side: int = 32) -> np.ndarray:
    """Colour and texture statistics of image crops: a representation unrelated to the scored embedding.

    Per crop (resized to ``side`` x ``side``): RGB mean and s.d. (6), HSV mean (3; hue as the mean of its
    angle's cosine, saturation, value), gradient magnitude mean and s.d. of the grey image (2), and the histogram
    of rotation-invariant uniform local binary patterns (10) [0].

    Args:
        crops: (h, w, 3) uint8 arrays.
    Returns:
        (n, 21) float32.
    """
    from PIL import Image
    from skimage.feature import local_binary_pattern

    out = np.zeros((len(crops), LOWLEVEL_DIM), np.float32)
    for i, c in enumerate(crops):
        im = Image.fromarray(np.ascontiguousarray(c)).resize((side, side), Image.Resampling.BILINEAR)
        rgb = np.asarray(im, np.float32) / 255.0
        hsv = np.asarray(im.convert("HSV"), np.float32) / 255.0
        grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        gy, gx = np.gradient(grey)
        mag = np.hypot(gx, gy)
        lbp = local_binary_pattern((grey * 255).astype(np.uint8), LBP_POINTS, 1, method="uniform")
        hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=LBP_POINTS + 2)[: LBP_POINTS + 2]
        out[i] = np.concatenate(
            [
                rgb.reshape(-1, 3).mean(0),
                rgb.reshape(-1, 3).std(0),
                [np.cos(2 * np.pi * hsv[..., 0]).mean(), hsv[..., 1].mean(), hsv[..., 2].mean()],
                [mag.mean(), mag.std()],
                hist / hist.sum(),
            ]
        )
    return out


def lowlevel_label_source(
    set_features: np.ndarray, pool_features: np.ndarray, k: int = 10, seed: int = 0
) -> LabelSource:
    """Y = k-means (k) pseudo-labels of :func:`lowlevel_features`, fitted on the pool's (standardised)."""
    mu, sd = pool_features.mean(0), pool_features.std(0) + 1e-6
    _, assign = pseudo_labels((pool_features - mu) / sd, k, seed=seed)
    return LabelSource(
        "lowlevel",
        f"k-means (k={k}) pseudo-labels of low-level colour/texture statistics of the patch pixels (RGB/HSV "
        "moments, gradient energy, LBP histogram), fitted on the pool: not the scored embedding",
        assign((set_features - mu) / sd),
        assign((pool_features - mu) / sd),
        k,
    )
