"""Each strategy on an in-memory context: what it picks, how many, and what it forces in the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from optidel.config import ConfigError
from optidel.data.pool import PoolImage
from optidel.select.config import ProposalConfig, SelectConfig
from optidel.select.patches.store import PATCH_SCHEMA, PatchStore
from optidel.select.rank.cluster import KMeansResult
from optidel.select.rank.scores import margin_score, prototype_score
from optidel.select.strategies import SelectionContext, SelectionResult, available_strategies, get_strategy
from optidel.select.strategies.base import force

N_IMAGES = 40
PER_IMAGE = 5


def make_ctx(**cfg_values: object) -> SelectionContext:
    rng = np.random.default_rng(0)
    n = N_IMAGES * PER_IMAGE
    pool = [PoolImage("src", f"im{i:03d}", Path(f"/nowhere/im{i:03d}.png")) for i in range(N_IMAGES)]
    image_index = np.repeat(np.arange(N_IMAGES), PER_IMAGE)
    cols = {f.name: pa.nulls(n, f.type) for f in PATCH_SCHEMA}
    cols["image_index"] = pa.array(image_index)
    table = pa.table(cols).append_column("patch_id", pa.array(np.arange(n)))
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    store = PatchStore(Path("."), table, emb, N_IMAGES)
    d1 = rng.uniform(0, 1, n).astype(np.float32)
    d2 = (d1 + rng.uniform(0, 1, n)).astype(np.float32)
    km = KMeansResult(
        np.zeros((5, 8), np.float32), rng.integers(0, 5, n).astype(np.int32), d1, d2, "cosine", 0.0
    )
    scores = {
        "margin": margin_score(d1, d2),
        "prototype": prototype_score(d1),
        "reconstruction": np.full(n, np.nan),
    }
    cfg = force(SelectConfig(pool=("x",), out="o", ratio=0.1), "test", **cfg_values)  # dotted keys
    return SelectionContext(
        cfg, pool, {"patches": lambda: store, "clusters": lambda: km, "scores": lambda: scores}
    )


def run(name: str, **cfg_values: object) -> tuple[SelectionResult, SelectionContext]:
    s = get_strategy(name)
    ctx = make_ctx(**cfg_values)
    ctx.cfg = s.resolve_config(ctx.cfg)
    return s.select(ctx), ctx


def test_registry() -> None:
    names = set(available_strategies())
    assert {"optidel", "random", "full", "hard-only", "mosaic-random", "optidel-grid", "easy"} <= names
    with pytest.raises(ConfigError, match="unknown selection method 'nope'; known: .*optidel"):
        get_strategy("nope")


def test_select_help_names_every_registered_method() -> None:
    """`optidel select --help` lists the methods by hand (it must not import them); it must not go stale."""
    from optidel.select.command import _METHODS

    listed = {m.strip().split(" (")[0] for part in _METHODS.split(";") for m in part.split(",")}
    assert listed == set(available_strategies())


def test_optidel_takes_the_smallest_margins_in_mosaics() -> None:
    res, ctx = run("optidel")
    margin = ctx.scores()["margin"]
    assert res.level == "patch" and res.ids.size == 16  # 4 x round(0.1 x 40)
    assert np.array_equal(res.ids, np.argsort(margin, kind="stable")[:16])
    assert res.groups is not None and res.groups.shape == (4, 4)


def test_optidel_prototype_score_and_caps() -> None:
    res, ctx = run("optidel", **{"scoring.score": "prototype", "scoring.max_per_image": 1})
    d1 = ctx.scores()["prototype"]
    assert res.ids.size == 16
    assert len(set(ctx.patches().image_index[res.ids].tolist())) == 16  # one per image
    assert d1[res.ids[0]] == d1.max()


def test_diverse_grouping_uses_clusters() -> None:
    res, ctx = run("optidel", **{"synthesis.grouping": "diverse"})
    cl = ctx.clusters().cluster[res.ids]
    per_group = [len(set(cl[row].tolist())) for row in res.groups]
    assert np.mean(per_group) >= 3  # 5 clusters available: nearly every group is all-different


def test_easy_is_the_opposite_end() -> None:
    res, ctx = run("easy")
    margin = ctx.scores()["margin"]
    assert np.array_equal(res.ids, np.argsort(-margin, kind="stable")[:16])


def test_hard_only_keeps_the_image_budget() -> None:
    res, ctx = run("hard-only")
    assert ctx.cfg.synthesis.mosaic is False and res.groups is None and res.ids.size == 4
    assert np.array_equal(res.ids, np.argsort(ctx.scores()["margin"], kind="stable")[:4])


def test_optidel_grid_forces_grid_patches() -> None:
    s = get_strategy("optidel-grid")
    assert s.resolve_config(SelectConfig(proposal=ProposalConfig(patches="sam"))).proposal.patches == "grid"


def test_mosaic_random_is_seeded() -> None:
    a, _ = run("mosaic-random")
    b, _ = run("mosaic-random")
    c, _ = run("mosaic-random", seed=1)
    assert a.ids.size == 16 and len(set(a.ids.tolist())) == 16
    assert np.array_equal(a.ids, b.ids) and not np.array_equal(a.ids, c.ids)


def test_random_and_full_images() -> None:
    a, _ = run("random")
    b, _ = run("random", seed=3)
    assert a.level == "image" and a.ids.size == 4 and len(set(a.ids.tolist())) == 4
    assert a.ids.max() < N_IMAGES and not np.array_equal(a.ids, b.ids)
    f, _ = run("full")
    assert f.ids.tolist() == list(range(N_IMAGES)) and f.groups is None
    assert not get_strategy("random").needs_patches and get_strategy("optidel").needs_patches


def test_result_validates_groups() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        SelectionResult("patch", np.arange(4), np.array([[0, 1, 1, 2]]))
