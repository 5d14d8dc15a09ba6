"""The benchmark runner on a tiny grid: every cell runs, a rerun resumes, tables list every method."""

from __future__ import annotations

from pathlib import Path

import pytest

from optidel.bench.config import BenchmarkConfig
from optidel.bench.runner import BenchmarkRunner
from optidel.bench.shipped import config_path, shipped_configs
from optidel.config import resolve_config


def _tiny(tiny_seg: Path) -> BenchmarkConfig:
    return BenchmarkConfig(
        name="tiny",
        data_root=str(tiny_seg.parent),
        datasets=(tiny_seg.name,),
        methods=("full", "random", "prototypes"),
        ratios=(0.25,),
        seeds=(0,),
        select=("patches=grid", "embedder=timm:resnet18", "report=false"),
        pretrain=("img_size=32", "patch_size=8", "batch_size=4", "steps=2", "checkpoint_every=1"),
        finetune=("img_size=32", "epochs=1", "min_steps=1", "batch_size=4", "threads=1"),
        n_boot=50,
    )


def test_tiny_benchmark_runs_resumes_and_tabulates(tmp_path: Path, tiny_seg: Path) -> None:
    cfg = _tiny(tiny_seg)
    runner = BenchmarkRunner(cfg, tmp_path / "bench")
    plan = runner.plan()
    assert plan["pretrainings"] == 3 and plan["selections"] == 2 and plan["finetunings"] == 4  # + random init
    runner.run(stop_after=1)  # a partial run ("killed" after one fine-tuning)
    assert BenchmarkRunner(cfg, tmp_path / "bench").plan()["finetunings done"] == 1
    results = BenchmarkRunner(cfg, tmp_path / "bench").run()
    text = results.read_text()
    for method in ("full", "random", "prototypes", "random-init", "mean-mask prior"):
        assert f"\n{method}," in text
    md = (tmp_path / "bench" / "results.md").read_text()
    assert "| prototypes | 0.25 |" in md and "NormDEL" in md
    full_row = next(line for line in md.splitlines() if line.startswith("| full |"))
    vs_init, vs_random, vs_full = (c.strip() for c in full_row.strip("|").split("|")[5:8])
    assert vs_init.startswith(("+", "-0")) and "[" in vs_init  # paired with the random-init run of its seed
    assert vs_random.startswith(("+", "-0")) and vs_full == "-"
    assert (tmp_path / "bench" / "plots" / "miou_per_method.png").is_file()
    # the pool is the train split only
    arms = runner.all_arms()
    sel = runner.select_config(next(a for a in arms if a.method == "random"))
    assert all(p.endswith(":train") for p in sel.pool)
    assert [a.method for a in arms] == ["random-init", "full", "random", "prototypes"]  # reference rows first


def test_shipped_configs_resolve() -> None:
    assert {"cpu-default", "gpu-paper"} <= set(shipped_configs())
    for name in ("cpu-default", "gpu-paper"):
        cfg = resolve_config(BenchmarkConfig, config_path(name))
        cfg.validate()
    with pytest.raises(FileNotFoundError, match="neither a file nor one of"):
        config_path("nope")
