"""The ranking stages: k-means over the patch embeddings, the hardness scores, image-level embeddings.

Each is computed once per key (:class:`optidel.select.stage_cache.StageCache`) and read back from its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optidel.data.pool import PoolImage
from optidel.log import logger
from optidel.runtime.atomic import atomic_save_npy
from optidel.select.config import SelectConfig, default_k
from optidel.select.patches.store import PatchStore
from optidel.select.patches.types import PatchEmbedder
from optidel.select.rank.cluster import KMeansResult, run_kmeans
from optidel.select.rank.image_embeddings import (
    ImageEmbeddings,
    mean_patch_embeddings,
    whole_image_embeddings,
)
from optidel.select.rank.scores import margin_score, prototype_score, reconstruction_scores
from optidel.select.stage_cache import StageCache

KMEANS_ARRAYS = ("centroids", "cluster", "d1", "d2")


def cluster_stage(cfg: SelectConfig, cache: StageCache, store: PatchStore) -> KMeansResult:
    """k-means of the patch embeddings (``cache/kmeans-<key>``): centroids, and per patch cluster, d1, d2."""
    c = cfg.cluster

    def compute(d: Path) -> dict[str, Any]:
        n = len(store)
        if n < 2:
            raise ValueError(f"k-means needs at least 2 patches; the pool gave {n}")
        k = min(c.k or default_k(n), n)
        logger.info("k-means: %d patches x %d dims, k=%d (%s)", n, store.dim, k, c.distance)
        res = run_kmeans(
            store.embeddings,
            k,
            c.distance,
            c.kmeans_iters,
            cfg.seed,
            c.kmeans_init_sample,
            c.kmeans_points_per_centroid,
        )
        for name in KMEANS_ARRAYS:
            atomic_save_npy(d / f"{name}.npy", getattr(res, name))
        return {"k": k, "n": n, "distance": c.distance, "inertia": res.inertia}

    d, info = cache.stage("kmeans", cache.kmeans_key, compute)
    arrays = {name: np.load(d / f"{name}.npy") for name in KMEANS_ARRAYS}
    return KMeansResult(
        arrays["centroids"], arrays["cluster"], arrays["d1"], arrays["d2"], info["distance"], info["inertia"]
    )


def score_stage(
    cfg: SelectConfig,
    cache: StageCache,
    pool: Sequence[PoolImage],
    store: Callable[[], PatchStore],
    km: KMeansResult,
    device: str,
) -> dict[str, np.ndarray]:
    """``{"margin", "prototype", "reconstruction"}`` -> (n_patches,) scores; reconstruction NaN without an MAE run.

    Args:
        store: the patch store, asked for only when the reconstruction score needs the boxes.
    """
    out = {"margin": margin_score(km.d1, km.d2), "prototype": prototype_score(km.d1)}
    mae_run = cfg.scoring.mae_run
    if not mae_run:
        out["reconstruction"] = np.full(km.d1.shape, np.nan, np.float32)
        return out
    patches = store()

    def compute(d: Path) -> dict[str, Any]:
        paths = [str(p.path) for p in pool]
        s = reconstruction_scores(
            paths,
            patches.image_index,
            patches.boxes,
            mae_run,
            cfg.seed,
            workers=cfg.runtime.workers,
            device=device,
        )
        atomic_save_npy(d / "scores.npy", s)
        return {"mae_run": str(mae_run)}

    d, _ = cache.stage("recon", cache.recon_key, compute)
    out["reconstruction"] = np.load(d / "scores.npy")
    return out


def image_embedding_stage(
    cfg: SelectConfig,
    cache: StageCache,
    pool: Sequence[PoolImage],
    store: Callable[[], PatchStore],
    embedder: Callable[[], PatchEmbedder | None],
) -> ImageEmbeddings:
    """One embedding per pool image: the mean of its patch embeddings, or one whole-image pass of the embedder.

    Args:
        store: the patch store (asked for by ``mean`` only); embedder: the run's embedder (asked for by ``whole``).
    """
    kind = cfg.proposal.image_embedding
    if kind == "mean":
        patches = store()

        def compute(d: Path) -> dict[str, Any]:
            ie = mean_patch_embeddings(patches.image_index, patches.embeddings, len(pool))
            atomic_save_npy(d / "embeddings.npy", ie.embeddings)
            atomic_save_npy(d / "valid.npy", ie.valid)
            return {"kind": kind}

    else:

        def compute(d: Path) -> dict[str, Any]:
            emb = embedder()
            if emb is None:
                raise ValueError("image_embedding=whole needs an embedder (--embedder)")
            ie = whole_image_embeddings(pool, emb, cfg.runtime.workers)
            atomic_save_npy(d / "embeddings.npy", ie.embeddings)
            atomic_save_npy(d / "valid.npy", ie.valid)
            return {"kind": kind}

    d, _ = cache.stage("imgemb", cache.imgemb_key(kind), compute)
    return ImageEmbeddings(np.load(d / "embeddings.npy", mmap_mode="r"), np.load(d / "valid.npy"), kind)
