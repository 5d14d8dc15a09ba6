"""The stage cache: the patch-stage key recipe is frozen (caches hold hours of SAM compute), flat keys still map.

The literals below are PRE-RESTRUCTURE keys: computed by the code before the select package was restructured (git
HEAD of 2026-12-01, ``SelectionPipeline._patches_key`` in the one-file ``select/pipeline.py``, with the flat
``SelectConfig``), with the same pools and configs as here. They must never change: a
different key silently orphans every user's and the benchmark's cached patches.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from optidel.config import ConfigDeprecationWarning
from optidel.data.pool import PoolImage, list_pool
from optidel.select.config import SelectConfig
from optidel.select.pipeline import selection_config
from optidel.select.stage_cache import StageCache, pool_file_lines, pool_fingerprint

# pre-restructure patch-stage keys (see the module docstring): do not edit
PRE_RESTRUCTURE = {
    "one grid_default": "50868c3cc0c4405b",
    "one grid_custom": "a04fc2b914fee039",
    "one sam_default": "a3b0266daf78a1a2",
    "two grid_default": "3cf3a647e7ba6ac9",
    "two_source_other grid_default": "baa80b5fb140b1f8",
    "drive grid_default": "36d85557436325c1",
}
FILES = {
    "keypool/a.png": b"optidel-key-a",
    "keypool/b.png": b"optidel-key-bb",
    "keypool/sub/c.jpg": b"optidel-key-ccc",
    "other/d.png": b"optidel-key-dddd",
}
NESTED = {
    "grid_default": {"proposal": {"patches": "grid"}},
    "grid_custom": {
        "proposal": {
            "patches": "grid",
            "proposer_options": {"tile": 64},
            "embedder": "timm:resnet18",
            "proposer_batch": 4,
        },
        "runtime": {"shard_size": 16, "device": "cpu"},
        "cluster": {"k": 5},
        "synthesis": {"mosaic_size": 128},
        "seed": 3,
    },
    "sam_default": {},
}
FLAT = {  # the same configs in the old flat keys
    "grid_default": {"patches": "grid"},
    "grid_custom": {
        "patches": "grid",
        "proposer_options": {"tile": 64},
        "embedder": "timm:resnet18",
        "shard_size": 16,
        "proposer_batch": 4,
        "device": "cpu",
        "seed": 3,
        "k": 5,
        "mosaic_size": 128,
    },
    "sam_default": {},
}


def fixed_key(pool: list[PoolImage], prefix: Path, cfg: SelectConfig) -> str:
    """The patch-stage key with the pool's location replaced by ``/fixed`` (the key hashes resolved paths)."""
    lines = [line.replace(str(prefix).encode(), b"/fixed") for line in pool_file_lines(pool)]
    return StageCache(cfg, pool).patches_key_for(pool_fingerprint(pool, lines))


@pytest.fixture
def key_pools(tmp_path: Path) -> tuple[Path, list[PoolImage], list[PoolImage]]:
    root = tmp_path.resolve()
    for name, payload in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(payload)
    return root, list_pool([root / "keypool"]), list_pool([root / "keypool", root / "other"])


@pytest.mark.parametrize("name", sorted(NESTED))
def test_patch_key_equals_the_pre_restructure_key(key_pools, name: str) -> None:
    root, one, _ = key_pools
    cfg = selection_config(pool=["x"], out="/tmp/unused", **NESTED[name])
    assert fixed_key(one, root, cfg) == PRE_RESTRUCTURE[f"one {name}"]


@pytest.mark.parametrize("name", sorted(FLAT))
def test_old_flat_keys_give_the_same_config_with_a_warning(key_pools, name: str) -> None:
    root, one, _ = key_pools
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = selection_config(pool=["x"], out="/tmp/unused", **FLAT[name])
    assert cfg == selection_config(pool=["x"], out="/tmp/unused", **NESTED[name])
    assert fixed_key(one, root, cfg) == PRE_RESTRUCTURE[f"one {name}"]
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConfigDeprecationWarning)]
    renamed = [k for k in FLAT[name] if k in SelectConfig.RENAMED]
    assert len(msgs) == len(renamed)
    assert all(any(f"'{SelectConfig.RENAMED[k]}'" in m for m in msgs) for k in renamed)  # names the new key


def test_multi_source_pool_keys_each_source_like_a_one_source_pool(key_pools) -> None:
    root, _, two = key_pools
    cfg = selection_config(pool=["x"], out="/tmp/unused", proposal={"patches": "grid"})
    assert fixed_key(two, root, cfg) == PRE_RESTRUCTURE["two grid_default"]
    assert fixed_key(two[3:], root, cfg) == PRE_RESTRUCTURE["two_source_other grid_default"]


def test_real_pool_patch_key_unchanged(drive: Path) -> None:
    """DRIVE train with grid patches: the ``patches-<key>`` of ``optidel select --set patches=grid``."""
    root = drive.resolve()
    pool = list_pool([f"{root}:train"])
    cfg = selection_config(pool=[f"{root}:train"], out="/tmp/unused", proposal={"patches": "grid"})
    assert fixed_key(pool, root, cfg) == PRE_RESTRUCTURE["drive grid_default"]
    cache = StageCache(cfg, pool)
    assert cache.patches_dir().name == f"patches-{cache.patches_key}"


def test_report_flag_keeps_its_flat_form_and_its_section() -> None:
    """``report`` is both an old flat flag and the new section's name: a bool maps, a mapping is the section."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigDeprecationWarning)
        flat = selection_config(pool=["x"], out="o", report=False, vinfo=False)
    nested = selection_config(pool=["x"], out="o", report={"enabled": False, "vinfo": False})
    assert flat == nested and not nested.report.enabled and not nested.report.vinfo
