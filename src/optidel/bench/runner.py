"""The benchmark grid runner: select -> pre-train -> fine-tune for every cell, reusing every finished stage.

Layout of the output folder::

    OUT/config.yaml                               the resolved benchmark config
    OUT/select/<method>_r<ratio>_s<seed>/         optidel select outputs (not for ``full``)
    OUT/patch-cache/                              patch + embedding cache shared by every selection
    OUT/pretrain/<method>_r<ratio>_<ssl>_s<seed>/ optidel pretrain runs
    OUT/finetune/<arm>/<dataset>_lf<fraction>/    optidel finetune runs (arm = a pretrain run or random-init_<arch>_s<seed>)
    OUT/results.csv, results.md, plots/           written by :mod:`optidel.bench.tables` after every run

Every stage writes ``DONE`` last; a finished stage is never redone, a killed pre-training resumes from its checkpoint,
a killed selection from its last patch shard. Kill the benchmark at any time and run the same command again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optidel.bench.config import BenchmarkConfig, resolve_data_root
from optidel.config import resolve_config, save_config
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.runtime.run_dir import is_done


@dataclass(frozen=True)
class Arm:
    """One pre-trained encoder of the grid (or the random-init reference when ``method`` is ``random-init``)."""

    method: str
    ratio: float
    ssl: str
    seed: int
    arch: str = ""

    @property
    def key(self) -> str:
        if self.method == "random-init":
            return f"random-init_{self.arch}_s{self.seed}"
        return f"{self.method}_r{self.ratio:g}_{self.ssl}_s{self.seed}"


@dataclass(frozen=True)
class FinetuneCell:
    arm: Arm
    dataset: str
    label_fraction: float

    @property
    def key(self) -> str:
        return f"{self.dataset}_lf{self.label_fraction:g}"


def grid_arms(cfg: BenchmarkConfig) -> list[Arm]:
    """Pre-training arms in run order: seed-major, so a partial benchmark already has complete replicates."""
    arms = []
    for seed in cfg.seeds:
        for ssl in cfg.ssl:
            for method in cfg.methods:
                ratios = (1.0,) if method == "full" else cfg.ratios
                for ratio in ratios:
                    arms.append(Arm(method, float(ratio), ssl, seed))
    return arms


class BenchmarkRunner:
    """Runs (or resumes) a :class:`BenchmarkConfig` into ``out``."""

    def __init__(self, cfg: BenchmarkConfig, out: str | Path, config_file: Path | None = None):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(out)
        self.data_root = resolve_data_root(cfg, config_file)
        for d in set(cfg.datasets) | set(cfg.pool_datasets):
            if not (self.data_root / d / "images").is_dir():
                raise FileNotFoundError(
                    f"dataset {d!r} not found under {self.data_root} (set data_root, or fetch it with "
                    f"`optidel data fetch {d} --root {self.data_root}`)"
                )

    # -- configs of each stage ---------------------------------------------------------------------------------
    @property
    def pool_sources(self) -> tuple[str, ...]:
        names = self.cfg.pool_datasets or self.cfg.datasets
        return tuple(f"{self.data_root / d}:train" for d in names)

    def select_dir(self, arm: Arm) -> Path:
        return self.out / "select" / f"{arm.method}_r{arm.ratio:g}_s{arm.seed}"

    def pretrain_dir(self, arm: Arm) -> Path:
        return self.out / "pretrain" / arm.key

    def finetune_dir(self, cell: FinetuneCell) -> Path:
        return self.out / "finetune" / cell.arm.key / cell.key

    def select_config(self, arm: Arm):
        from optidel.select.config import SelectConfig

        base: dict[str, Any] = {
            "pool": list(self.pool_sources),
            "out": str(self.select_dir(arm)),
            "method": arm.method,
            "ratio": arm.ratio,
            "seed": arm.seed,
        }
        if self.cfg.share_patch_cache:
            # one cache for every seed: the patch stage's key holds no seed (its embedders are seed-free), so SAM
            # runs once per pool; k-means and everything after it are keyed by the seed
            base["cache_dir"] = str(self.out / "patch-cache")
        return resolve_config(SelectConfig, overrides=self.cfg.select, base=base)

    def pretrain_config(self, arm: Arm):
        from optidel.ssl.config import PretrainConfig

        data = list(self.pool_sources) if arm.method == "full" else [str(self.select_dir(arm))]
        base = {"data": data, "ssl": arm.ssl, "seed": arm.seed}
        return resolve_config(PretrainConfig, overrides=self.cfg.pretrain, base=base).resolved()

    def finetune_config(self, cell: FinetuneCell):
        from optidel.downstream.config import FinetuneConfig

        arm = cell.arm
        base: dict[str, Any] = {
            "dataset": str(self.data_root / cell.dataset),
            "out": str(self.finetune_dir(cell)),
            "label_fraction": cell.label_fraction,
            "seed": arm.seed,
        }
        if arm.method == "random-init":
            pre = self.pretrain_config(Arm("full", 1.0, arm.ssl, arm.seed))
            base.update(encoder="none", arch=pre.arch, patch_size=pre.patch_size)
        else:
            base["encoder"] = str(self.pretrain_dir(arm) / "encoder.safetensors")
        return resolve_config(FinetuneConfig, overrides=self.cfg.finetune, base=base)

    # -- the grid ------------------------------------------------------------------------------------------------
    def finetune_cells(self) -> Iterator[FinetuneCell]:
        for arm in self.all_arms():
            for dataset in self.cfg.datasets:
                for lf in self.cfg.label_fractions:
                    yield FinetuneCell(arm, dataset, float(lf))

    def all_arms(self) -> list[Arm]:
        """Every arm in run order: per seed, the random-init reference (cheap: fine-tunings only), then the grid's
        arms; so a partial benchmark already holds whole replicates with their reference rows."""
        grid = grid_arms(self.cfg)
        arms: list[Arm] = []
        seen = set()
        for seed in self.cfg.seeds:
            if self.cfg.random_init:
                for ssl in self.cfg.ssl:
                    arch = self.pretrain_config(Arm("full", 1.0, ssl, seed)).arch
                    if (arch, seed) not in seen:
                        seen.add((arch, seed))
                        arms.append(Arm("random-init", 1.0, ssl, seed, arch))
            arms.extend(a for a in grid if a.seed == seed)
        return arms

    def plan(self) -> dict[str, int]:
        """How many runs of each stage the grid holds, and how many are already done."""
        arms = [a for a in self.all_arms() if a.method != "random-init"]
        sel = [a for a in arms if a.method != "full"]
        cells = list(self.finetune_cells())
        return {
            "selections": len(sel),
            "selections done": sum(is_done(self.select_dir(a)) for a in sel),
            "pretrainings": len(arms),
            "pretrainings done": sum(is_done(self.pretrain_dir(a)) for a in arms),
            "finetunings": len(cells),
            "finetunings done": sum(is_done(self.finetune_dir(c)) for c in cells),
        }

    # -- running -------------------------------------------------------------------------------------------------
    def run_arm(self, arm: Arm) -> None:
        """Select (unless full) and pre-train one arm; both skipped when already done."""
        from optidel.ssl.train import pretrain

        if arm.method == "random-init":
            return
        if arm.method != "full" and not is_done(self.select_dir(arm)):
            from optidel.select.pipeline import run_selection

            logger.info("benchmark: selecting %s", self.select_dir(arm).name)
            run_selection(self.select_config(arm))
        pdir = self.pretrain_dir(arm)
        if not is_done(pdir):
            logger.info("benchmark: pre-training %s", arm.key)
            pretrain(self.pretrain_config(arm), pdir, resume=(pdir / "checkpoint.pt").is_file())

    def run_cell(self, cell: FinetuneCell) -> None:
        from optidel.downstream.finetune import finetune

        fdir = self.finetune_dir(cell)
        if is_done(fdir):
            return
        logger.info("benchmark: fine-tuning %s on %s", cell.arm.key, cell.key)
        finetune(self.finetune_config(cell))

    def run(self, stop_after: int | None = None) -> Path:
        """Run every unfinished stage; tables are rewritten after each fine-tuning. Returns ``results.csv``.

        Args:
            stop_after: stop after this many fine-tunings were run in this call (for tests and smoke runs).
        """
        from optidel.bench.tables import write_tables

        self.out.mkdir(parents=True, exist_ok=True)
        handler = attach_run_log(self.out)
        try:
            save_config(self.cfg, self.out)
            (self.out / "plan.json").write_text(json.dumps(self.plan(), indent=2) + "\n")
            n_run = 0
            for arm in self.all_arms():
                self.run_arm(arm)
                for dataset in self.cfg.datasets:
                    for lf in self.cfg.label_fractions:
                        cell = FinetuneCell(arm, dataset, float(lf))
                        if is_done(self.finetune_dir(cell)):
                            continue
                        self.run_cell(cell)
                        n_run += 1
                        write_tables(self)
                        if stop_after is not None and n_run >= stop_after:
                            return self.out / "results.csv"
            return write_tables(self)
        finally:
            detach_run_log(handler)


def with_overrides(cfg: BenchmarkConfig, **changes: Any) -> BenchmarkConfig:
    return dataclasses.replace(cfg, **changes)
