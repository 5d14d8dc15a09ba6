"""An offline unlabeled pool made from the real medical-type images that scikit-image ships in its wheel.

scikit-image bundles a few real images that need no download: a retinal fundus photograph (``retina``), an
immunohistochemistry slide (``immunohistochemistry``), fluorescence microscopy cells (``cell``), a retinal
microaneurysm crop (``microaneurysms``) and the Shepp-Logan phantom (``shepp_logan_phantom``, a CT test object). Too
few to be a pool on their own, so :func:`make_bundled_pool` writes seeded crops of them at several scales, each resized
to ``size`` px: a small but real pool for the demo and for tests. It says so in ``BUNDLED.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from optidel.runtime.atomic import atomic_write_text

SOURCES = ("retina", "immunohistochemistry", "cell", "microaneurysms", "shepp_logan_phantom")


def bundled_images() -> dict[str, np.ndarray]:
    """The bundled images as (H, W, 3) uint8, by name."""
    import skimage.data as skd

    out = {}
    for name in SOURCES:
        a = getattr(skd, name)()
        if a.dtype != np.uint8:
            a = np.clip(a * 255 if a.max() <= 1 else a, 0, 255).astype(np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        out[name] = np.ascontiguousarray(a[..., :3])
    return out


def make_bundled_pool(root: str | Path, n: int = 120, size: int = 256, seed: int = 0) -> Path:
    """Write ``n`` PNG crops (``<source>_<i>.png``, ``size`` px) of the bundled images into ``root``; returns root.

    Crops are square, their side drawn from [0.25, 0.9] of the image's short side, positions uniform; each source gets
    a share of ``n`` proportional to the square root of its area (big images give more crops).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    imgs = bundled_images()
    weights = np.array([np.sqrt(a.shape[0] * a.shape[1]) for a in imgs.values()])
    counts = np.floor(weights / weights.sum() * n).astype(int)
    counts[np.argmax(weights)] += n - counts.sum()
    for (name, img), k in zip(imgs.items(), counts, strict=True):
        h, w = img.shape[:2]
        short = min(h, w)
        for i in range(k):
            side = int(rng.uniform(0.25, 0.9) * short)
            y0 = int(rng.integers(0, h - side + 1))
            x0 = int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[y0 : y0 + side, x0 : x0 + side])
            crop.resize((size, size), Image.Resampling.BICUBIC).save(root / f"{name}_{i:03d}.png")
    atomic_write_text(
        root / "BUNDLED.txt",
        "Crops of real images bundled with scikit-image (retina, immunohistochemistry, cell, microaneurysms, "
        "Shepp-Logan phantom), written by optidel.data.bundled for the demo.\n",
    )
    return root
