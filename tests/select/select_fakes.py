"""Fast stand-ins for the patch proposer and embedder, and tiny generated pools, shared by the select tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from optidel.select.patches.types import ImagePatches


class FakeGridProposer:
    """A 3x3 grid of half-size boxes per image; embeddings = the crop's 4x4 mean colours (48-d), deterministic.

    ``fail_after`` raises RuntimeError after that many images (to test resuming).
    """

    name = "fake-grid"
    embed_dim = 48

    def __init__(self, fail_after: int | None = None, calls: list[int] | None = None):
        self.fail_after = fail_after
        self.calls = calls if calls is not None else []

    def cache_key(self) -> dict[str, Any]:
        return {"kind": "fake-grid", "v": 1}

    def process(self, img: np.ndarray) -> ImagePatches:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("injected failure")
        self.calls.append(1)
        h, w = img.shape[:2]
        bw, bh = w // 2, h // 2
        boxes = []
        for gy in range(3):
            for gx in range(3):
                x0, y0 = gx * (w - bw) // 2, gy * (h - bh) // 2
                boxes.append([x0, y0, x0 + bw, y0 + bh])
        b = np.asarray(boxes, np.int32)
        emb = np.stack([_embed(img[y0:y1, x0:x1]) for x0, y0, x1, y1 in b])
        p = len(b)
        return ImagePatches(
            b,
            np.full(p, 0.25, np.float32),
            np.full(p, np.nan, np.float32),
            np.full(p, np.nan, np.float32),
            emb.astype(np.float32),
        )


def _embed(crop: np.ndarray) -> np.ndarray:
    h, w = crop.shape[:2]
    ys = np.linspace(0, h, 5).astype(int)
    xs = np.linspace(0, w, 5).astype(int)
    cells = [
        crop[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].reshape(-1, 3).mean(0) for i in range(4) for j in range(4)
    ]
    return (np.concatenate(cells) / 255.0 - 0.5).astype(np.float32)


def make_pool(root: Path, n: int = 24, size: int = 48, seed: int = 0, broken: int = 0) -> Path:
    """A folder of ``n`` random blob images (PNG, varied sizes) and ``broken`` zero-byte files."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = size + int(rng.integers(0, 17)), size + int(rng.integers(0, 17))
        base = rng.uniform(0, 255, 3)
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.empty((h, w, 3), np.float32)
        img[:] = base
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, size / 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"img_{i:03d}.png")
    for j in range(broken):
        (root / f"zz_broken_{j}.png").write_bytes(b"")
    return root
