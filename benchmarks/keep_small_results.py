"""Copy the small files of a benchmark folder (what its tables are made from) to another folder, or back.

A benchmark recognises a finished fine-tuning from its ``DONE`` and ``metrics.json`` alone (``optidel.bench.grid``),
and its tables read only small files (``optidel.bench.results``). So a long benchmark that runs over several sessions,
on machines that do not keep ``runs/``, can carry what it finished in a few hundred KB of tracked files and resume:

    python benchmarks/keep_small_results.py runs/benchmark-endoscopy benchmarks/cpu-endoscopy-runs     # save
    python benchmarks/keep_small_results.py benchmarks/cpu-endoscopy-runs runs/benchmark-endoscopy     # restore
    optidel benchmark --config cpu-endoscopy --out runs/benchmark-endoscopy                           # resume

Copied: every finished fine-tuning's ``DONE``, ``metrics.json``, ``per_image.csv`` and ``config.yaml``; every finished
selection's ``vinfo.json`` (the V-information table); every finished pre-training's loss curve ``metrics.csv``, to
``pretrain-curves/<arm>/`` (not under ``pretrain/``, where a folder without its checkpoint would stand in the way of a
rerun; a restore leaves them where they are); the benchmark's ``config.yaml``, ``results.csv``, ``results.md`` and ``cells.md``. Not copied: selection and pre-training ``DONE`` markers (a restored marker without its images or
encoder would make the runner skip a stage that an unfinished fine-tuning still needs), encoders, checkpoints,
images and caches. Existing files at the destination are overwritten.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEEP = {
    "finetune": ("DONE", "metrics.json", "per_image.csv", "config.yaml"),
    "select": ("vinfo.json",),
}
TOP = ("config.yaml", "results.csv", "results.md", "cells.md")
CURVES = "pretrain-curves"  # where finished pre-trainings' metrics.csv go (see the module docstring)


def finished_runs(root: Path, stage: str) -> list[Path]:
    """Run folders of ``stage`` under ``root`` that hold a DONE marker, and, for a stage whose DONE is not kept (the
    selections, see the module docstring), the kept copies of finished ones: folders holding only kept names.
    Without those a restore would leave every selection's ``vinfo.json`` behind.
    """
    done = {d.parent for d in (root / stage).rglob("DONE") if d.is_file()}
    kept = set(KEEP.get(stage, ()))
    if kept and "DONE" not in kept:
        folders = {f.parent for name in kept for f in (root / stage).rglob(name) if f.is_file()}
        done |= {d for d in folders if {f.name for f in d.iterdir()} <= kept}
    return sorted(done)


def copy_small(src: Path, dst: Path) -> int:
    """Copy the small files of ``src`` into ``dst``; returns how many files were copied."""
    n = 0
    for stage, names in KEEP.items():
        for run in finished_runs(src, stage):
            target = dst / run.relative_to(src)
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                if (run / name).is_file():
                    shutil.copy2(run / name, target / name)
                    n += 1
    for run in finished_runs(src, "pretrain"):
        if (run / "metrics.csv").is_file():
            target = dst / CURVES / run.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / "metrics.csv", target / "metrics.csv")
            n += 1
    for name in TOP:
        if (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="benchmark folder to copy from")
    ap.add_argument("dst", type=Path, help="folder to copy into")
    args = ap.parse_args()
    print(f"{copy_small(args.src, args.dst)} files copied from {args.src} to {args.dst}")


if __name__ == "__main__":
    main()
