"""Benchmark: the patch stage in one process (all cores as torch threads) vs K worker processes (``procs``).

Both sides run the real patch stage (``process_shards``: LiteMedSAM proposal + embedding, shards written to a
fresh folder) on the same Kvasir-SEG train images, in alternating rounds so the machine's drift hits both alike.
Per side and round: the wall time of the stage (worker start-up included) and the median seconds per image of the
shards after the first (start-up excluded). The matmul rate is measured at the start and the end, as in
``bench_patches.py``.

Printed and written to ``benchmarks/results/procs.json``: per round and side the numbers above, the per-round ratios
K procs / 1 proc, their medians, and each side's images/s as a fraction of the issue's nominal limit
``matmul_rate / (75 + 3.6 x 16)`` images/s (the package's encoder and decoder costs, 16 boxes per image; the matmul
rate is the mean of the start and end measurements).

Usage::

    python benchmarks/bench_procs.py --n 32 --rounds 3            # procs = the default for 32 images (2 on 2 cores)
    python benchmarks/bench_procs.py --n 32 --rounds 3 --procs 2
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_patches import DECODER_GFLOP_PER_BOX, ENCODER_GFLOP, matmul_gflops, train_images  # noqa: E402

from optidel.data.pool import PoolImage  # noqa: E402
from optidel.runtime.atomic import atomic_write_json  # noqa: E402
from optidel.select.patches.store import _shard_meta, process_shards, shard_file  # noqa: E402
from optidel.select.patches.workers import ModelSpec, resolve_procs  # noqa: E402


def run_side(pool: list[PoolImage], spec: ModelSpec, procs: int, shard_size: int) -> dict[str, float]:
    """One patch stage into a fresh folder: wall seconds and median seconds per image of shards 1.. ."""
    proposer, embedder = spec.build()
    root = Path(tempfile.mkdtemp(prefix="bench_procs_"))
    try:
        t0 = time.perf_counter()
        process_shards(pool, proposer, embedder, root, shard_size, procs=procs, spec=spec)
        wall = time.perf_counter() - t0
        metas = [
            _shard_meta(root, s) for s in range(len(pool) // shard_size) if shard_file(root, s).is_file()
        ]
        later = [m["seconds"] / (m["images"][1] - m["images"][0]) for m in metas[1:]]
        return {"wall_s": wall, "s_per_image": statistics.median(later) if later else float("nan")}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kvasir-seg")
    ap.add_argument("--n", type=int, default=32, help="pool images per side (a multiple of --shard-size)")
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument(
        "--procs", type=int, default=None, help="worker processes of side B (default: the default)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11, help="which train images (seeded sample)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "procs.json")
    args = ap.parse_args()
    if not (args.data / "splits.csv").is_file():
        raise SystemExit(f"no dataset at {args.data} (see ../shared/data/README)")

    pool = [PoolImage("kvasir-seg", i, p) for i, p in train_images(args.data, args.n, seed=args.seed)]
    k = resolve_procs(args.procs, len(pool))
    if k < 2:
        raise SystemExit(f"{k} worker process for {len(pool)} images on this machine: nothing to compare")
    spec = ModelSpec("sam", {"device": "cpu"})
    rate0 = matmul_gflops()
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        one = run_side(pool, spec, 1, args.shard_size)
        many = run_side(pool, spec, k, args.shard_size)
        row = {
            "round": r,
            "one_process": one,
            f"{k}_processes": many,
            "ratio_wall": many["wall_s"] / one["wall_s"],
            "ratio_s_per_image": many["s_per_image"] / one["s_per_image"],
        }
        rounds.append(row)
        print(
            f"round {r}: 1 process {one['wall_s']:.1f} s ({one['s_per_image']:.2f} s/img), "
            f"{k} processes {many['wall_s']:.1f} s ({many['s_per_image']:.2f} s/img); "
            f"ratio wall {row['ratio_wall']:.3f}, per image {row['ratio_s_per_image']:.3f}",
            flush=True,
        )
    rate1 = matmul_gflops()
    limit = (rate0 + rate1) / 2 / (ENCODER_GFLOP + DECODER_GFLOP_PER_BOX * 16)  # images/s
    one_s = statistics.median(r["one_process"]["s_per_image"] for r in rounds)
    many_s = statistics.median(r[f"{k}_processes"]["s_per_image"] for r in rounds)
    summary = {
        "images": len(pool),
        "shard_size": args.shard_size,
        "procs": k,
        "matmul_gflops_start_end": [rate0, rate1],
        "rounds": rounds,
        "median_ratio_wall": statistics.median(r["ratio_wall"] for r in rounds),
        "median_ratio_s_per_image": statistics.median(r["ratio_s_per_image"] for r in rounds),
        "nominal_limit_images_per_s": limit,
        "fraction_of_limit": {"one_process": 1 / one_s / limit, f"{k}_processes": 1 / many_s / limit},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(
        f"median ratio {k} processes / 1 process: wall {summary['median_ratio_wall']:.3f}, "
        f"per image {summary['median_ratio_s_per_image']:.3f} (matmul {rate0:.0f} -> {rate1:.0f} GFLOP/s)\n"
        f"images/s as a fraction of the nominal limit ({limit:.2f} images/s): 1 process {1 / one_s / limit:.2f}, "
        f"{k} processes {1 / many_s / limit:.2f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()
