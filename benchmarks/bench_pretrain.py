"""Throughput of ``optidel pretrain`` against a bare training loop of the same model on synthetic tensors.

For each method (MAE, SimCLR) and repeat, alternating which goes first:

- **pipeline**: ``python -m optidel.cli pretrain`` on a real pool (array cache warmed beforehand); images/s are read
  from its ``metrics.csv`` after ``--skip`` warm-up steps: ``(images after the skip) / (elapsed_s after the skip)``,
  so everything inside the loop counts (batch gathering from the cache, augmentation on whole batches, masking,
  forward, backward, AdamW, scheduler, logging, progress bar);
- **bare**: a fresh process (this script with ``--bare METHOD``) training the same model
  (``optidel.ssl.train.build_model``) with AdamW, the same parameter groups and a schedule, on pre-made random tensors
  (no data, no augmentation), timed after the same warm-up.

Both sides run as fresh processes with the same environment, including ``OMP_WAIT_POLICY`` (PASSIVE unless set: the
``optidel`` CLI sets that default before importing torch, and on a loaded machine it changes torch's speed
several-fold, so a comparison in which only one side has it measures the setting, not the pipeline).

It prints the medians and their ratio (pipeline / bare; goal >= 0.9) and writes ``benchmarks/results/pretrain_throughput.json``.
SimCLR images/s count source images (each gives two views).

Usage:
    .venv/bin/python benchmarks/bench_pretrain.py [--data PATH[:SPLIT]] [--methods mae simclr] [--steps 40] [--skip 10]
        [--repeats 3] [--batch-size 64] [--img-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kvasir-seg"


def _env() -> dict[str, str]:
    env = dict(os.environ, OPTIDEL_PROGRESS="1", HF_HUB_OFFLINE="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def pipeline_images_per_s(args: argparse.Namespace, method: str, data: str, out: Path) -> float:
    cmd = [sys.executable, "-m", "optidel.cli", "-q", "pretrain", "--data", data, "--ssl", method]
    cmd += [
        "--img-size",
        str(args.img_size),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
    ]
    cmd += ["--checkpoint-every", str(10**9), "--set", f"log_every={args.log_every}", "--out", str(out)]
    subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.DEVNULL)
    from optidel.ssl.plots import read_metrics

    rows = read_metrics(out / "metrics.csv")
    start = next(r for r in rows if r["step"] >= args.skip)
    end = rows[-1]
    return (end["step"] - start["step"]) * args.batch_size / (end["elapsed_s"] - start["elapsed_s"])


def bare_images_per_s(args: argparse.Namespace, method: str) -> float:
    """:func:`bare_loop` in a fresh process with the pipeline's environment."""
    cmd = [sys.executable, __file__, "--bare", method, "--steps", str(args.steps), "--skip", str(args.skip)]
    cmd += ["--log-every", str(args.log_every), "--batch-size", str(args.batch_size)]
    cmd += ["--img-size", str(args.img_size)]
    out = subprocess.run(cmd, check=True, env=_env(), capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["images_per_s"])


def bare_loop(args: argparse.Namespace, method: str) -> float:
    """images/s of forward + backward + AdamW + schedule on random tensors, after ``args.skip`` steps."""
    import torch

    from optidel.runtime.schedule import param_groups, warmup_cosine
    from optidel.ssl.config import PretrainConfig
    from optidel.ssl.train import build_model

    cfg = PretrainConfig(
        data=("-",), ssl=method, img_size=args.img_size, batch_size=args.batch_size, steps=args.steps
    )
    cfg = cfg.resolved()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(
        param_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr, betas=cfg.betas
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, 2, 0.0))
    b, s = cfg.batch_size, cfg.img_size
    if method == "mae":
        inputs = [(torch.randn(b, 3, s, s), torch.rand(b, model.num_patches)) for _ in range(4)]
    else:
        inputs = [(torch.randn(b, 3, s, s), torch.randn(b, 3, s, s)) for _ in range(4)]
    t0 = 0.0
    for step in range(args.steps):
        if step == args.skip:
            t0 = time.perf_counter()
        loss = model(*inputs[step % len(inputs)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()
    return (args.steps - args.skip) * b / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", default=None, help="pool source (default: ../shared/data/kvasir-seg:train, else synthetic)"
    )
    ap.add_argument("--methods", nargs="+", default=["mae", "simclr"], choices=["mae", "simclr"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the timing")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pretrain_throughput.json")
    ap.add_argument(
        "--bare", choices=["mae", "simclr"], help=argparse.SUPPRESS
    )  # internal: one bare measurement
    args = ap.parse_args()
    if args.bare:
        print(json.dumps({"images_per_s": bare_loop(args, args.bare)}))
        return
    if args.skip % args.log_every or args.skip >= args.steps:
        ap.error("--skip must be a multiple of --log-every and below --steps")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    data = args.data
    if data is None:
        if (DEFAULT_DATA / "images").is_dir():
            data = f"{DEFAULT_DATA}:train"
        else:
            from optidel.data.synthetic import make_synthetic_seg_dataset

            data = str(make_synthetic_seg_dataset(tmp / "synthetic", n=256, size=96, test_fraction=0.01))
            print(f"{DEFAULT_DATA} not found: using 256 synthetic images (throughput only)")
    from optidel.data.array_cache import load_stack
    from optidel.data.pool import list_pool

    pool = list_pool([data])
    load_stack([p.path for p in pool], args.img_size)  # decode once, outside every timing

    results: dict[str, dict] = {}
    for method in args.methods:
        pipe, bare = [], []
        for r in range(args.repeats):
            order = ["pipeline", "bare"] if r % 2 == 0 else ["bare", "pipeline"]
            for kind in order:
                if kind == "pipeline":
                    pipe.append(pipeline_images_per_s(args, method, data, tmp / f"{method}-{r}"))
                else:
                    bare.append(bare_images_per_s(args, method))
            print(
                f"{method} repeat {r}: pipeline {pipe[-1]:.1f} img/s, bare {bare[-1]:.1f} img/s", flush=True
            )
        mp, mb = statistics.median(pipe), statistics.median(bare)
        results[method] = {
            "pipeline_images_per_s": [round(x, 2) for x in pipe],
            "bare_images_per_s": [round(x, 2) for x in bare],
            "median_pipeline": round(mp, 2),
            "median_bare": round(mb, 2),
            "ratio": round(mp / mb, 3),
        }
        print(f"{method}: pipeline {mp:.1f} img/s, bare {mb:.1f} img/s, ratio {mp / mb:.3f}", flush=True)

    import torch

    report = {
        "what": "optidel pretrain images/s (metrics.csv, after warm-up) vs a bare loop of the same model on random tensors",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": _env()["OMP_WAIT_POLICY"],
            "load_average_at_end": os.getloadavg(),
        },
        "settings": {
            "data": data,
            "n_images": len(pool),
            "img_size": args.img_size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "skip": args.skip,
            "repeats": args.repeats,
            "arch": {"mae": "vit_tiny patch 8", "simclr": "resnet18"},
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
