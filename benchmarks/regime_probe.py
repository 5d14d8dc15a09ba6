"""Look for a CPU-scale regime where pre-training on the full pool beats random init (issue: benchmark item 0).

One arm = one pre-training on the union of the datasets' train splits, then fine-tuning on each dataset with a
label fraction, for several seeds; the reference is a random-init encoder of the same architecture, same protocol.
Prints a table and writes ``benchmarks/results/regime_<name>.json``. A regime "has signal" on a dataset when
mean(pretrained) - mean(random init) > 2 x the larger of the two seed standard deviations.

Example:
    python benchmarks/regime_probe.py --name mae64p8 --ssl mae --steps 3000 --label-fraction 0.1 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from optidel.downstream.config import FinetuneConfig
from optidel.downstream.finetune import finetune
from optidel.downstream.result import FinetuneResult
from optidel.ssl.config import PretrainConfig
from optidel.ssl.train import pretrain

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--pool", nargs="+", default=["kvasir-seg", "busi"])
    ap.add_argument("--datasets", nargs="+", default=["kvasir-seg", "busi"])
    ap.add_argument("--ssl", default="mae")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--ft-img-size", type=int, default=64)
    ap.add_argument("--ft-epochs", type=int, default=20)
    ap.add_argument("--ft-min-steps", type=int, default=300)
    ap.add_argument("--mode", default="finetune")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=str(ROOT / "runs" / "regime"))
    args = ap.parse_args()

    out = Path(args.out) / args.name
    root = Path(args.data_root)
    t0 = time.perf_counter()
    pcfg = PretrainConfig(
        data=tuple(f"{root / d}:train" for d in args.pool),
        ssl=args.ssl,
        arch=args.arch,
        img_size=args.img_size,
        patch_size=args.patch_size,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=0,
        checkpoint_every=250,
    ).resolved()
    run = out / "pretrain"
    res = pretrain(pcfg, run, resume=(run / "checkpoint.pt").is_file())
    t_pre = time.perf_counter() - t0
    results: dict[str, dict[str, list[float]]] = {}
    for ds in args.datasets:
        for arm, enc in (("pretrained", str(run / "encoder.safetensors")), ("random-init", "none")):
            for seed in args.seeds:
                fdir = out / "finetune" / f"{args.mode}_lf{args.label_fraction:g}_{arm}_{ds}_s{seed}"
                cfg = FinetuneConfig(
                    encoder=enc,
                    dataset=str(root / ds),
                    out=str(fdir),
                    arch=pcfg.arch,
                    patch_size=pcfg.patch_size,
                    img_size=args.ft_img_size,
                    epochs=args.ft_epochs,
                    min_steps=args.ft_min_steps,
                    label_fraction=args.label_fraction,
                    mode=args.mode,
                    seed=seed,
                )
                m = FinetuneResult.read(fdir) if (fdir / "DONE").is_file() else finetune(cfg)
                results.setdefault(ds, {}).setdefault(arm, []).append(m.test["miou"])
                prior = m.floors["mean-mask prior"]["miou"]
                results[ds].setdefault("mean-mask prior", [prior])
    summary = {
        "name": args.name,
        "args": vars(args),
        "pretrain_loss": [res.first_loss, res.final_loss],
        "pretrain_s": round(t_pre, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "datasets": {},
    }
    print(
        f"regime {args.name}: {args.ssl} {pcfg.arch} {args.img_size}px/p{args.patch_size}, {args.steps} steps, "
        f"label fraction {args.label_fraction}, seeds {args.seeds}"
    )
    print(f"{'dataset':12s} {'pretrained':>18s} {'random init':>18s} {'diff':>8s} {'2x sd':>8s} signal")
    for ds, arms in results.items():
        p, r = np.array(arms["pretrained"]), np.array(arms["random-init"])
        sd = max(p.std(ddof=1) if p.size > 1 else 0, r.std(ddof=1) if r.size > 1 else 0)
        diff = p.mean() - r.mean()
        signal = bool(diff > 2 * sd) if p.size > 1 else None
        summary["datasets"][ds] = {
            "pretrained": p.tolist(),
            "random_init": r.tolist(),
            "mean_mask_prior": arms["mean-mask prior"][0],
            "diff": diff,
            "sd": sd,
            "signal": signal,
        }
        print(
            f"{ds:12s} {p.mean():8.4f} +- {p.std():.4f} {r.mean():8.4f} +- {r.std():.4f} {diff:+8.4f} "
            f"{2 * sd:8.4f} {signal}"
        )
    dest = ROOT / "benchmarks" / "results" / f"regime_{args.name}_{args.mode}_lf{args.label_fraction:g}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
