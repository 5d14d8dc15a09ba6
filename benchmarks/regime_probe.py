"""Look for a CPU-scale regime where pre-training helps, and where what the images show is what helps.

Three encoders of one architecture, each probed (or fine-tuned) on every dataset with a label fraction, for several
fine-tuning seeds: ``pool`` (pre-trained on the union of the pool datasets' train splits), ``noise`` with
``--noise`` (pre-trained with the same settings and steps on round(0.05 x pool) images of smooth random colour noise,
the ``noise`` selection method's images: no medical content) and ``random-init``. A regime **has signal** on a
dataset when mean(pool) - mean(random init) > 2 x the larger seed s.d.; **content shows** when pool - noise is
positive with a paired bootstrap interval (over seeds and test images) that excludes 0. A benchmark of data
selection is only meaningful where content shows (BENCHMARKS.md, "The content control").

Prints a table and writes ``OUT/NAME/summary.json``. Resumable: a finished pre-training or fine-tuning is kept.
``--ft-set KEY=VALUE ...`` changes the fine-tuning settings (``FinetuneConfig`` keys) and keeps the screen's
pre-trainings: its fine-tunings and summary are named after the settings (``OUT/NAME/summary-num_levels1.json``), as
is the summary of a label fraction other than the default (``summary-lf0.02.json``), so one pair of encoders can be
probed several ways.

Example:
    python benchmarks/regime_probe.py --name mae64p8-s2000 --ssl mae --steps 2000 --pool kvasir-seg polypgen \\
        --datasets busi kvasir-seg --label-fraction 0.1 --seeds 0 1 --mode probe --noise
    python benchmarks/regime_probe.py --name mae64p8-s2000 ... --ft-set num_levels=1   # the last block's tokens only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from optidel.bench.results import per_image_counts
from optidel.config import from_dict, parse_overrides
from optidel.data.pool import list_pool
from optidel.downstream.config import FinetuneConfig
from optidel.downstream.finetune import finetune
from optidel.downstream.result import FinetuneResult
from optidel.metrics.bootstrap import miou_from_counts, paired_miou_difference
from optidel.select.config import n_target_images
from optidel.select.outputs.noise import write_noise_images
from optidel.ssl.config import PretrainConfig
from optidel.ssl.train import pretrain

ROOT = Path(__file__).resolve().parents[1]
NOISE_PX = 256  # the noise method's default image size (synthesis.mosaic_size)


def stacked(runs: list[Path]) -> np.ndarray:
    """(S, I, 4) confusion counts of one arm's runs (one per seed), test images in a fixed order."""
    tables = [per_image_counts(r) for r in runs]
    ids = sorted(tables[0])
    return np.stack([np.stack([t[i] for i in ids]) for t in tables])


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
    ap.add_argument(
        "--noise", action="store_true", help="add the noise control (same pre-training, no content)"
    )
    ap.add_argument(
        "--ft-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fine-tuning settings (FinetuneConfig keys)",
    )
    ap.add_argument("--out", default=str(ROOT / "runs" / "regime"))
    args = ap.parse_args()
    ft_set = parse_overrides(args.ft_set)
    checked = from_dict(FinetuneConfig, ft_set)  # an unknown key or a wrong type fails here, naming it
    ft_set = {k: getattr(checked, k) for k in ft_set}
    tag = "".join(f"_{k}{v}" for k, v in sorted(ft_set.items()))

    out = Path(args.out) / args.name
    root = Path(args.data_root)
    t0 = time.perf_counter()
    pool = tuple(f"{root / d}:train" for d in args.pool)
    pcfg = PretrainConfig(
        data=pool,
        ssl=args.ssl,
        arch=args.arch,
        img_size=args.img_size,
        patch_size=args.patch_size,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=0,
        checkpoint_every=250,
    ).resolved()
    encoders = {"pool": out / "pretrain"}
    if args.noise:
        n = n_target_images(len(list_pool(pool)), 0.05)
        encoders["noise"] = out / "pretrain-noise"
        (out / "noise").mkdir(parents=True, exist_ok=True)
        write_noise_images(out / "noise", n, NOISE_PX, seed=0)  # the noise method's images of seed 0
        noise_cfg = dataclasses.replace(pcfg, data=(str(out / "noise"),))
    losses, seconds = {}, {}
    for arm, run in encoders.items():
        t = time.perf_counter()
        cfg = pcfg if arm == "pool" else noise_cfg
        res = pretrain(cfg, run, resume=(run / "checkpoint.pt").is_file())
        losses[arm], seconds[arm] = [res.first_loss, res.final_loss], round(time.perf_counter() - t, 1)
    arms = {k: str(v / "encoder.safetensors") for k, v in encoders.items()} | {"random-init": "none"}
    runs: dict[str, dict[str, list[Path]]] = {}
    prior: dict[str, float] = {}
    for ds in args.datasets:
        for arm, enc in arms.items():
            for seed in args.seeds:
                fdir = out / "finetune" / f"{args.mode}_lf{args.label_fraction:g}{tag}_{arm}_{ds}_s{seed}"
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
                cfg = dataclasses.replace(cfg, **ft_set)
                m = FinetuneResult.read(fdir) if (fdir / "DONE").is_file() else finetune(cfg)
                runs.setdefault(ds, {}).setdefault(arm, []).append(fdir)
                prior[ds] = m.floors["mean-mask prior"]["miou"]
    summary = {
        "name": args.name,
        "args": vars(args),
        "pretrain_loss": losses,
        "pretrain_s": seconds,
        "total_s": round(time.perf_counter() - t0, 1),
        "datasets": {},
    }
    print(
        f"regime {args.name}: {args.ssl} {pcfg.arch} {args.img_size}px/p{args.patch_size}, {args.steps} steps, "
        f"{args.mode}, label fraction {args.label_fraction}, seeds {args.seeds}"
        + (f", {ft_set}" if ft_set else "")
    )
    print("| dataset | " + " | ".join(arms) + " | pool - random init | 2x sd | pool - noise (95%) |")
    print("|---|" + "---|" * (len(arms) + 3))
    for ds, by_arm in runs.items():
        counts = {a: stacked(r) for a, r in by_arm.items()}
        miou = {a: miou_from_counts(c.sum(1)) for a, c in counts.items()}  # (S,) per seed
        sd = max(float(v.std(ddof=1)) if v.size > 1 else 0.0 for v in miou.values())
        diff = float(miou["pool"].mean() - miou["random-init"].mean())
        row = {a: v.tolist() for a, v in miou.items()}
        row.update(
            mean_mask_prior=prior[ds], diff=diff, sd=sd, signal=diff > 2 * sd if len(args.seeds) > 1 else None
        )
        content = "-"
        if "noise" in counts:
            ci = paired_miou_difference(counts["pool"], counts["noise"])
            row["pool_minus_noise"] = [ci.estimate, ci.low, ci.high]
            row["content_shows"] = bool(ci.estimate > 0 and ci.excludes_zero())
            content = f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]" + (
                " *" if ci.excludes_zero() else ""
            )
        summary["datasets"][ds] = row
        means = " | ".join(f"{v.mean():.3f}" for v in miou.values())
        print(f"| {ds} | {means} | {diff:+.3f} | {2 * sd:.3f} | {content} |")
    lf = "" if args.label_fraction == ap.get_default("label_fraction") else f"_lf{args.label_fraction:g}"
    summary_file = out / f"summary{(lf + tag).replace('_', '-', 1)}.json"
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {summary_file}")


if __name__ == "__main__":
    main()
