"""The benchmark grid's cells and where each one lives in the output folder.

Layout of a benchmark folder (``OUT``)::

    OUT/config.yaml                               the resolved benchmark config
    OUT/select/<method>_r<ratio>_s<seed>/         optidel select outputs (not for ``full``)
    OUT/patch-cache/                              patch + embedding cache shared by every selection
    OUT/pretrain/<method>_r<ratio>_<ssl>_s<seed>/ optidel pretrain runs
    OUT/finetune/<arm>/<dataset>_lf<fraction>/    optidel finetune runs (arm = a pretrain run or random-init_<arch>_s<seed>)
    OUT/results.csv, results.md, plots/           the tables (:mod:`optidel.bench.tables`)

This module knows names and folders only (no stage code), so the runner, the result collector and the tables share it
without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from optidel.runtime.run_dir import is_done

RANDOM_INIT = "random-init"
FULL = "full"
NOISE = "noise"  # the content control: pre-training on noise images (optidel.select.strategies.noise_control)


@dataclass(frozen=True)
class Arm:
    """One pre-trained encoder of the grid (or the random-init reference when ``method`` is ``random-init``).

    Attributes:
        method: selection method (``full`` = the whole pool, ``random-init`` = no pre-training).
        ratio: retained ratio of the pool (1 for ``full`` and ``random-init``).
        ssl: pre-training method (``mae``, ``simclr``); for ``random-init`` the method whose architecture it copies.
        seed: seeds selection, pre-training and fine-tuning of this replicate.
        arch: the encoder architecture (set for ``random-init`` only; it names the run folder).
        variant: a named variation of the stage settings (``BenchmarkConfig.variants``); "" = none.
    """

    method: str
    ratio: float
    ssl: str
    seed: int
    arch: str = ""
    variant: str = ""

    @property
    def label(self) -> str:
        """The method as the tables name it: ``optidel``, or ``optidel+context`` for a variant."""
        return f"{self.method}+{self.variant}" if self.variant else self.method

    @property
    def key(self) -> str:
        if self.method == RANDOM_INIT:
            return f"{RANDOM_INIT}_{self.arch}_s{self.seed}"
        return f"{self.label}_r{self.ratio:g}_{self.ssl}_s{self.seed}"

    @property
    def pretrained(self) -> bool:
        return self.method != RANDOM_INIT

    @property
    def selects(self) -> bool:
        """Whether this arm needs an ``optidel select`` run (every method but ``full`` and ``random-init``)."""
        return self.method not in (FULL, RANDOM_INIT)


@dataclass(frozen=True)
class FinetuneCell:
    """One fine-tuning: an arm's encoder on one downstream dataset with one label fraction."""

    arm: Arm
    dataset: str
    label_fraction: float

    @property
    def key(self) -> str:
        return f"{self.dataset}_lf{self.label_fraction:g}"


def grid_arms(
    seeds: Iterable[int],
    ssl: Iterable[str],
    methods: Iterable[str],
    ratios: Iterable[float],
    variant: str = "",
) -> list[Arm]:
    """Pre-training arms in run order: seed-major, so a partial benchmark already has complete replicates.

    ``full`` runs once per seed and SSL method (ratio 1); every other method once per ratio.
    """
    arms = []
    for seed in seeds:
        for s in ssl:
            for method in methods:
                for ratio in (1.0,) if method == FULL else ratios:
                    arms.append(Arm(method, float(ratio), s, int(seed), variant=variant))
    return arms


@dataclass(frozen=True)
class RunLayout:
    """The folders of one benchmark output folder ``out`` (see the module docstring)."""

    out: Path

    def select_dir(self, arm: Arm) -> Path:
        return self.out / "select" / f"{arm.label}_r{arm.ratio:g}_s{arm.seed}"

    def pretrain_dir(self, arm: Arm) -> Path:
        return self.out / "pretrain" / arm.key

    def finetune_dir(self, cell: FinetuneCell) -> Path:
        return self.out / "finetune" / cell.arm.key / cell.key

    @property
    def patch_cache(self) -> Path:
        return self.out / "patch-cache"

    def cell_done(self, cell: FinetuneCell) -> bool:
        """A fine-tuning is finished when its ``DONE`` and ``metrics.json`` exist: nothing else is needed (a later
        session may hold only these small files, not the encoders they came from)."""
        d = self.finetune_dir(cell)
        return is_done(d) and (d / "metrics.json").is_file()
