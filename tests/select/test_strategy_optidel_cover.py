"""``optidel-cover``: quotas per cluster, hardest within each, reduction to plain ``optidel``, diverse mosaics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from optidel.config import ConfigError
from optidel.data.pool import PoolImage
from optidel.select.config import SelectConfig
from optidel.select.patches.store import PATCH_SCHEMA, PatchStore
from optidel.select.rank.cluster import KMeansResult
from optidel.select.rank.scores import margin_score, prototype_score
from optidel.select.strategies import SelectionContext, get_strategy
from optidel.select.strategies.base import force
from optidel.select.strategies.optidel_cover import cluster_coverage, cover_order, cover_quotas

N_IMAGES = 50
PER_IMAGE = 8
K = 6


def make_ctx(**values: object) -> SelectionContext:
    """200 x 2 patches in K skewed clusters; the hardest (smallest margin) patches all sit in clusters 0 and 1."""
    rng = np.random.default_rng(0)
    n = N_IMAGES * PER_IMAGE
    pool = [PoolImage("src", f"im{i:03d}", Path(f"/nowhere/im{i:03d}.png")) for i in range(N_IMAGES)]
    cols = {f.name: pa.nulls(n, f.type) for f in PATCH_SCHEMA}
    cols["image_index"] = pa.array(np.repeat(np.arange(N_IMAGES), PER_IMAGE))
    table = pa.table(cols).append_column("patch_id", pa.array(np.arange(n)))
    store = PatchStore(Path("."), table, rng.normal(size=(n, 8)).astype(np.float32), N_IMAGES)
    cluster = rng.choice(K, size=n, p=[0.4, 0.25, 0.15, 0.1, 0.06, 0.04]).astype(np.int32)
    d1 = rng.uniform(0, 1, n).astype(np.float32)
    d2 = (d1 + rng.uniform(0.2, 1, n) + 0.5 * (cluster >= 2)).astype(
        np.float32
    )  # clusters 0-1: small margins
    km = KMeansResult(np.zeros((K, 8), np.float32), cluster, d1, d2, "cosine", 0.0)
    scores = {
        "margin": margin_score(d1, d2),
        "prototype": prototype_score(d1),
        "reconstruction": np.full(n, np.nan),
    }
    cfg = force(SelectConfig(pool=("x",), out="o", ratio=0.2), "test", **values)
    return SelectionContext(
        cfg, pool, {"patches": lambda: store, "clusters": lambda: km, "scores": lambda: scores}
    )


def run(name: str, **values: object):
    s = get_strategy(name)
    ctx = make_ctx(**values)
    ctx.cfg = s.resolve_config(ctx.cfg)
    return s.select(ctx), ctx


def test_quotas_sum_respect_minimum_cap_and_exponent() -> None:
    sizes = np.array([400, 100, 25, 3, 0])
    prop = cover_quotas(sizes, 100, exponent=1.0, minimum=0)
    assert prop.sum() == 100 and prop[4] == 0
    assert np.allclose(prop[:3], 100 * sizes[:3] / sizes.sum(), atol=1)  # exponent 1: proportional to size
    equal = cover_quotas(sizes, 100, exponent=0.0, minimum=0)
    # exponent 0: equal shares of 25; the 3-patch cluster is capped and its surplus goes to the larger ones
    assert equal.tolist() == [36, 36, 25, 3, 0]
    sqrt = cover_quotas(sizes, 100, exponent=0.5, minimum=1)
    assert sqrt.sum() == 100 and (sqrt[:4] >= 1).all() and prop[0] > sqrt[0] > equal[0]
    few = cover_quotas(sizes, 2, exponent=0.5, minimum=1)  # minima exceed the budget: largest clusters first
    assert few.tolist() == [1, 1, 0, 0, 0]
    assert cover_quotas(sizes, 10_000, 0.5, 1).tolist() == sizes.tolist()  # a budget over the pool takes all


def test_takes_the_hardest_within_each_cluster_by_quota() -> None:
    res, ctx = run("optidel-cover")
    cl, h = ctx.clusters().cluster, ctx.hardness()
    assert res.ids.size == 40 and res.groups is not None  # 4 x round(0.2 x 50)
    _, quotas = cover_order(cl, h, 40, 1.0, 0.5, 1)
    counts = np.bincount(cl[res.ids], minlength=K)
    assert np.array_equal(counts, quotas) and (counts >= 1).all()  # every cluster covered
    for c in range(K):  # within a cluster: exactly its hardest patches
        members = np.flatnonzero(cl == c)
        hardest = members[np.argsort(-h[members], kind="stable")[: counts[c]]]
        assert set(res.ids[cl[res.ids] == c].tolist()) == set(hardest.tolist())
    plain, _ = run("optidel")
    plain_counts = np.bincount(cl[plain.ids], minlength=K)
    assert plain_counts[2:].sum() == 0  # plain optidel collapses onto clusters 0-1 here ...
    assert (counts[2:] > 0).all()  # ... the cover variant does not


def test_cover_fraction_zero_is_plain_optidel() -> None:
    cover, ctx = run("optidel-cover", **{"scoring.cover_fraction": 0.0, "synthesis.grouping": "random"})
    plain, _ = run("optidel")
    assert np.array_equal(cover.ids, plain.ids)
    order_cover, _ = get_strategy("optidel-cover").ranking(ctx)
    order_plain, _ = get_strategy("optidel").ranking(ctx)
    assert np.array_equal(order_cover, order_plain)  # the whole ranking, not only the top N


def test_mosaics_draw_four_clusters_and_coverage_table() -> None:
    res, ctx = run("optidel-cover")
    assert ctx.cfg.synthesis.grouping == "diverse"
    cl = ctx.clusters().cluster
    distinct = [len({int(cl[res.ids[p]]) for p in row if p >= 0}) for row in res.groups]
    assert sum(d == 4 for d in distinct) >= 6  # of 10 mosaics; a cluster holding >40% forces some repeats
    cov = cluster_coverage(ctx, res.ids)
    assert cov["pool"].sum() == len(cl) and cov["selected"].sum() == cov["optidel"].sum() == 40
    assert (cov["selected"] > 0).sum() == K and (cov["optidel"] > 0).sum() == 2
    assert res.info["clusters_covered"] == K


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cover_fraction"):
        run("optidel-cover", **{"scoring.cover_fraction": 1.5})
    with pytest.raises(ConfigError, match="cover_exponent"):
        run("optidel-cover", **{"scoring.cover_exponent": -1.0})
