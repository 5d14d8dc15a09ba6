"""Benchmark: A/B timing of the LiteMedSAM proposer between two source trees, in alternating processes.

The machine's speed drifts between runs (the 4096^2 matmul measured 107-155 GFLOP/s on different runs of the same
day), so a speed-up is measured here as a ratio within one run: rounds of ``A, B`` processes, each timing the encoder
and ``propose`` (decode, filters, NMS, pooling) on the same Kvasir-SEG train images after one warm-up image. A tree is
a ``src`` folder holding ``optidel`` (e.g. a ``git worktree`` of an older commit).

Printed and written to ``benchmarks/results/ab_patches.json``: per round and side the median seconds per image (encoder,
propose, total), and the per-round ratios B / A.

Usage::

    git worktree add /tmp/base 661bae1
    python benchmarks/ab_patches.py --a /tmp/base/src --b src --rounds 3 --n 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from optidel.runtime.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, statistics, sys, time
import torch
sys.path.insert(0, {bench!r})
from bench_patches import train_images
from optidel.data.image import load_rgb
from optidel.select.patches.litemedsam import LiteMedSAMProposer
from pathlib import Path
torch.set_num_threads({threads})
imgs = [load_rgb(p) for _, p in train_images(Path({data!r}), {n}, seed={seed})]
prop = LiteMedSAMProposer()
prop.process(imgs[0])
enc_s, prop_s = [], []
for im in imgs:
    t0 = time.perf_counter()
    enc = prop.model.encode([im])[0]
    t1 = time.perf_counter()
    prop.propose(enc)
    enc_s.append(t1 - t0)
    prop_s.append(time.perf_counter() - t1)
m = statistics.median
print(json.dumps({{"encode": m(enc_s), "propose": m(prop_s), "total": m([a + b for a, b in zip(enc_s, prop_s)])}}))
"""


def run_side(src: Path, args: argparse.Namespace) -> dict[str, float]:
    """One process on tree ``src``: median seconds per image."""
    code = CHILD.format(
        bench=str(REPO / "benchmarks"), threads=args.threads, data=str(args.data), n=args.n, seed=args.seed
    )
    env = dict(os.environ, PYTHONPATH=str(src.resolve()), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, cwd=REPO
    )
    if out.returncode != 0:
        raise SystemExit(f"the run on {src} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="baseline tree (a src folder holding optidel)")
    ap.add_argument(
        "--b", type=Path, default=REPO / "src", help="candidate tree (default: this checkout's src)"
    )
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kvasir-seg")
    ap.add_argument("--n", type=int, default=10, help="images per process")
    ap.add_argument("--seed", type=int, default=5, help="which train images (seeded sample)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ab_patches.json")
    args = ap.parse_args()
    for side in (args.a, args.b):
        if not (side / "optidel" / "__init__.py").is_file():
            raise SystemExit(f"{side} holds no optidel package (give a src folder)")
    rounds: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    for r in range(args.rounds):
        a, b = run_side(args.a, args), run_side(args.b, args)
        ratio = {k: b[k] / a[k] for k in a}
        rounds.append({"a": a, "b": b, "ratio_b_over_a": ratio})
        print(
            f"round {r + 1}: A total {a['total']:.3f} s/img (encode {a['encode']:.3f}, propose {a['propose']:.3f}) | "
            f"B total {b['total']:.3f} (encode {b['encode']:.3f}, propose {b['propose']:.3f}) | "
            f"B/A total {ratio['total']:.2f}, propose {ratio['propose']:.2f}"
        )
    med = {
        k: statistics.median(x["ratio_b_over_a"][k] for x in rounds) for k in ("encode", "propose", "total")
    }
    print(f"median B/A over {args.rounds} rounds: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    result = {
        "a": str(args.a),
        "b": str(args.b),
        "images": args.n,
        "seed": args.seed,
        "threads": args.threads,
        "loadavg": [load_start, os.getloadavg()],
        "rounds": rounds,
        "median_ratio_b_over_a": med,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
