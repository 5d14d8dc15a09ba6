"""Does the pre-training data's content matter in a benchmark's regime? A control run beside the grid.

Pre-trains on N images of smooth random colour noise (no medical content; N = the size of the grid's random 5% set
of that seed) with exactly the pre-training settings of that arm, probes the encoder with exactly that arm's
fine-tuning settings (every dataset x label fraction), and prints each cell's test mIoU beside random init, random
5% and the full pool of the same seed, with paired bootstrap differences over the test images
(``optidel.metrics.bootstrap``). If noise probes like real frames, what the 5% set holds cannot move the result much
in this regime, whichever way it is chosen.

    python benchmarks/content_control.py runs/benchmark-endoscopy --seed 0 --out runs/content-control
    python benchmarks/content_control.py runs/benchmark-endoscopy --summary 0 1 2 --average busi kvasir-seg

``--summary SEEDS`` runs nothing: it pairs the finished seeds' probes with the grid's (mean over seeds, paired
bootstrap over seeds and test images), per cell and averaged over the ``--average`` datasets per label fraction.

Resumable: a finished pre-training or probe is kept (``DONE``); run the same command again after a kill. It runs
the ``optidel`` CLI of the Python that runs it.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from optidel.metrics.bootstrap import mean_paired_miou_difference, miou_from_counts, paired_miou_difference

SIZE = 256
REFERENCES = ("random-init_vit_tiny_s{seed}", "random_r0.05_mae_s{seed}", "full_r1_mae_s{seed}")


def noise_image(rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: random colour fields summed over three scales (coarse blobs to fine grain)."""
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    for sigma, weight in ((SIZE / 8, 1.0), (SIZE / 32, 0.5), (1.5, 0.25)):
        field = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE, 3)).astype(np.float32), sigma=(sigma, sigma, 0))
        img += weight * field / (np.abs(field).max() + 1e-6)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return (img * 255).astype(np.uint8)


def write_noise(folder: Path, n: int, seed: int) -> None:
    """``n`` noise PNGs in ``folder`` (kept when all are there)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == n:
        return
    rng = np.random.default_rng([seed, 0xC0])
    for i in range(n):
        Image.fromarray(noise_image(rng)).save(folder / f"noise_{i:05d}.png")


def optidel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "optidel.cli", *map(str, args)], check=True)


def counts(run: Path) -> dict[str, np.ndarray]:
    """``id -> (4,) tp, fp, fn, tn`` from a fine-tuning's ``per_image.csv``."""
    with (run / "per_image.csv").open() as f:
        return {r["id"]: np.array([int(r[k]) for k in ("tp", "fp", "fn", "tn")]) for r in csv.DictReader(f)}


def stacked(runs: list[Path], ids: list[str]) -> np.ndarray:
    """(S, I, 4) confusion counts of one cell's runs (a run per seed), images in ``ids`` order."""
    per_run = [counts(r) for r in runs]  # each per_image.csv read once
    return np.stack([np.stack([c[i] for i in ids]) for c in per_run])


def summary(bench: Path, out: Path, seeds: list[int], average: list[str]) -> None:
    """Mean mIoU over ``seeds`` per cell, noise against random 5% and the full pool (paired), and the average."""
    arm = "random_r0.05_mae_s{seed}"
    cells = sorted(p.name for p in (out / f"finetune_s{seeds[0]}").iterdir() if (p / "DONE").is_file())
    names = ("noise", *REFERENCES)
    print(f"seeds {seeds}: mean test mIoU; noise - B paired over seeds and test images (95%, * excludes 0)")
    print(
        "| cell | " + " | ".join(n.split("_s{")[0] for n in names) + " | noise - random 5% | noise - full |"
    )
    print("|---|" + "---|" * (len(names) + 2))
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for cell in cells:
        runs = {"noise": [out / f"finetune_s{s}" / cell for s in seeds]}
        runs.update({r: [bench / "finetune" / r.format(seed=s) / cell for s in seeds] for r in REFERENCES})
        ids = sorted(counts(runs["noise"][0]))
        arrays = {k: stacked(v, ids) for k, v in runs.items()}
        means = [f"{miou_from_counts(arrays[n].sum(1)).mean():.3f}" for n in names]
        noise, rand, full = arrays["noise"], arrays[arm], arrays[REFERENCES[2]]
        d = [paired_miou_difference(noise, b) for b in (rand, full)]
        print(f"| {cell} | " + " | ".join(means) + " | " + " | ".join(_ci(x) for x in d) + " |")
        if cell.split("_lf")[0] in average:
            pairs.setdefault(cell.split("_lf")[1], []).append((noise, rand, full))
    for lf, sets in pairs.items():
        d = [mean_paired_miou_difference([(n, b[i]) for n, *b in sets]) for i in (0, 1)]
        print(
            f"average of {', '.join(average)}, label fraction {lf}: noise - random 5% {_ci(d[0])}; "
            f"noise - full {_ci(d[1])}"
        )


def _ci(x: Any) -> str:
    return f"{x.estimate:+.3f} [{x.low:+.3f}, {x.high:+.3f}]" + (" *" if x.excludes_zero() else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="the benchmark folder (holds select/, pretrain/, finetune/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/content-control"))
    ap.add_argument(
        "--summary", type=int, nargs="+", metavar="SEED", help="summarise these finished seeds only"
    )
    ap.add_argument("--average", nargs="+", default=["busi", "kvasir-seg"], help="datasets of the average")
    args = ap.parse_args()
    if args.summary:
        summary(args.bench, args.out, args.summary, args.average)
        return
    seed, out, bench = args.seed, args.out, args.bench
    arm = f"random_r0.05_mae_s{seed}"
    n = len(list((bench / "select" / f"random_r0.05_s{seed}" / "images").glob("*")))
    if n == 0:
        sys.exit(
            f"error: {bench}/select/random_r0.05_s{seed}/images: no images (run the benchmark's arm first)"
        )
    noise = out / f"noise_s{seed}"
    write_noise(noise, n, seed)

    pre = out / f"pretrain_s{seed}"
    if not (pre / "DONE").is_file():
        resume = ["--resume"] if (pre / "checkpoint.pt").is_file() else []
        optidel(
            "pretrain",
            "--config",
            bench / "pretrain" / arm / "config.yaml",
            "--data",
            noise,
            "--out",
            pre,
            *resume,
        )

    cells = sorted(p.name for p in (bench / "finetune" / arm).iterdir() if (p / "DONE").is_file())
    print(f"noise: {n} images ({noise}); pre-training {pre}; {len(cells)} probes as {arm}'s")
    print(
        "| cell | noise | " + " | ".join(r.format(seed=seed) for r in REFERENCES) + " | noise - random 5% |"
    )
    print("|---|---|" + "---|" * len(REFERENCES) + "---|")
    for cell in cells:
        run = out / f"finetune_s{seed}" / cell
        if not (run / "DONE").is_file():
            optidel(
                "finetune",
                "--config",
                bench / "finetune" / arm / cell / "config.yaml",
                "--encoder",
                pre / "encoder.safetensors",
                "--out",
                run,
            )
        mine = counts(run)
        refs = [counts(bench / "finetune" / r.format(seed=seed) / cell) for r in REFERENCES]
        ids = sorted(mine)
        a = np.stack([mine[i] for i in ids])[None]
        cols = [f"{miou_from_counts(a.sum(1))[0]:.3f}"]
        for ref in refs:
            cols.append(f"{miou_from_counts(np.stack([ref[i] for i in ids]).sum(0))[()]:.3f}")
        diff = paired_miou_difference(a, np.stack([refs[1][i] for i in ids])[None], seed=seed)
        star = " *" if diff.excludes_zero() else ""
        print(
            f"| {cell} | "
            + " | ".join(cols)
            + f" | {diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]{star} |"
        )


if __name__ == "__main__":
    main()
