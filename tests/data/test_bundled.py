"""The offline pool of crops of scikit-image's bundled real images."""

from __future__ import annotations

from pathlib import Path

from optidel.data.bundled import SOURCES, make_bundled_pool
from optidel.data.image import load_rgb
from optidel.data.pool import list_pool


def test_bundled_pool_is_deterministic_and_readable(tmp_path: Path) -> None:
    a = make_bundled_pool(tmp_path / "a", n=20, size=48, seed=3)
    b = make_bundled_pool(tmp_path / "b", n=20, size=48, seed=3)
    pool = list_pool([a])
    assert len(pool) == 20
    assert {p.id.rsplit("_", 1)[0] for p in pool} <= set(SOURCES)
    for p in pool[:5]:
        img = load_rgb(p.path)
        assert img.shape == (48, 48, 3)
        assert (img == load_rgb(b / p.path.name)).all()
