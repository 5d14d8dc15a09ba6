"""The configuration of ``optidel select``: frozen dataclasses nested by concern, their defaults, their validation.

Every field is a YAML key of ``--config FILE`` and a ``--set key=value`` override (dotted: ``--set
runtime.shard_size=32``); most are CLI options too. The sections: ``proposal`` (patches and embeddings),
``cluster`` (k-means), ``scoring`` (ranking and the selection filters), ``synthesis`` (output images), ``runtime``
(devices, processes, caches) and ``report``. Flat keys of the earlier one-level config (``shard_size``, ``k`` ...)
keep working for one release: :attr:`SelectConfig.RENAMED` maps each to its new dotted key, and the config layering
(``optidel.config``) applies it with a deprecation warning naming the new key.

Defaults that the papers leave open (see docs/PAPER.md) and why they were chosen:

- ``cluster.k`` (k-means clusters): ``clip(round(sqrt(n_patches / 2)), 2, 1000)`` (:func:`default_k`), the usual
  rule of thumb for k-means; it grows with the pool, ~125 for Kvasir-SEG train (~31k patches) and the 1000 cap is
  reached at 2M patches. Margin scores need k >= 2.
- ``cluster.distance``: ``cosine`` — embeddings are L2-normalised and clustered with spherical k-means; a distance
  is ``1 - cos(x, c)`` in [0, 2]. ``l2`` clusters the raw embeddings and uses the Euclidean distance.
- ``scoring.score``: ``margin`` = d2 - d1 (boundary margin, small = hard), the reading of the paper's v4
  "margin-driven" selection; ``prototype`` = d1 (Sorscher et al. 2022, far = hard); ``reconstruction`` = MAE
  reconstruction error (the paper's v1/v2, high = hard, needs ``scoring.mae_run``).
- ``synthesis.mosaic_size`` 256 px, tiles of 128 px; ``synthesis.tile_fit = context``: the patch's box grows to the
  square around it in its source image, which is resized to the tile (no black bars, no distortion; a frame shorter
  than the box's long side gives the largest square that fits, cutting the box's ends), chosen by the pre-registered
  comparison of the ``cpu-endoscopy`` benchmark (BENCHMARKS.md); ``pad`` letterboxes the box's own crop on black,
  ``stretch`` resizes it to the tile.
- ``synthesis.mosaic = False`` (the hard-only ablation) keeps the image budget: ``ratio x pool`` images, each one of
  the ``N / 4`` hardest patches resized (with ``tile_fit``) to ``mosaic_size``.
- ``proposal.proposer_batch`` 1 and ``runtime.procs`` auto: measured in BENCHMARKS.md (patch stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from optidel.config import ConfigError
from optidel.data.sources.config import SourceOptions

PatchKind = Literal["sam", "sam-checkpoint", "grid"]
ScoreName = Literal["margin", "prototype", "reconstruction"]
SCORE_NAMES: tuple[str, ...] = ("margin", "prototype", "reconstruction")
TILES_PER_MOSAIC = 4  # M in the paper: every 4 hard patches make one 2x2 image


@dataclass(frozen=True)
class ProposalConfig:
    """Patch proposal and embedding (everything here but ``image_embedding`` keys the patch-stage cache)."""

    patches: PatchKind = "sam"  # patch proposer: LiteMedSAM box grid (sam), a SAM checkpoint, or a plain grid
    sam_checkpoint: str | None = None  # SAM weights for patches=sam-checkpoint
    # check sam_checkpoint is this SAM (vit_b, vit_l, vit_h); None: read the file
    sam_model_type: str | None = None
    proposer_options: dict[str, Any] = field(default_factory=dict)  # extra keyword options for make_proposer
    # None = the proposer's own features (grid: LiteMedSAM features pooled in each box); litemedsam; a path to an
    # optidel encoder.safetensors (or its run folder); or timm:ARCH (random weights: an ablation)
    embedder: str | None = None
    # images per proposer call when it can batch (one LiteMedSAM encoder batch): more use more memory; raise on a GPU
    proposer_batch: int = 1
    # image-level embedding (image-level strategies): mean of its patch embeddings, or one whole-image pass
    image_embedding: Literal["mean", "whole"] = "mean"


@dataclass(frozen=True)
class ClusterConfig:
    """k-means over the patch embeddings (and over image embeddings for the image-level baselines)."""

    k: int | None = None  # k-means clusters; None = clip(round(sqrt(n_patches / 2)), 2, 1000)
    distance: Literal["cosine", "l2"] = "cosine"  # cosine: spherical k-means on L2-normalised embeddings
    kmeans_iters: int = 20  # Lloyd iterations of faiss k-means
    kmeans_init_sample: int = 20000  # rows sampled for k-means++ initial centroids (sklearn)
    kmeans_points_per_centroid: int = 256  # k-means trains on at most this many sampled rows per centroid
    # image-level baselines: clusters over image embeddings; None = default_k on images
    image_k: int | None = None


@dataclass(frozen=True)
class ScoringConfig:
    """Which hardness score ranks the patches, and the filters of the selection."""

    score: ScoreName = "margin"  # which hardness score ranks the patches
    mae_run: str | None = None  # an optidel MAE run directory for the reconstruction score
    # drop a chosen patch whose cosine similarity to an earlier (harder) chosen one exceeds this
    dedup_threshold: float | None = None
    max_per_image: int | None = None  # at most this many chosen patches per source image
    meddel_eps: float = 0.9  # MedDEL: images farther than this cosine distance from their centre are outliers
    # MedDEL: of a duplicate pair keep the one nearer the centre
    meddel_keep: Literal["nearer", "farther"] = "nearer"
    # optidel-cover (select/strategies/optidel_cover.py): the share of N spread over the k-means clusters (0 = plain
    # optidel), a cluster's share ~ size ** cover_exponent (1 = proportional, 0 = equal), at least cover_min each
    cover_fraction: float = 1.0
    cover_exponent: float = 0.5
    cover_min: int = 1


@dataclass(frozen=True)
class SynthesisConfig:
    """How the selected patches (or images) become the output images."""

    mosaic: bool = True  # False: the hard-only ablation (no 2x2 mosaics)
    mosaic_size: int = 256  # output image side in pixels (tiles are mosaic_size / 2)
    # how a patch fills its tile: context (the square of source image around the patch, never bars), pad (letterbox
    # on black) or stretch; the default is the pre-registered comparison's outcome (BENCHMARKS.md, cpu-endoscopy)
    tile_fit: Literal["pad", "stretch", "context"] = "context"
    grouping: Literal["random", "diverse"] = "random"  # which 4 patches share a mosaic
    # image-level methods: copy the pool files as they are, or resize them (tile_fit) to mosaic_size PNGs
    image_copy: Literal["copy", "resize"] = "copy"


@dataclass(frozen=True)
class RuntimeConfig:
    """Devices, processes, checkpointing and caches (``shard_size`` keys the patch-stage cache)."""

    device: str = "cpu"  # torch device for proposer and embedder (cpu, cuda, cuda:1 ...)
    shard_size: int = 64  # images per checkpoint shard of the patch + embedding stage
    workers: int = 1  # background threads that decode images (in each patch-stage process)
    # patch-stage worker processes, each with its own models and cores // procs torch threads (unless threads is
    # set); None = auto: one per core (at most 4, one per 64 images, one per 4 GiB RAM) on a CPU, 1 on a GPU or
    # under torchrun
    procs: int | None = None
    # torch intra-op threads of proposer/embedder, per process; None = cores / procs
    threads: int | None = None
    strict: bool = False  # an unreadable pool image (or too few patches) is an error instead of a warning
    # stage cache folder; None = OUT/cache (the benchmark shares one across selections)
    cache_dir: str | None = None


@dataclass(frozen=True)
class ReportConfig:
    """``report.html`` and its diagnostics."""

    enabled: bool = True  # write report.html and report/
    # with the report: V-information of the selected patches vs random subsets (vinfo.json)
    vinfo: bool = True


@dataclass(frozen=True)
class SelectConfig:
    """What ``optidel select`` does: the run's identity at the top, each concern in its own section.

    Examples:
        >>> from optidel.config import resolve_config
        >>> cfg = resolve_config(SelectConfig, overrides=["pool=[data/kvasir-seg:train]", "ratio=0.1"])
        >>> cfg.ratio, cfg.scoring.score
        (0.1, 'margin')
    """

    pool: tuple[str, ...] = ()  # pool sources: folders, segmentation datasets (PATH:SPLIT) or select outputs
    out: str = ""  # output folder (images/, manifest.parquet, report.html, cache/ ...)
    # selection strategy: optidel, random, full, hard-only, mosaic-random, optidel-grid, easy ...
    method: str = "optidel"
    ratio: float = 0.05  # the compact set holds round(ratio x pool images) images
    seed: int = 0  # seeds k-means, groupings, random strategies
    proposal: ProposalConfig = field(default_factory=ProposalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    # leakage guard (optidel.data.leakage): drop pool images that duplicate a test image of the pool's own
    # segmentation datasets (PATH:train -> PATH:test) and of leakage_against (DATASET:test ...), after the patch stage
    leakage_guard: bool = True
    leakage_against: tuple[str, ...] = ()
    # how DICOM, NIfTI, multi-page TIFF and whole-slide files become 2D pool items (docs/formats.md)
    sources: SourceOptions = field(default_factory=SourceOptions)

    # the flat keys of the former one-level config -> their dotted keys (deprecated, kept for one release)
    RENAMED: ClassVar[dict[str, str]] = {
        "patches": "proposal.patches",
        "sam_checkpoint": "proposal.sam_checkpoint",
        "sam_model_type": "proposal.sam_model_type",
        "proposer_options": "proposal.proposer_options",
        "embedder": "proposal.embedder",
        "proposer_batch": "proposal.proposer_batch",
        "image_embedding": "proposal.image_embedding",
        "k": "cluster.k",
        "distance": "cluster.distance",
        "kmeans_iters": "cluster.kmeans_iters",
        "kmeans_init_sample": "cluster.kmeans_init_sample",
        "kmeans_points_per_centroid": "cluster.kmeans_points_per_centroid",
        "image_k": "cluster.image_k",
        "score": "scoring.score",
        "mae_run": "scoring.mae_run",
        "dedup_threshold": "scoring.dedup_threshold",
        "max_per_image": "scoring.max_per_image",
        "meddel_eps": "scoring.meddel_eps",
        "meddel_keep": "scoring.meddel_keep",
        "mosaic": "synthesis.mosaic",
        "mosaic_size": "synthesis.mosaic_size",
        "tile_fit": "synthesis.tile_fit",
        "grouping": "synthesis.grouping",
        "image_copy": "synthesis.image_copy",
        "device": "runtime.device",
        "shard_size": "runtime.shard_size",
        "workers": "runtime.workers",
        "procs": "runtime.procs",
        "threads": "runtime.threads",
        "strict": "runtime.strict",
        "cache_dir": "runtime.cache_dir",
        "report": "report.enabled",  # only when its value is not a mapping (the section has the same name)
        "vinfo": "report.vinfo",
    }


def default_k(n_patches: int) -> int:
    """The default number of k-means clusters for ``n_patches`` patches: ``clip(round(sqrt(n / 2)), 2, 1000)``."""
    return int(min(1000, max(2, round(math.sqrt(n_patches / 2)))))


def n_target_images(n_pool_images: int, ratio: float) -> int:
    """Images in the compact set: ``round(ratio x n_pool_images)``, at least 1."""
    return max(1, int(round(ratio * n_pool_images)))


def validate_config(cfg: SelectConfig) -> None:
    """Raise :class:`ConfigError` naming the key for values that cannot work."""
    p, c, s, y, r = cfg.proposal, cfg.cluster, cfg.scoring, cfg.synthesis, cfg.runtime
    if not cfg.pool:
        raise ConfigError("pool: give at least one pool source (--pool PATH[:SPLIT])")
    if not cfg.out:
        raise ConfigError("out: give an output folder (--out DIR)")
    if not 0 < cfg.ratio <= 1:
        raise ConfigError(f"ratio: {cfg.ratio} is not in (0, 1]")
    if p.patches == "sam-checkpoint" and not p.sam_checkpoint:
        raise ConfigError("proposal.sam_checkpoint: patches=sam-checkpoint needs --sam-checkpoint PATH")
    if s.score == "reconstruction" and not s.mae_run:
        raise ConfigError("scoring.score=reconstruction needs an MAE run (--mae-run RUN_DIR)")
    if c.k is not None and c.k < 2:
        raise ConfigError(f"cluster.k: {c.k} < 2 (margin scores need two centroids)")
    if s.dedup_threshold is not None and not -1 <= s.dedup_threshold <= 1:
        raise ConfigError(
            f"scoring.dedup_threshold: {s.dedup_threshold} is not a cosine similarity in [-1, 1]"
        )
    if s.max_per_image is not None and s.max_per_image < 1:
        raise ConfigError(f"scoring.max_per_image: {s.max_per_image} < 1")
    if r.threads is not None and r.threads < 1:
        raise ConfigError(f"runtime.threads: {r.threads} < 1")
    if r.procs is not None and r.procs < 1:
        raise ConfigError(f"runtime.procs: {r.procs} < 1")
    if y.mosaic_size < 16 or y.mosaic_size % 2:
        raise ConfigError(f"synthesis.mosaic_size: {y.mosaic_size} must be an even number >= 16")
    for key in (
        "runtime.shard_size",
        "proposal.proposer_batch",
        "runtime.workers",
        "cluster.kmeans_iters",
        "cluster.kmeans_init_sample",
        "cluster.kmeans_points_per_centroid",
    ):
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < 1:
            raise ConfigError(f"{key}: {value} < 1")
