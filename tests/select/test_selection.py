"""Greedy top-N selection: plain, per-image cap, near-duplicate removal with refill (against a brute-force reference)."""

from __future__ import annotations

import numpy as np
import pytest

from optidel.select.rank.selection import greedy_select


def reference(order, n, image_index=None, cap=None, emb=None, thr=None):
    """The definition, one candidate at a time."""
    out: list[int] = []
    for r in order:
        if cap is not None and sum(image_index[o] == image_index[r] for o in out) >= cap:
            continue
        if thr is not None and out:
            u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
            if (u[out] @ u[r]).max() > thr:
                continue
        out.append(int(r))
        if len(out) == n:
            break
    return out


def test_plain_top_n() -> None:
    order = np.array([5, 3, 9, 1])
    assert greedy_select(order, 2).tolist() == [5, 3]
    assert greedy_select(order, 10).tolist() == [5, 3, 9, 1]
    assert greedy_select(order, 0).size == 0


def test_max_per_image() -> None:
    image_index = np.array([0, 0, 0, 1, 1, 2])
    order = np.arange(6)
    assert greedy_select(order, 4, image_index, max_per_image=1).tolist() == [0, 3, 5]
    assert greedy_select(order, 4, image_index, max_per_image=2).tolist() == [0, 1, 3, 4]
    with pytest.raises(ValueError):
        greedy_select(order, 2, max_per_image=1)


def test_dedup_drops_duplicates_and_refills() -> None:
    emb = np.array([[1, 0], [1, 0.01], [0, 1], [0.99, 0.02], [-1, 0]], np.float32)
    sel = greedy_select(np.arange(5), 3, embeddings=emb, dedup_threshold=0.95)
    assert sel.tolist() == [0, 2, 4]  # 1 and 3 duplicate 0; refilled from the next candidates


@pytest.mark.parametrize("block", [7, 2048])
def test_dedup_and_cap_match_reference(block: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 8))
    emb = (base[rng.integers(0, 30, 400)] + 0.05 * rng.normal(size=(400, 8))).astype(
        np.float32
    )  # many near-dups
    image_index = rng.integers(0, 60, 400)
    order = rng.permutation(400)
    got = greedy_select(order, 25, image_index, 2, emb, 0.9, block=block)
    assert got.tolist() == reference(order, 25, image_index, 2, emb, 0.9)
    u = emb[got] / np.linalg.norm(emb[got], axis=1, keepdims=True)
    sims = u @ u.T - 2 * np.eye(len(got))
    assert sims.max() <= 0.9
