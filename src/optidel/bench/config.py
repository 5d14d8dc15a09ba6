"""``BenchmarkConfig``: the grid that ``optidel benchmark`` runs (every key documented).

The grid is methods x ratios x SSL methods x downstream datasets x label fractions x seeds. Every pre-training gets
the same number of optimisation steps (compute-matched). The pre-training pool is the union of the **train** splits of
``pool_datasets`` (default: the downstream datasets); no test image ever enters it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optidel.config import ConfigDeprecationWarning, ConfigError, from_dict, migrate, parse_overrides
from optidel.downstream.config import FinetuneConfig
from optidel.select.config import SelectConfig
from optidel.ssl.config import PretrainConfig

# The stage settings a benchmark holds, and the config class each is checked against when the file is loaded.
STAGE_CONFIGS: dict[str, type] = {
    "select": SelectConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
}


# The variant key that scores patches with a model the grid pre-trains (see BenchmarkConfig.variants).
SCORE_WITH = "score_with"

# The keys a block of the grid may set (see BenchmarkConfig.blocks).
BLOCK_KEYS = ("methods", "ratios", "ssl", "seeds", "variant")

# The questions of the benchmark issues, as paired comparisons "A vs B" (a pair whose arms did not run is not shown),
# each with a verdict on the informative average: does OptiDEL (or its coverage-aware variant) reach the full pool,
# beat random selection and MedDEL at the same ratio, does coverage help, and is a gain the hardness (vs mosaics of
# random patches) or the mosaics (vs hard patches without mosaics); every variant arm is also compared with its
# method without the variant.
DEFAULT_COMPARISONS = (
    "optidel vs full",
    "optidel vs random",
    "optidel vs meddel",
    "optidel-cover vs full",
    "optidel-cover vs random",
    "optidel-cover vs meddel",
    "optidel-cover vs optidel",
    "optidel vs mosaic-random",
    "optidel vs hard-only",
)


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
        select: settings of :class:`optidel.select.config.SelectConfig` for every selection, as a (nested)
            mapping, e.g. ``{patches: sam, score: margin}``.
        pretrain: settings of :class:`optidel.ssl.config.PretrainConfig` for every pre-training
            (``{steps: 500, mae: {mask_ratio: 0.75}}``).
        finetune: settings of :class:`optidel.downstream.config.FinetuneConfig` for every fine-tuning.
        share_patch_cache: all selections share one patch + embedding cache (SAM runs once per pool).
        n_boot: bootstrap replicates for the confidence intervals.
        variants: named variations of the stage settings, ``{name: {select: {...}, pretrain: {...}}}`` (e.g. a tile
            filling), checked like ``select``/``pretrain`` at load. An arm of a variant is labelled
            ``<method>+<name>`` and gets its own selection and pre-training folders. A variant may also say
            ``score_with: METHOD``: its selections score patches by the reconstruction error of the MAE that the grid
            pre-trains for METHOD with the same seed (ratio 1 for ``full``, else the arm's ratio), which then runs
            first (the paper's v1/v2 hardness scored by a model of the same benchmark).
        blocks: further parts of the grid, each a mapping of any of ``methods``, ``ratios``, ``ssl``, ``seeds`` and
            ``variant`` (a name from ``variants``); a key a block leaves out takes the top-level value. The grid is
            the top-level one plus every block (an arm named twice runs once). Use it for grids that are not a full
            product: more seeds for some methods, a second SSL method or ratio for a few.
        comparisons: paired comparisons ``"A vs B"`` of two methods (labels as the tables name them, e.g.
            ``optidel+context``) that the tables show per dataset and on the informative average, beside the
            columns every table has (vs random init, random and full); tables only, no run depends on them. Every
            variant arm is also compared with its method without the variant.
        goal: the margin over random and MedDEL that the tables' verdicts check on the informative average (with
            the interval above 0; issue #19's goal, the scale of the paper's claim); null: direction only.
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
    select: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    share_patch_cache: bool = True
    n_boot: int = 2000
    variants: dict[str, Any] = field(default_factory=dict)
    blocks: tuple[dict[str, Any], ...] = ()
    comparisons: tuple[str, ...] = DEFAULT_COMPARISONS
    goal: float | None = 0.02

    def __post_init__(self) -> None:
        """Check every stage's settings against its config class now (a typo fails at load, naming the key)."""
        legacy = self.migrate_legacy({s: getattr(self, s) for s in STAGE_CONFIGS}, "BenchmarkConfig")
        for stage, cls in STAGE_CONFIGS.items():
            if not isinstance(legacy[stage], dict):
                raise ConfigError(
                    f"{stage}: expected a mapping of {cls.__name__} keys, got {legacy[stage]!r}"
                )
            settings = migrate(cls, legacy[stage], source=stage)
            from_dict(cls, settings, prefix=f"{stage}.")
            object.__setattr__(self, stage, settings)
        self._check_variants_and_blocks()
        for i, c in enumerate(self.comparisons):
            if len(comparison_methods(c)) != 2:
                raise ConfigError(f"comparisons[{i}]: expected 'METHOD vs METHOD', got {c!r}")
        if self.goal is not None and not (isinstance(self.goal, int | float) and 0 <= self.goal < 1):
            raise ConfigError(f"goal: expected an mIoU margin in [0, 1) or null, got {self.goal!r}")

    def comparison_pairs(self) -> list[tuple[str, str]]:
        """``comparisons`` as (A, B) label pairs, then every variant arm's label against its method's, then each
        comparison within a variant that both of its methods ran with (``optidel-cover+context`` vs
        ``optidel+context``)."""
        pairs = [comparison_methods(c) for c in self.comparisons]
        base = list(pairs)
        for part in self.grid_parts():
            if v := part["variant"]:
                pairs += [(f"{m}+{v}", m) for m in part["methods"]]
                pairs += [(f"{a}+{v}", f"{b}+{v}") for a, b in base if {a, b} <= set(part["methods"])]
        return list(dict.fromkeys(pairs))

    def _check_variants_and_blocks(self) -> None:
        """Variants' stage settings against their config classes, blocks' keys and variant names (at load)."""
        variants: dict[str, Any] = {}
        for name, spec in self.variants.items():
            if not isinstance(spec, dict) or set(spec) - {"select", "pretrain", SCORE_WITH}:
                raise ConfigError(
                    f"variants.{name}: expected a mapping with select and/or pretrain settings (and {SCORE_WITH})"
                )
            if not str(name).replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"variants.{name}: a variant name is letters, digits, '-' and '_' only")
            checked: dict[str, Any] = {}
            if SCORE_WITH in spec:
                if not isinstance(spec[SCORE_WITH], str) or not spec[SCORE_WITH]:
                    raise ConfigError(
                        f"variants.{name}.{SCORE_WITH}: expected a method name, got {spec[SCORE_WITH]!r}"
                    )
                checked[SCORE_WITH] = spec[SCORE_WITH]
            for stage, settings in spec.items():
                if stage == SCORE_WITH:
                    continue
                settings = migrate(STAGE_CONFIGS[stage], settings, source=f"variants.{name}.{stage}")
                from_dict(STAGE_CONFIGS[stage], settings, prefix=f"variants.{name}.{stage}.")
                checked[stage] = settings
            variants[str(name)] = checked
        object.__setattr__(self, "variants", variants)
        blocks = []
        for i, block in enumerate(self.blocks):
            if not isinstance(block, dict):
                raise ConfigError(f"blocks[{i}]: expected a mapping, got {block!r}")
            unknown = sorted(set(block) - set(BLOCK_KEYS))
            if unknown:
                raise ConfigError(
                    f"blocks[{i}]: unknown key {unknown[0]!r} (allowed: {', '.join(BLOCK_KEYS)})"
                )
            if block.get("variant") and block["variant"] not in variants:
                raise ConfigError(f"blocks[{i}].variant: {block['variant']!r} is not one of variants")
            blocks.append({k: tuple(v) if isinstance(v, list) else v for k, v in block.items()})
        object.__setattr__(self, "blocks", tuple(blocks))

    def grid_parts(self) -> list[dict[str, Any]]:
        """The top-level grid and every block, each with all of ``BLOCK_KEYS`` filled in."""
        top = {
            "methods": self.methods,
            "ratios": self.ratios,
            "ssl": self.ssl,
            "seeds": self.seeds,
            "variant": "",
        }
        return [top] + [{**top, **b} for b in self.blocks]

    @classmethod
    def migrate_legacy(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        """The old form of a stage, a list of ``"key=value"`` strings, as a mapping (with a deprecation warning)."""
        for stage in STAGE_CONFIGS:
            value = data.get(stage)
            if isinstance(value, list | tuple) and not value:
                data = {**data, stage: {}}
            elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                warnings.warn(
                    f"{source}: {stage}: a list of 'key=value' strings is deprecated (it works for one more "
                    f"release); write a mapping instead, e.g. {stage}: {{key: value}}",
                    ConfigDeprecationWarning,
                    stacklevel=4,
                )
                data = {**data, stage: parse_overrides(value)}
        return data

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the key for a grid that cannot run."""
        if not self.datasets:
            raise ConfigError("datasets: give at least one downstream dataset")
        if not self.methods:
            raise ConfigError("methods: give at least one selection method")
        if not self.seeds:
            raise ConfigError("seeds: give at least one seed")
        for r in self.ratios:
            if not 0 < r <= 1:
                raise ConfigError(f"ratios: {r} is not in (0, 1]")
        for f in self.label_fractions:
            if not 0 < f <= 1:
                raise ConfigError(f"label_fractions: {f} is not in (0, 1]")
        for i, part in enumerate(self.grid_parts()):
            where = "" if i == 0 else f"blocks[{i - 1}]."
            if not part["methods"] or not part["seeds"]:
                raise ConfigError(f"{where}methods/seeds: give at least one")
            for r in part["ratios"]:
                if not 0 < r <= 1:
                    raise ConfigError(f"{where}ratios: {r} is not in (0, 1]")
            for s in part["ssl"]:
                if s not in ("mae", "simclr"):
                    raise ConfigError(f"{where}ssl: {s!r} is not mae or simclr")
            self._check_scorer(part, where)

    def _check_scorer(self, part: dict[str, Any], where: str) -> None:
        """A ``score_with`` variant needs its scoring MAE arm in the grid for every seed and ratio it runs."""
        method = self.variants.get(part["variant"], {}).get(SCORE_WITH) if part["variant"] else None
        if method is None:
            return
        plain = [
            p for p in self.grid_parts() if not p["variant"] and method in p["methods"] and "mae" in p["ssl"]
        ]
        for seed in part["seeds"]:
            for ratio in part["ratios"]:
                want = 1.0 if method == "full" else ratio
                if not any(seed in p["seeds"] and (method == "full" or want in p["ratios"]) for p in plain):
                    raise ConfigError(
                        f"{where}variant {part['variant']!r}: {SCORE_WITH}: {method} needs the arm "
                        f"{method} (mae, ratio {want:g}, seed {seed}) in the grid; add it to methods or a block"
                    )


def comparison_methods(text: str) -> tuple[str, ...]:
    """``"A vs B"`` -> ``("A", "B")`` (anything else -> a tuple of another length)."""
    parts = tuple(p.strip() for p in str(text).split(" vs "))
    return parts if all(parts) else ()


def resolve_data_root(cfg: BenchmarkConfig, config_file: Path | None) -> Path:
    """``data_root`` as an absolute folder: relative to the config file's folder if it exists there, else the cwd."""
    root = Path(cfg.data_root).expanduser()
    if root.is_absolute():
        return root
    if config_file is not None and (config_file.parent / root).is_dir():
        return (config_file.parent / root).resolve()
    return root.resolve()
