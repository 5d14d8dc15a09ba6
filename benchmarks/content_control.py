"""Does the pre-training data's content matter in a benchmark's regime? A control run beside the grid.

Pre-trains on N images of smooth random colour noise (no medical content; N = the size of the grid's random 5% set
of that seed) with exactly the pre-training settings of that arm, probes the encoder with exactly that arm's
fine-tuning settings (every dataset x label fraction), and prints each cell's test mIoU beside random init, random
5% and the full pool of the same seed, with paired bootstrap differences over the test images
(``optidel.metrics.bootstrap``). If noise probes like real frames, what the 5% set holds cannot move the result much
in this regime, whichever way it is chosen. A grid can carry this control itself (the selection method ``noise``,
whose tables then say whether the content shows); this script adds it beside a grid that was registered without it.

    python benchmarks/content_control.py runs/benchmark-endoscopy --seed 0 --out runs/content-control
    python benchmarks/content_control.py runs/benchmark-endoscopy --summary 0 1 2 --average busi kvasir-seg
    python benchmarks/content_control.py runs/benchmark-default --preset cpu-default --out runs/cc-default \
        --summary 0 1 2 --also optidel_r0.05_mae       # noise against OptiDEL's arm too
    python benchmarks/content_control.py runs/benchmark-endoscopy --ssl simclr --seed 0 --out runs/content-control-simclr

``--ssl`` picks the pre-training method whose arms are the references (``random_r0.05_<ssl>_s<seed>``,
``full_r1_<ssl>_s<seed>`` and the random-init encoder of that method's architecture). Where the benchmark folder
holds only the small files of its finished arms (restored by ``keep_small_results.py``), the pre-training settings
and the set size come from the preset (``--preset``, the benchmark's shipped name or YAML) instead of the arm's folders.

``--summary SEEDS`` runs nothing: it pairs the finished seeds' probes with the grid's (mean over seeds, paired
bootstrap over seeds and test images), per cell and averaged over the ``--average`` datasets per label fraction;
``--also ARM`` adds any other arm of the grid to the pairs.

Resumable: a finished pre-training or probe is kept (``DONE``); run the same command again after a kill. It runs
the ``optidel`` CLI of the Python that runs it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from optidel.bench.config import BenchmarkConfig
from optidel.bench.grid import Arm
from optidel.bench.results import per_image_counts
from optidel.bench.runner import BenchmarkRunner
from optidel.bench.shipped import config_path
from optidel.config import layer_config, save_config
from optidel.metrics.bootstrap import mean_paired_miou_difference, miou_from_counts, paired_miou_difference
from optidel.select.config import n_target_images
from optidel.select.outputs.noise import noise_image

SIZE = 256
# the random-init reference of each method: its default architecture
ARCH = {"mae": "vit_tiny", "simclr": "resnet18"}


def references(ssl: str) -> tuple[str, str, str]:
    """Run-folder templates of the references: random init, random 5% and the full pool of ``ssl``."""
    return (f"random-init_{ARCH[ssl]}_s{{seed}}", f"random_r0.05_{ssl}_s{{seed}}", f"full_r1_{ssl}_s{{seed}}")


def write_noise(folder: Path, n: int, seed: int) -> None:
    """``n`` noise PNGs in ``folder`` (kept when all are there)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == n:
        return
    rng = np.random.default_rng([seed, 0xC0])
    for i in range(n):
        Image.fromarray(noise_image(SIZE, rng)).save(folder / f"noise_{i:05d}.png")


def optidel(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "optidel.cli", *map(str, args)], check=True)


def counts(run: Path) -> dict[str, np.ndarray]:
    """``id -> (4,) tp, fp, fn, tn`` of a finished fine-tuning (its ``per_image.csv``)."""
    found = per_image_counts(run)
    if found is None:
        sys.exit(f"error: {run}/per_image.csv: missing or without tp/fp/fn/tn columns")
    return found


def stacked(runs: list[Path], ids: list[str]) -> np.ndarray:
    """(S, I, 4) confusion counts of one cell's runs (a run per seed), images in ``ids`` order."""
    per_run = [counts(r) for r in runs]  # each per_image.csv read once
    return np.stack([np.stack([c[i] for i in ids]) for c in per_run])


def summary(bench: Path, out: Path, seeds: list[int], average: list[str], ssl: str, also: list[str]) -> None:
    """Mean mIoU over ``seeds`` per cell, noise against random 5%, the full pool and each arm of ``also`` (run-folder
    names without the seed, e.g. ``optidel_r0.05_mae``), paired, and the average over the ``average`` datasets."""
    refs = references(ssl)
    others = {"random 5%": refs[1], "full": refs[2]} | {a: f"{a}_s{{seed}}" for a in also}
    cells = sorted(p.name for p in (out / f"finetune_s{seeds[0]}").iterdir() if (p / "DONE").is_file())
    names = ("noise", refs[0], *others.values())
    print(f"seeds {seeds}: mean test mIoU; noise - B paired over seeds and test images (95%, * excludes 0)")
    print(
        "| cell | "
        + " | ".join(n.split("_s{")[0] for n in names)
        + " | "
        + " | ".join(f"noise - {o}" for o in others)
        + " |"
    )
    print("|---|" + "---|" * (len(names) + len(others)))
    pairs: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for cell in cells:
        runs = {"noise": [out / f"finetune_s{s}" / cell for s in seeds]}
        runs.update({r: [bench / "finetune" / r.format(seed=s) / cell for s in seeds] for r in names[1:]})
        ids = sorted(counts(runs["noise"][0]))
        arrays = {k: stacked(v, ids) for k, v in runs.items()}
        means = [f"{miou_from_counts(arrays[n].sum(1)).mean():.3f}" for n in names]
        noise, bs = arrays["noise"], [arrays[r] for r in others.values()]
        d = [paired_miou_difference(noise, b) for b in bs]
        print(f"| {cell} | " + " | ".join(means) + " | " + " | ".join(_ci(x) for x in d) + " |")
        if cell.split("_lf")[0] in average:
            pairs.setdefault(cell.split("_lf")[1], []).append((noise, *bs))
    for lf, sets in pairs.items():
        d = [mean_paired_miou_difference([(n, b[i]) for n, *b in sets]) for i in range(len(others))]
        print(
            f"average of {', '.join(average)}, label fraction {lf}: "
            + "; ".join(f"noise - {o} {_ci(x)}" for o, x in zip(others, d, strict=True))
        )


def _ci(x: Any) -> str:
    return f"{x.estimate:+.3f} [{x.low:+.3f}, {x.high:+.3f}]" + (" *" if x.excludes_zero() else "")


def pretrain_settings(bench: Path, preset: str, ssl: str, seed: int, out: Path) -> tuple[Path, int]:
    """(the pre-training config to copy, the set size) of ``random_r0.05_<ssl>_s<seed>``: from its folders, or else
    rebuilt by the preset's runner (written to ``out/like_s<seed>.yaml``; the size is the preset's 5% of its pool)."""
    arm = f"random_r0.05_{ssl}_s{seed}"
    own = bench / "pretrain" / arm / "config.yaml"
    images = list((bench / "select" / f"random_r0.05_s{seed}" / "images").glob("*"))
    if own.is_file() and images:
        return own, len(images)
    path = config_path(preset)
    runner = BenchmarkRunner(layer_config(BenchmarkConfig, config_file=path), bench, config_file=path)
    pool = runner._pool_size()
    if pool is None:
        sys.exit(f"error: {path}: its pool cannot be listed, so the 5% set size is unknown")
    out.mkdir(parents=True, exist_ok=True)
    like = out / f"like_s{seed}.yaml"
    save_config(runner.pretrain_config(Arm("random", 0.05, ssl, seed)), like)
    return like, n_target_images(pool, 0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="the benchmark folder (holds select/, pretrain/, finetune/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ssl", choices=sorted(ARCH), default="mae", help="the pre-training method of the references"
    )
    ap.add_argument(
        "--preset", default="cpu-endoscopy", help="the benchmark's config (where its folders are gone)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/content-control"))
    ap.add_argument(
        "--summary", type=int, nargs="+", metavar="SEED", help="summarise these finished seeds only"
    )
    ap.add_argument("--average", nargs="+", default=["busi", "kvasir-seg"], help="datasets of the average")
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="ARM",
        help="with --summary: pair noise with this arm of the grid too (its run folder without the seed, e.g. "
        "optidel_r0.05_mae); repeatable",
    )
    args = ap.parse_args()
    if args.summary:
        summary(args.bench, args.out, args.summary, args.average, args.ssl, args.also)
        return
    seed, out, bench = args.seed, args.out, args.bench
    refs = references(args.ssl)
    arm = refs[1].format(seed=seed)
    pre = out / f"pretrain_s{seed}"
    like, n = pretrain_settings(bench, args.preset, args.ssl, seed, out)
    noise = out / f"noise_s{seed}"
    write_noise(noise, n, seed)

    if not (pre / "DONE").is_file():
        resume = ["--resume"] if (pre / "checkpoint.pt").is_file() else []
        optidel("pretrain", "--config", like, "--data", noise, "--out", pre, *resume)

    cells = sorted(p.name for p in (bench / "finetune" / arm).iterdir() if (p / "DONE").is_file())
    print(f"noise: {n} images ({noise}); pre-training {pre}; {len(cells)} probes as {arm}'s")
    print("| cell | noise | " + " | ".join(r.format(seed=seed) for r in refs) + " | noise - random 5% |")
    print("|---|---|" + "---|" * len(refs) + "---|")
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
        ref = [counts(bench / "finetune" / r.format(seed=seed) / cell) for r in refs]
        ids = sorted(mine)
        a = np.stack([mine[i] for i in ids])[None]
        cols = [f"{miou_from_counts(a.sum(1))[0]:.3f}"]
        for r in ref:
            cols.append(f"{miou_from_counts(np.stack([r[i] for i in ids]).sum(0))[()]:.3f}")
        diff = paired_miou_difference(a, np.stack([ref[1][i] for i in ids])[None], seed=seed)
        star = " *" if diff.excludes_zero() else ""
        print(
            f"| {cell} | "
            + " | ".join(cols)
            + f" | {diff.estimate:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]{star} |"
        )


if __name__ == "__main__":
    main()
