"""Smooth random colour noise: the images of the ``noise`` control (``optidel.select.strategies.noise_control``).

Hand-written because no library makes this control: a sum of Gaussian-blurred white noise (``scipy.ndimage``) at
three scales, from coarse blobs to fine grain, so an encoder pre-trained on it sees edges, blobs and colour
gradients at every scale but nothing of what a medical image shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from optidel.runtime.progress import track
from optidel.select.outputs.mosaic import save_png


def noise_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: random colour fields at blur sigmas size/8, size/32 and 1.5 px (weights 1, 0.5,
    0.25), each scaled to a peak of 1, summed and stretched to 0-255."""
    img = np.zeros((size, size, 3), np.float32)
    for sigma, weight in ((size / 8, 1.0), (size / 32, 0.5), (1.5, 0.25)):
        field = gaussian_filter(rng.normal(0, 1, (size, size, 3)).astype(np.float32), sigma=(sigma, sigma, 0))
        img += weight * field / (np.abs(field).max() + 1e-6)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return (img * 255).astype(np.uint8)


def write_noise_images(folder: Path, n: int, size: int, seed: int) -> list[str]:
    """``noise_00000.png`` ... in ``folder``: image i seeded by (seed, i), so a set of n is the first n of a larger
    one; files already there are kept (a killed write resumes). Returns the file names in order."""
    names = [f"noise_{i:05d}.png" for i in range(n)]
    for i, name in enumerate(track(names, "noise images")):
        if not (folder / name).is_file():
            save_png(noise_image(size, np.random.default_rng([seed % (2**32), i])), str(folder / name))
    return names
