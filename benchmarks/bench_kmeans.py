"""Benchmark: k-means + hardness scores + selection + grouping on 1M synthetic 256-d patch embeddings.

The embeddings are a Gaussian mixture (``--components`` centres, unit-norm directions plus noise), float32, written
into a memory-mapped ``.npy`` in chunks, so the run exercises the same out-of-core path as ``optidel select``
(k-means trains on a sample, assignment streams over the memmap). The pipeline's defaults are used: cosine distance,
k = clip(round(sqrt(n / 2)), 2, 1000), k-means++ initial centroids on 20k rows, 20 faiss iterations on
256 x k sampled rows.

Stages timed: generate, kmeans_fit, assign (nearest + second-nearest centroid of every row), scores_rank (margin,
prototype, hardest-first order), select_topn (N = 4 x round(0.05 x images), with ~35 patches per image as from
LiteMedSAM), select_dedup (the same with --dedup-threshold 0.9 and --max-per-image 2), group_diverse.

Usage::

    python benchmarks/bench_kmeans.py                      # 1M x 256, writes benchmarks/results/kmeans_select.json
    python benchmarks/bench_kmeans.py --n 100000 --dim 64  # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from optidel.runtime.atomic import atomic_write_json
from optidel.select.config import default_k, n_target_images
from optidel.select.outputs.mosaic import group_diverse
from optidel.select.rank.cluster import assign, fit_kmeans, iter_chunks
from optidel.select.rank.scores import hardness, margin_score, prototype_score, rank_order
from optidel.select.rank.selection import greedy_select

PATCHES_PER_IMAGE = 35  # LiteMedSAM gives ~35-40 patches per image (ENVIRONMENT.md)


def generate(path: Path, n: int, dim: int, components: int, seed: int, chunk: int = 65536) -> np.ndarray:
    """A Gaussian mixture (n, dim) float32 written chunk by chunk into a .npy memmap; returns it read-only."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(components, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.2, 0.6, components).astype(np.float32) / np.sqrt(dim)
    weights = rng.dirichlet(np.full(components, 2.0))
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for sl in iter_chunks(n, chunk):
        m = sl.stop - sl.start
        lab = rng.choice(components, size=m, p=weights)
        mm[sl] = centres[lab] + spread[lab, None] * rng.standard_normal((m, dim), dtype=np.float32)
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="patches (rows)")
    ap.add_argument("--dim", type=int, default=256, help="embedding dimension")
    ap.add_argument("--components", type=int, default=500, help="mixture components")
    ap.add_argument("--k", type=int, default=None, help="k-means clusters (default: the pipeline's rule)")
    ap.add_argument("--ratio", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the memmap (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kmeans_select.json")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="optidel-bench-kmeans-"))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    def timed(name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        times[name] = round(time.perf_counter() - t0, 2)
        print(f"{name:>14}: {times[name]:8.2f} s", flush=True)
        return out

    try:
        emb = timed("generate", generate, work / "emb.npy", args.n, args.dim, args.components, args.seed)
        k = args.k or default_k(args.n)
        fit_stats: dict[str, float] = {}
        centroids = timed("kmeans_fit", fit_kmeans, emb, k, "cosine", 20, args.seed, stats=fit_stats)
        print("                (" + ", ".join(f"{a} {b:.1f}" for a, b in fit_stats.items()) + ")", flush=True)
        cluster, d1, d2 = timed("assign", assign, emb, centroids, "cosine")

        def scores_rank():
            margin = margin_score(d1, d2)
            proto = prototype_score(d1)
            return margin, proto, rank_order(hardness("margin", margin))

        margin, proto, order = timed("scores_rank", scores_rank)
        n_images = args.n // PATCHES_PER_IMAGE
        image_index = np.arange(args.n) // PATCHES_PER_IMAGE
        n_sel = 4 * n_target_images(n_images, args.ratio)
        ids = timed("select_topn", greedy_select, order, n_sel)
        ids_dd = timed(
            "select_dedup", greedy_select, order, n_sel, image_index, 2, emb, 0.9
        )  # dedup 0.9 + max 2 per image
        groups = timed("group_diverse", group_diverse, cluster[ids], np.random.default_rng(args.seed))
        distinct = float(np.mean([len(set(cluster[ids][g].tolist())) for g in groups]))
        total = round(sum(v for k_, v in times.items() if k_ != "generate"), 2)
        print(f"{'total':>14}: {total:8.2f} s (without generate)")
        result = {
            "n": args.n,
            "dim": args.dim,
            "components": args.components,
            "k": k,
            "distance": "cosine",
            "n_images": n_images,
            "n_selected": int(ids.size),
            "n_selected_dedup": int(ids_dd.size),
            "mean_inertia_d1": float(d1.mean()),
            "selected_margin_max": float(margin[ids].max()),
            "mean_distinct_clusters_per_mosaic": distinct,
            "seconds": times,
            "kmeans_fit_breakdown": {a: round(b, 3) for a, b in fit_stats.items()},
            "total_seconds_without_generate": total,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "python": platform.python_version(),
        }
        atomic_write_json(args.out, result)
        print(json.dumps(result, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
