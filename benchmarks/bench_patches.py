"""Benchmark: LiteMedSAM patch proposal + embedding speed against the machine's matmul rate, and a naive baseline.

Measured in one run, on the CPU threads torch is given (``--threads``, default 2):

(a) the machine's rate: a 4096 x 4096 float32 matmul, GFLOP/s, median of 5 (measured again at the end, since the
    machine may be shared);
(b) ``LiteMedSAMProposer`` with its defaults (``optidel select --patches sam``) on ``--n`` Kvasir-SEG train images:
    images/s of ``process()`` (encoder, box prompts, one batched decode, filters, NMS, mask pooling; image decoding
    excluded), and the FLOPs it actually spends, counted with ``torch.utils.flop_counter.FlopCounterMode`` in a
    separate pass (encoder and decoder apart);
(c) the naive baseline: the package's own forward passes (no fusion, NCHW) and a Python loop over a 58-box grid
    (128 and 64 px boxes at 50% overlap on the 256 px frame), one box per decoder call, on ``--naive-n`` images;
(d) with ``--compare-strategies M``: the box-prompt strategies on M train images with their ground-truth polyp masks
    (boxes decoded per image; best mask IoU of the kept patches with the polyp; share of images where it is > 0.5
    and > 0.75), the measurement behind the default strategy.

Printed and written to ``benchmarks/results/patches_speed.json``: images/s, achieved GFLOP/s as a fraction of the matmul
rate, the nominal limit ``matmul_rate / (75 + 3.6 x boxes)`` images/s (the costs of the package's encoder and decoder
per box) and the achieved / limit ratio, and the same limit from the FLOPs actually counted.

Usage::

    python benchmarks/bench_patches.py                          # 20 images, naive on 3
    python benchmarks/bench_patches.py --n 5 --naive-n 1        # quick
    python benchmarks/bench_patches.py --compare-strategies 24  # + the strategy comparison (slow: ~2 min per image)
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from optidel.data.image import load_gray, load_rgb
from optidel.models.litemedsam import FEATURE_SIZE, INPUT_SIZE, STRIDE, LiteMedSAM
from optidel.runtime.atomic import atomic_write_json
from optidel.select.patches.box_prompts import grid_boxes
from optidel.select.patches.litemedsam import LiteMedSAMProposer

ENCODER_GFLOP = 75.0  # the package's encoder per 256 px image (FlopCounterMode)
DECODER_GFLOP_PER_BOX = 3.6  # the package's mask decoder per box
REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n float32 matmul (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def train_images(root: Path, n: int, seed: int | None = None) -> list[tuple[str, Path]]:
    """(id, image path) of n train images: the first n ids in sorted order, or a seeded random sample."""
    with open(root / "splits.csv", newline="") as f:
        ids = sorted(r["id"] for r in csv.DictReader(f) if r["split"] == "train")
    if seed is not None:
        ids = sorted(np.random.default_rng(seed).choice(ids, min(n, len(ids)), replace=False).tolist())
    out = []
    for i in ids[:n]:
        out.append((i, next((root / "images").glob(f"{i}.*"))))
    return out


def count_gflop(fn: Any) -> tuple[float, Any]:
    fc = FlopCounterMode(display=False)
    with fc:
        out = fn()
    return fc.get_total_flops() / 1e9, out


def bench_optimised(imgs: list[np.ndarray], proposer: LiteMedSAMProposer) -> dict[str, Any]:
    proposer.process(imgs[0])  # warm-up (allocator, oneDNN primitives)
    secs, boxes, patches = [], [], []
    for img in imgs:
        t = time.perf_counter()
        p = proposer.process(img)
        secs.append(time.perf_counter() - t)
        boxes.append(proposer.last_num_boxes)
        patches.append(len(p))
    enc_gf, dec_gf = [], []
    with torch.inference_mode():
        for img in imgs:  # the same deterministic work again, counted
            g_enc, enc = count_gflop(lambda im=img: proposer.model.encode([im])[0])
            g_dec, _ = count_gflop(lambda e=enc: proposer.propose(e))
            enc_gf.append(g_enc)
            dec_gf.append(g_dec)
    total_s = float(sum(secs))
    total_gf = float(sum(enc_gf) + sum(dec_gf))
    return {
        "images": len(imgs),
        "seconds_total": total_s,
        "seconds_per_image_median": float(np.median(secs)),
        "images_per_s": len(imgs) / total_s,
        "boxes_per_image_mean": float(np.mean(boxes)),
        "patches_per_image_mean": float(np.mean(patches)),
        "gflop_per_image_mean": total_gf / len(imgs),
        "encoder_gflop_per_image": float(np.mean(enc_gf)),
        "decoder_gflop_per_box": float(sum(dec_gf) / max(1, sum(boxes))),
        "achieved_gflops": total_gf / total_s,
    }


def bench_naive(imgs: list[np.ndarray]) -> dict[str, Any]:
    """The package's forward passes, one decoder call per box of a 58-box grid."""
    ref = LiteMedSAM(fast=False, decoder_chunk=1)
    boxes = grid_boxes((256, 256), (128, 64), 0.5)
    secs = []
    with torch.inference_mode():
        for img in imgs:
            t = time.perf_counter()
            enc = ref.encode([img])[0]
            for b in boxes:  # the per-box Python loop
                ref.decode(enc.features, b[None])
            secs.append(time.perf_counter() - t)
        g_enc, enc = count_gflop(lambda: ref.encode([imgs[0]])[0])
        g_box, _ = count_gflop(lambda: ref.decode(enc.features, boxes[:1]))
    gf = g_enc + g_box * len(boxes)
    total = float(sum(secs))
    return {
        "images": len(imgs),
        "boxes_per_image": len(boxes),
        "seconds_per_image_mean": total / len(imgs),
        "images_per_s": len(imgs) / total,
        "gflop_per_image": gf,
        "achieved_gflops": gf * len(imgs) / total,
    }


STRATEGIES: dict[str, dict[str, Any]] = {
    "grid 128+64 (58-box grid)": {"box_strategy": "grid", "box_sizes": (128, 64), "max_boxes": None},
    "grid 160+96": {"box_strategy": "grid", "box_sizes": (160, 96), "max_boxes": None},
    "features, uncapped": {"box_strategy": "features", "max_boxes": None},
    "features, 16 by saliency": {"box_strategy": "features", "max_boxes": 16, "feature_order": "saliency"},
    "features, 8 by mass": {"box_strategy": "features", "max_boxes": 8, "feature_order": "mass"},
    "features+grid, 16 by mass": {"max_boxes": 16},
    "features+grid, 12 by mass": {"max_boxes": 12},
    "features+grid, 10 by mass": {"max_boxes": 10},
    "features+grid, 8 by mass": {"max_boxes": 8},
    "default": {},
}


def compare_strategies(
    root: Path, n: int, sam: LiteMedSAM, seed: int = 1, names: list[str] | None = None
) -> dict[str, Any]:
    """Box-prompt strategies on n images with ground truth; each distinct box is decoded once per image.

    ``names``: the strategies to run (substrings of the keys of ``STRATEGIES``; default all).
    """
    import cv2

    chosen = {k: v for k, v in STRATEGIES.items() if not names or any(x in k for x in names)}
    if not chosen:
        raise SystemExit(f"no strategy matches {names}; known: {list(STRATEGIES)}")
    cache: dict[tuple[float, ...], tuple[torch.Tensor, torch.Tensor]] = {}
    decode_masks = sam.decode_masks

    def cached_decode_masks(
        features: torch.Tensor,
        boxes: np.ndarray,
        cells_hw: tuple[int, int] | None = None,
        min_pred_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``decode_masks`` from full-frame decodes cached by box (same filter and crop)."""
        keys = [tuple(np.round(b, 3).tolist()) for b in np.asarray(boxes)]
        new = [i for i, k in enumerate(keys) if k not in cache]
        if new:
            _, m, q = decode_masks(features, np.asarray(boxes)[new])  # the original: all boxes, whole frame
            for j, i in enumerate(new):
                cache[keys[i]] = (m[j], q[j])
        iou = torch.stack([cache[k][1] for k in keys])
        keep = (
            torch.ones_like(iou, dtype=torch.bool) if min_pred_iou is None else iou.clamp(0, 1) > min_pred_iou
        )
        kept = torch.nonzero(keep).flatten()
        fh, fw = cells_hw if cells_hw is not None else (FEATURE_SIZE, FEATURE_SIZE)
        logits = (
            torch.stack([cache[keys[int(i)]][0] for i in kept])
            if len(kept)
            else torch.zeros(0, INPUT_SIZE, INPUT_SIZE)
        )
        return kept, logits[:, : STRIDE * fh, : STRIDE * fw], iou

    props = {k: LiteMedSAMProposer(model=sam, **v) for k, v in chosen.items()}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in props}
    sam.decode_masks = cached_decode_masks  # type: ignore[method-assign]
    try:
        for id_, path in train_images(root, n, seed=seed):
            cache.clear()
            img = load_rgb(path)
            gt = load_gray(next((root / "masks").glob(f"{id_}.*"))) > 127
            enc = sam.encode([img])[0]
            h, w = enc.valid_hw
            g = cv2.resize(gt.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
            for k, p in props.items():
                _, masks = p.propose_with_masks(enc)
                best = 0.0
                if len(masks):
                    inter = (masks & g).reshape(len(masks), -1).sum(1)
                    union = (masks | g).reshape(len(masks), -1).sum(1)
                    best = float((inter / np.maximum(union, 1)).max())
                rows[k].append({"boxes": p.last_num_boxes, "patches": len(masks), "best_iou": best})
    finally:
        sam.decode_masks = decode_masks  # type: ignore[method-assign]
    out = {}
    for k, r in rows.items():
        best = np.array([x["best_iou"] for x in r])
        out[k] = {
            "boxes_per_image": float(np.mean([x["boxes"] for x in r])),
            "patches_per_image": float(np.mean([x["patches"] for x in r])),
            "best_mask_iou_mean": float(best.mean()),
            "hit_iou50": float((best > 0.5).mean()),
            "hit_iou75": float((best > 0.75).mean()),
            "options": {kk: list(v) if isinstance(v, tuple) else v for kk, v in STRATEGIES[k].items()},
        }
    return {"images": n, "seed": seed, "strategies": out}


def speed(args: argparse.Namespace, proposer: LiteMedSAMProposer) -> dict[str, Any]:
    """(a)-(c): the matmul rate, the optimised proposer and the naive baseline, printed and returned."""
    rate = matmul_gflops()
    print(f"matmul 4096^2 float32: {rate:.1f} GFLOP/s on {args.threads} threads")
    imgs = [load_rgb(p) for _, p in train_images(args.data, args.n)]
    opt = bench_optimised(imgs, proposer)
    rate_mid = matmul_gflops()
    opt["matmul_gflops_bracket"] = [rate, rate_mid]
    opt["fraction_of_bracket_mean_rate"] = opt["achieved_gflops"] / ((rate + rate_mid) / 2)
    nominal_gf = ENCODER_GFLOP + DECODER_GFLOP_PER_BOX * opt["boxes_per_image_mean"]
    opt["nominal_limit_images_per_s"] = rate / nominal_gf
    opt["ratio_to_nominal_limit"] = opt["images_per_s"] / opt["nominal_limit_images_per_s"]
    opt["counted_limit_images_per_s"] = rate / opt["gflop_per_image_mean"]
    opt["fraction_of_matmul_rate"] = opt["achieved_gflops"] / rate
    print(
        f"optimised: {opt['images_per_s']:.3f} img/s ({opt['seconds_per_image_median']:.2f} s/img median), "
        f"{opt['boxes_per_image_mean']:.1f} boxes -> {opt['patches_per_image_mean']:.1f} patches per image; "
        f"{opt['gflop_per_image_mean']:.1f} GFLOP/img counted (encoder {opt['encoder_gflop_per_image']:.1f}, "
        f"decoder {opt['decoder_gflop_per_box']:.2f}/box); achieved {opt['achieved_gflops']:.1f} GFLOP/s = "
        f"{opt['fraction_of_matmul_rate']:.0%} of the matmul rate"
    )
    print(
        f"  limit, nominal costs (75 + 3.6 x {opt['boxes_per_image_mean']:.1f} GFLOP): "
        f"{opt['nominal_limit_images_per_s']:.3f} img/s -> ratio {opt['ratio_to_nominal_limit']:.2f}; "
        f"limit, counted FLOPs: {opt['counted_limit_images_per_s']:.3f} img/s -> ratio "
        f"{opt['fraction_of_matmul_rate']:.2f}"
    )
    print(
        f"  matmul after this stage: {rate_mid:.1f} GFLOP/s; fraction of the mean of the two: "
        f"{opt['fraction_of_bracket_mean_rate']:.0%} (the machine may be shared: see load averages)"
    )
    result: dict[str, Any] = {"matmul_gflops": rate, "optimised": opt}
    if args.naive_n > 0:
        naive = bench_naive(imgs[: args.naive_n])
        naive["nominal_limit_images_per_s"] = rate / (
            ENCODER_GFLOP + DECODER_GFLOP_PER_BOX * naive["boxes_per_image"]
        )
        naive["ratio_to_nominal_limit"] = naive["images_per_s"] / naive["nominal_limit_images_per_s"]
        naive["fraction_of_matmul_rate"] = naive["achieved_gflops"] / rate
        rate_after_naive = matmul_gflops()
        naive["matmul_gflops_bracket"] = [rate_mid, rate_after_naive]
        naive["fraction_of_bracket_mean_rate"] = naive["achieved_gflops"] / (
            (rate_mid + rate_after_naive) / 2
        )
        result["naive"] = naive
        result["speedup_vs_naive"] = opt["images_per_s"] / naive["images_per_s"]
        print(
            f"naive: {naive['images_per_s']:.3f} img/s ({naive['boxes_per_image']} boxes, one per decoder call), "
            f"{naive['achieved_gflops']:.1f} GFLOP/s = {naive['fraction_of_matmul_rate']:.0%} of the matmul rate "
            f"({naive['fraction_of_bracket_mean_rate']:.0%} of the rate measured around it); "
            f"optimised is {result['speedup_vs_naive']:.1f}x faster"
        )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "kvasir-seg")
    ap.add_argument(
        "--n", type=int, default=20, help="images for the optimised proposer (0: skip the speed part)"
    )
    ap.add_argument("--naive-n", type=int, default=3, help="images for the naive baseline (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--compare-strategies", type=int, default=0, metavar="M", help="also compare box strategies"
    )
    ap.add_argument(
        "--strategies", nargs="+", default=None, metavar="NAME", help="only these strategies (substrings)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "patches_speed.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    if not (args.data / "images").is_dir():
        raise SystemExit(f"no images under {args.data}; pass --data PATH/kvasir-seg")

    load_start = os.getloadavg()
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "loadavg_start": load_start,
        }
    }
    proposer = LiteMedSAMProposer()
    if args.n > 0:
        result.update(speed(args, proposer))
    if args.compare_strategies > 0:
        cmp = compare_strategies(args.data, args.compare_strategies, proposer.model, names=args.strategies)
        result["strategies"] = cmp
        for k, v in cmp["strategies"].items():
            print(
                f"  {k:30s} {v['boxes_per_image']:5.1f} boxes  {v['patches_per_image']:5.1f} patches  "
                f"best IoU {v['best_mask_iou_mean']:.3f}  hit>0.5 {v['hit_iou50']:.2f}  hit>0.75 {v['hit_iou75']:.2f}"
            )
    rate_end = matmul_gflops()
    result["matmul_gflops_end"] = rate_end
    result["machine"]["loadavg_end"] = os.getloadavg()
    print(f"matmul again at the end: {rate_end:.1f} GFLOP/s; load average {load_start} -> {os.getloadavg()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
