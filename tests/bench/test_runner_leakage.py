"""The benchmark's full arm drops pool images that duplicate a downstream test image (the selections do so anyway)."""

from __future__ import annotations

import shutil
from pathlib import Path

from optidel.bench.config import BenchmarkConfig
from optidel.bench.grid import FULL, Arm
from optidel.bench.runner import BenchmarkRunner
from optidel.data.pool import list_pool
from optidel.runtime.run_dir import is_done


def _cfg(root: Path, downstream: str, pool: str) -> BenchmarkConfig:
    return BenchmarkConfig(
        name="leak",
        data_root=str(root),
        datasets=(downstream,),
        pool_datasets=(pool,),
        methods=("full",),
        seeds=(0,),
        select={"report": {"enabled": False}, "synthesis": {"image_copy": "copy"}},
    )


def test_full_arm_uses_a_guarded_copy_only_when_the_pool_leaks(tiny_seg: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    shutil.copytree(tiny_seg, root / tiny_seg.name)
    test_images = list_pool([f"{root / tiny_seg.name}:test"])
    clean = root / "pool-clean"
    shutil.copytree(root / tiny_seg.name / "images", clean)
    for im in test_images:  # the clean pool: the dataset's train images only
        (clean / im.path.name).unlink()
    leaky = root / "pool-leaky"
    shutil.copytree(clean, leaky)
    shutil.copy(test_images[0].path, leaky / "copied_test_image.png")

    arm = Arm(FULL, 1.0, "mae", 0)
    ok = BenchmarkRunner(_cfg(root, tiny_seg.name, "pool-clean"), tmp_path / "b1")
    assert not ok.full_pool_leaks() and ok.pretrain_config(arm).data == (str(clean),)
    assert f"{root / tiny_seg.name}:test" in ok.select_config(arm).leakage_against

    bad = BenchmarkRunner(_cfg(root, tiny_seg.name, "pool-leaky"), tmp_path / "b2")
    assert bad.full_pool_leaks()
    from optidel.select.pipeline import run_selection  # what run_arm does before pre-training the full arm

    run_selection(bad.select_config(arm))
    sel = bad.layout.select_dir(arm)
    assert is_done(sel) and bad.pretrain_config(arm).data == (str(sel),)
    copied = {p.name for p in (sel / "images").iterdir()}
    assert len(copied) == len(list(leaky.iterdir())) - 1  # every pool image but the leaking one
