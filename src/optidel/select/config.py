"""The configuration of ``optidel select``: one frozen dataclass, its defaults, and its validation.

Every field is a YAML key of ``--config FILE`` and a ``--set key=value`` override; most are CLI options too.
Precedence: dataclass defaults <- ``--config`` file <- explicit CLI options <- ``--set`` overrides.

Defaults that the papers leave open (see docs/PAPER.md) and why they were chosen:

- ``k`` (k-means clusters): ``clip(round(sqrt(n_patches / 2)), 2, 1000)`` (:func:`default_k`), the usual
  rule of thumb for k-means; it grows with the pool, ~125 for Kvasir-SEG train (~31k patches) and the 1000 cap is
  reached at 2M patches. Margin scores need k >= 2.
- ``distance``: ``cosine`` — embeddings are L2-normalised and clustered with spherical k-means; a distance is
  ``1 - cos(x, c)`` in [0, 2]. ``l2`` clusters the raw embeddings and uses the Euclidean distance.
- ``score``: ``margin`` = d2 - d1 (boundary margin, small = hard), the reading of the paper's v4 "margin-driven"
  selection; ``prototype`` = d1 (Sorscher et al. 2022, far = hard); ``reconstruction`` = MAE reconstruction error
  (the paper's v1/v2, high = hard, needs ``mae_run``).
- ``mosaic_size`` 256 px, tiles of 128 px; ``tile_fit = pad``: a crop is resized so that its longer side fills the
  tile, keeping its aspect ratio, and centred on black (no geometric distortion of lesions); ``stretch`` resizes to
  the square tile.
- ``mosaic = False`` (the hard-only ablation) keeps the image budget: ``ratio x pool`` images, each one of the
  ``N / 4`` hardest patches resized (with ``tile_fit``) to ``mosaic_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from optidel.config import ConfigError

PatchKind = Literal["sam", "sam-checkpoint", "grid"]
ScoreName = Literal["margin", "prototype", "reconstruction"]
SCORE_NAMES: tuple[str, ...] = ("margin", "prototype", "reconstruction")
TILES_PER_MOSAIC = 4  # M in the paper: every 4 hard patches make one 2x2 image


@dataclass(frozen=True)
class SelectConfig:
    """What ``optidel select`` does (every key is documented in the field comments).

    Examples:
        >>> from optidel.config import resolve_config
        >>> cfg = resolve_config(SelectConfig, overrides=["pool=[data/kvasir-seg:train]", "ratio=0.1"])
        >>> cfg.ratio, cfg.score
        (0.1, 'margin')
    """

    pool: tuple[str, ...] = ()  # pool sources: folders, segmentation datasets (PATH:SPLIT) or select outputs
    out: str = ""  # output folder (images/, manifest.parquet, report.html, cache/ ...)
    # selection strategy: optidel, random, full, hard-only, mosaic-random, optidel-grid, easy
    method: str = "optidel"
    ratio: float = 0.05  # the compact set holds round(ratio x pool images) images
    # -- patch proposal and embedding --
    patches: PatchKind = "sam"  # patch proposer: LiteMedSAM box grid (sam), a SAM checkpoint, or a plain grid
    sam_checkpoint: str | None = None  # SAM weights for patches=sam-checkpoint
    sam_model_type: str | None = (
        None  # check sam_checkpoint is this SAM (vit_b, vit_l, vit_h); None: read the file
    )
    proposer_options: dict[str, Any] = field(default_factory=dict)  # extra keyword options for make_proposer
    # None = the proposer's own features (grid: LiteMedSAM features pooled in each box); litemedsam; a path to an
    # optidel encoder.safetensors (or its run folder); or timm:ARCH (random weights: an ablation)
    embedder: str | None = None
    device: str = "cpu"  # torch device for proposer and embedder (cpu, cuda, cuda:1 ...)
    shard_size: int = 64  # images per checkpoint shard of the patch + embedding stage
    # images per proposer call when it can batch (one LiteMedSAM encoder batch); on 2 CPU cores 8 were no faster than 1
    # (64 Kvasir images: 2:09 vs 2:13) but peaked at 5.4 GB vs 3.0 GB, 13.5 GB over 900 images: raise it on a GPU
    proposer_batch: int = 1
    # image-level embedding (image-level strategies): mean of its patch embeddings, or one whole-image pass
    image_embedding: Literal["mean", "whole"] = "mean"
    # -- scores --
    score: ScoreName = "margin"  # which hardness score ranks the patches
    mae_run: str | None = None  # an optidel MAE run directory for the reconstruction score
    k: int | None = None  # k-means clusters; None = clip(round(sqrt(n_patches / 2)), 2, 1000)
    distance: Literal["cosine", "l2"] = "cosine"  # cosine: spherical k-means on L2-normalised embeddings
    kmeans_iters: int = 20  # Lloyd iterations of faiss k-means
    kmeans_init_sample: int = 20000  # rows sampled for k-means++ initial centroids (sklearn)
    kmeans_points_per_centroid: int = 256  # k-means trains on at most this many sampled rows per centroid
    # -- selection --
    # drop a chosen patch whose cosine similarity to an earlier (harder) chosen one exceeds this
    dedup_threshold: float | None = None
    max_per_image: int | None = None  # at most this many chosen patches per source image
    # -- image-level baselines (meddel, semdedup, prototypes, moderate) --
    image_k: int | None = (
        None  # k-means clusters over image embeddings; None = the default_k rule on the images
    )
    meddel_eps: float = 0.9  # MedDEL: images farther than this cosine distance from their centre are outliers
    meddel_keep: Literal["nearer", "farther"] = (
        "nearer"  # MedDEL: of a duplicate pair keep the one nearer the centre
    )
    # -- synthesis --
    mosaic: bool = True  # False: the hard-only ablation (no 2x2 mosaics)
    mosaic_size: int = 256  # output image side in pixels (tiles are mosaic_size / 2)
    tile_fit: Literal["pad", "stretch"] = "pad"  # how a crop fills its tile
    grouping: Literal["random", "diverse"] = "random"  # which 4 patches share a mosaic
    # image-level methods: copy the pool files as they are, or resize them (tile_fit) to mosaic_size PNGs
    image_copy: Literal["copy", "resize"] = "copy"
    # -- run --
    seed: int = 0  # seeds k-means, groupings, random strategies
    workers: int = 1  # background threads that decode images (in each patch-stage process)
    # patch-stage worker processes, each with its own models and cores // procs torch threads (unless threads is
    # set); None = auto: one per core (at most 4, one per 64 images, one per 4 GiB RAM) on a CPU, 1 on a GPU or
    # under torchrun. On 2 cores two 1-thread processes took 0.85x the time per image of one 2-thread process
    procs: int | None = None
    threads: int | None = (
        None  # torch intra-op threads of proposer/embedder, per process; None = the cores shared out among procs
    )
    strict: bool = False  # an unreadable pool image (or too few patches) is an error instead of a warning
    report: bool = True  # write report.html and report/
    # with the report: V-information of the selected patches vs random subsets (vinfo.json)
    vinfo: bool = True
    cache_dir: str | None = (
        None  # stage cache folder; None = OUT/cache (the benchmark shares one across selections)
    )


def default_k(n_patches: int) -> int:
    """The default number of k-means clusters for ``n_patches`` patches: ``clip(round(sqrt(n / 2)), 2, 1000)``."""
    return int(min(1000, max(2, round(math.sqrt(n_patches / 2)))))


def n_target_images(n_pool_images: int, ratio: float) -> int:
    """Images in the compact set: ``round(ratio x n_pool_images)``, at least 1."""
    return max(1, int(round(ratio * n_pool_images)))


def validate_config(cfg: SelectConfig) -> None:
    """Raise :class:`ConfigError` naming the key for values that cannot work."""
    if not cfg.pool:
        raise ConfigError("pool: give at least one pool source (--pool PATH[:SPLIT])")
    if not cfg.out:
        raise ConfigError("out: give an output folder (--out DIR)")
    if not 0 < cfg.ratio <= 1:
        raise ConfigError(f"ratio: {cfg.ratio} is not in (0, 1]")
    if cfg.patches == "sam-checkpoint" and not cfg.sam_checkpoint:
        raise ConfigError("sam_checkpoint: patches=sam-checkpoint needs --sam-checkpoint PATH")
    if cfg.score == "reconstruction" and not cfg.mae_run:
        raise ConfigError("score=reconstruction needs an MAE run (--mae-run RUN_DIR)")
    if cfg.k is not None and cfg.k < 2:
        raise ConfigError(f"k: {cfg.k} < 2 (margin scores need two centroids)")
    if cfg.dedup_threshold is not None and not -1 <= cfg.dedup_threshold <= 1:
        raise ConfigError(f"dedup_threshold: {cfg.dedup_threshold} is not a cosine similarity in [-1, 1]")
    if cfg.max_per_image is not None and cfg.max_per_image < 1:
        raise ConfigError(f"max_per_image: {cfg.max_per_image} < 1")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads: {cfg.threads} < 1")
    if cfg.procs is not None and cfg.procs < 1:
        raise ConfigError(f"procs: {cfg.procs} < 1")
    if cfg.mosaic_size < 16 or cfg.mosaic_size % 2:
        raise ConfigError(f"mosaic_size: {cfg.mosaic_size} must be an even number >= 16")
    for key in (
        "shard_size",
        "proposer_batch",
        "workers",
        "kmeans_iters",
        "kmeans_init_sample",
        "kmeans_points_per_centroid",
    ):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: {getattr(cfg, key)} < 1")
