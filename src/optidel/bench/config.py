"""``BenchmarkConfig``: the grid that ``optidel benchmark`` runs (every key documented).

The grid is methods x ratios x SSL methods x downstream datasets x label fractions x seeds. Every pre-training gets
the same number of optimisation steps (compute-matched). The pre-training pool is the union of the **train** splits of
``pool_datasets`` (default: the downstream datasets); no test image ever enters it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark grid.

    Attributes:
        name: a label for the tables.
        data_root: folder holding the datasets (relative paths are resolved against the config file's folder first,
            then the current directory).
        datasets: downstream segmentation datasets (folder names under ``data_root``).
        pool_datasets: datasets whose train splits form the pre-training pool; empty = ``datasets``.
        methods: selection methods (``optidel select --method``); ``full`` pre-trains on the whole pool.
        ratios: retained ratios for every method but ``full`` (which is ratio 1).
        ssl: pre-training methods (``mae``, ``simclr``).
        seeds: each seed seeds selection, pre-training and fine-tuning of one replicate.
        label_fractions: fractions of the labelled train split used for fine-tuning.
        random_init: also fine-tune a randomly initialised encoder (the floor every pre-training must beat).
        select: ``key=value`` overrides of :class:`optidel.select.config.SelectConfig` for every selection.
        pretrain: ``key=value`` overrides of :class:`optidel.ssl.config.PretrainConfig` for every pre-training.
        finetune: ``key=value`` overrides of :class:`optidel.downstream.config.FinetuneConfig` for every fine-tune.
        share_patch_cache: all selections share one patch + embedding cache (SAM runs once per pool).
        n_boot: bootstrap replicates for the confidence intervals.
    """

    name: str = "benchmark"
    data_root: str = "../shared/data"
    datasets: tuple[str, ...] = ("kvasir-seg", "busi", "drive")
    pool_datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("full", "random", "meddel", "optidel")
    ratios: tuple[float, ...] = (0.05,)
    ssl: tuple[str, ...] = ("mae",)
    seeds: tuple[int, ...] = (0, 1, 2)
    label_fractions: tuple[float, ...] = (1.0,)
    random_init: bool = True
    select: tuple[str, ...] = ()
    pretrain: tuple[str, ...] = ()
    finetune: tuple[str, ...] = ()
    share_patch_cache: bool = True
    n_boot: int = 2000

    def validate(self) -> None:
        if not self.datasets:
            raise ValueError("datasets: give at least one downstream dataset")
        if not self.methods:
            raise ValueError("methods: give at least one selection method")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        for r in self.ratios:
            if not 0 < r <= 1:
                raise ValueError(f"ratios: {r} is not in (0, 1]")
        for f in self.label_fractions:
            if not 0 < f <= 1:
                raise ValueError(f"label_fractions: {f} is not in (0, 1]")
        for s in self.ssl:
            if s not in ("mae", "simclr"):
                raise ValueError(f"ssl: {s!r} is not mae or simclr")


def resolve_data_root(cfg: BenchmarkConfig, config_file: Path | None) -> Path:
    """``data_root`` as an absolute folder: relative to the config file's folder if it exists there, else the cwd."""
    root = Path(cfg.data_root).expanduser()
    if root.is_absolute():
        return root
    if config_file is not None and (config_file.parent / root).is_dir():
        return (config_file.parent / root).resolve()
    return root.resolve()
