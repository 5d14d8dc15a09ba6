"""The image-level baselines (meddel, semdedup, prototypes, moderate) on image embeddings built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optidel.data.pool import PoolImage
from optidel.select.config import SelectConfig
from optidel.select.rank.image_embeddings import ImageEmbeddings
from optidel.select.strategies import SelectionContext, get_strategy
from optidel.select.strategies.base import force
from optidel.select.strategies.image_clusters import search_threshold, within_cluster_dedup

N = 120


def _embeddings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 well-separated clusters; images 0-29 are near-copies of image 30-59 (duplicates); row 119 is invalid."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16)) * 3
    emb = centres[np.arange(N) % 4] + rng.normal(size=(N, 16))
    emb[:30] = emb[30:60] + rng.normal(scale=0.01, size=(30, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    valid = np.ones(N, bool)
    valid[119] = False
    emb[119] = 0
    return emb.astype(np.float32), valid


def make_ctx(ratio: float = 0.25, **values: object) -> SelectionContext:
    emb, valid = _embeddings()
    pool = [PoolImage("src", f"im{i:03d}", Path(f"/nowhere/im{i:03d}.png")) for i in range(N)]
    cfg = force(SelectConfig(pool=("x",), out="o", ratio=ratio), "test", **{"cluster.image_k": 4, **values})
    ie = ImageEmbeddings(emb, valid, "mean")
    return SelectionContext(cfg, pool, {"image_embeddings": lambda: ie})


@pytest.mark.parametrize("name", ["meddel", "semdedup", "prototypes", "moderate"])
def test_hits_the_ratio_with_valid_distinct_images(name: str) -> None:
    ctx = make_ctx()
    res = get_strategy(name).select(ctx)
    assert res.level == "image"
    assert res.ids.size == ctx.n_images == 30
    assert np.unique(res.ids).size == res.ids.size
    assert 119 not in res.ids  # invalid embedding never chosen
    again = get_strategy(name).select(make_ctx())
    assert np.array_equal(res.ids, again.ids)  # deterministic


@pytest.mark.parametrize("name", ["meddel", "semdedup"])
def test_dedup_methods_keep_one_of_each_duplicate_pair(name: str) -> None:
    res = get_strategy(name).select(make_ctx(ratio=0.5))
    chosen = set(res.ids.tolist())
    both = [i for i in range(30) if i in chosen and i + 30 in chosen]
    assert not both, f"{name} kept both copies of {both}"


def test_prototypes_picks_the_farthest_and_moderate_the_middle() -> None:
    proto = get_strategy("prototypes").select(make_ctx())
    mod = get_strategy("moderate").select(make_ctx())
    assert proto.scores["centre_distance"].mean() > np.median(mod.scores["median_gap"])
    assert np.all(np.diff(proto.scores["centre_distance"]) <= 1e-6)  # farthest first
    assert np.all(np.diff(mod.scores["median_gap"]) >= -1e-6)


def test_meddel_keep_option_changes_which_copy_survives() -> None:
    nearer = get_strategy("meddel").select(make_ctx(ratio=0.5, **{"scoring.meddel_keep": "nearer"}))
    farther = get_strategy("meddel").select(make_ctx(ratio=0.5, **{"scoring.meddel_keep": "farther"}))
    assert not np.array_equal(np.sort(nearer.ids), np.sort(farther.ids))


def test_within_cluster_dedup_and_threshold_search() -> None:
    emb = np.array([[1, 0], [0.999, 0.0447], [0, 1]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    keep = within_cluster_dedup(emb, np.zeros(3, int), np.array([0.0, 1.0, 2.0]), threshold=0.99)
    assert keep.tolist() == [True, False, True]
    t, kept = search_threshold(lambda t: within_cluster_dedup(emb, np.zeros(3, int), np.arange(3.0), t), 3)
    assert kept.sum() == 3 and t > 0.99
