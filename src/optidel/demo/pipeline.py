"""``optidel demo``: a small benchmark grid on embedded data, run by the benchmark runner, with a plain summary.

The demo is a preset of ``optidel benchmark`` (``optidel/bench/presets/demo.yaml``; ``demo-quick.yaml`` for
``--quick``): the same code path (select -> pre-train -> fine-tune, the runner's done-checks and resume, its tables
in ``results.md``), on the data of :mod:`optidel.demo.data`. The default grid is in the regime where pre-training
shows (BENCHMARKS.md, "A regime with signal"): a frozen-encoder probe with few labels, random init as the floor, an
OptiDEL set against a random set of the same size at equal pre-training steps, several seeds. ``summary.md`` then
says in one sentence what the rows mean (:mod:`optidel.demo.summary`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optidel.bench.config import BenchmarkConfig
from optidel.bench.runner import BenchmarkRunner
from optidel.bench.shipped import preset_path
from optidel.config import layer_config
from optidel.demo.data import DemoData, embedded_data, user_data
from optidel.demo.summary import comparisons, summary_markdown, summary_rows, verdict
from optidel.log import logger
from optidel.runtime.atomic import atomic_write_text
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import mark_done


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        data: a segmentation dataset to run on (None = the embedded default: synthetic task + bundled-image pool).
        preset: the benchmark preset that holds the grid (``demo``; ``demo-quick`` for the smoke run).
        pool_images: bundled-image crops added to the embedded pool; with ``data``, the train images drawn (seeded)
            as the pool.
        synthetic_pairs: size of the generated segmentation dataset (3/4 train: also in the pool, without masks).
        seed: the grid's first seed (its seeds are shifted by this value).
        sets: ``key=value`` overrides of the preset's benchmark config (e.g. ``seeds=[0]``).
    """

    data: str | None = None
    preset: str = "demo"
    pool_images: int = 30
    synthetic_pairs: int = 100
    seed: int = 0
    sets: tuple[str, ...] = ()


QUICK = {"preset": "demo-quick", "pool_images": 16, "synthetic_pairs": 24}


def quick_config(**changes: Any) -> DemoConfig:
    """The smallest demo (seconds; grid patches, one seed): what the test suite runs."""
    return dataclasses.replace(DemoConfig(), **{**QUICK, **changes})


def _prepare_data(cfg: DemoConfig, out: Path) -> DemoData:
    if cfg.data is not None:
        return user_data(Path(cfg.data), out / "data", cfg.pool_images, cfg.seed)
    return embedded_data(out / "data", cfg.pool_images, cfg.synthetic_pairs, cfg.seed)


def benchmark_config(cfg: DemoConfig, data: DemoData) -> BenchmarkConfig:
    """The preset's grid on the demo's data: data options over the preset, ``cfg.sets`` over both, seeds shifted."""
    options = {"data_root": str(data.data_root), "datasets": [data.dataset], "pool_datasets": list(data.pool)}
    bench = layer_config(
        BenchmarkConfig, config_file=preset_path(cfg.preset), options=options, sets=list(cfg.sets)
    )
    return dataclasses.replace(bench, seeds=tuple(s + cfg.seed for s in bench.seeds))


def _report(runner: BenchmarkRunner) -> str:
    """The first OptiDEL selection's report (else any selection's), relative to the demo folder."""
    arms = [a for a in runner.all_arms() if a.selects]
    arms.sort(key=lambda a: a.method != "optidel")
    for a in arms:
        p = runner.layout.select_dir(a) / "report.html"
        if p.is_file():
            return str(p.relative_to(runner.out))
    return "-"


def run_demo(cfg: DemoConfig, out: str | Path) -> dict[str, Any]:
    """Run (or resume) the demo into ``out``; returns the summary (``rows``, ``verdict``, ``synthetic`` ...).

    Raises:
        RunFolderLocked: another process runs in ``out``.
        DemoDataError: ``cfg.data`` is not a segmentation dataset.
    """
    out = Path(out)
    t0 = time.perf_counter()
    with run_lock(out, command="optidel demo"):
        data = _prepare_data(cfg, out)
        bench = benchmark_config(cfg, data)
        runner = BenchmarkRunner(bench, out, command="optidel demo")
        runner.run_unlocked()
        rows = summary_rows(runner.rows())
        comps = comparisons(rows, bench.n_boot)
        summary = {
            "rows": rows,
            "comparisons": [{k: (str(v) if k == "interval" else v) for k, v in c.items()} for c in comps],
            "verdict": verdict(comps, len(bench.seeds), data.synthetic),
            "synthetic": data.synthetic,
            "dataset": str(data.data_root / data.dataset),
            "pool": list(runner.pool_sources),
            "grid": runner.grid_text(),
            "report": _report(runner),
            "total_s": round(time.perf_counter() - t0, 1),
        }
        atomic_write_text(out / "summary.md", summary_markdown(summary))
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        mark_done(out, {"total_s": summary["total_s"]})
    logger.info("demo done in %.0f s -> %s", summary["total_s"], out)
    return summary
