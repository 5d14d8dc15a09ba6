#!/bin/bash
# Resume the cpu-endoscopy benchmark in the background, in the order that answers the open questions first:
# seeds 0-2 of the four OptiDEL arms (pad/context x optidel/optidel-cover), which decide the tile_fit default and
# optidel-cover, then seeds 1 and 2 of the baselines (random init, full, random, MedDEL), then the rest in run order.
#
#   bash benchmarks/resume_endoscopy.sh [SRC]   # SRC: a src/ folder to run (default: this checkout's src/)
#   WORKERS=2 bash benchmarks/resume_endoscopy.sh [SRC]   # two arms at once (optidel benchmark --workers)
#   FIRST='hard-only_r0.05_mae_s1 mosaic-random_r0.05_mae_s1' bash ...   # these arm patterns before the rest
#   ONLY='optidel+recon_* optidel+prototype_*' bash ...   # these arm patterns and nothing else
#
# Run it from the repository root (data_root ../shared/data resolves from there). To keep the code fixed while you
# edit, pass the src/ of a separate worktree: `git worktree add ../bench-tree 619ebea`, then
# `bash benchmarks/resume_endoscopy.sh ../bench-tree/src`. The grid has run from 619ebea since 2026-12-01: its
# context arms render tiles as that code did (a box longer than its frame is high letterboxed; later code cuts it),
# so finish the grid from that commit. Output: runs/benchmark-endoscopy (resumable; restore the
# small files first: `python benchmarks/keep_small_results.py benchmarks/cpu-endoscopy-runs runs/benchmark-endoscopy`),
# log: runs/benchmark-endoscopy.log, pid: runs/bench.pid.
set -euo pipefail
SRC=$(realpath "${1:-src}")
mkdir -p runs
# ONLY: just these arms. Otherwise FIRST's arms, then the four OptiDEL arms of seeds 0-2 (the pre-registered
# tile_fit / optidel-cover decision needs only them), then seeds 1-2 of the baselines, then the rest in run order.
ARGS=()
set -f  # the patterns are the runner's, not the shell's
for pattern in ${ONLY:-} ${FIRST:-}; do ARGS+=(--only "$pattern"); done
set +f
if [ -z "${ONLY:-}" ]; then
  ARGS+=(--only 'optidel*_r0.05_mae_s0' --only 'optidel*_r0.05_mae_s1' --only 'optidel*_r0.05_mae_s2')
  for s in 1 2; do
    ARGS+=(--only "random-init_vit_tiny_s$s" --only "full_r1_mae_s$s" --only "random_r0.05_mae_s$s"
           --only "meddel_r0.05_mae_s$s")
  done
  ARGS+=(--only '*')
fi
echo "==== resume $(date -u) from $SRC, ${WORKERS:-1} worker(s) ====" >> runs/benchmark-endoscopy.log
HF_HUB_OFFLINE=1 PYTHONPATH="$SRC" nohup nice -n 10 .venv/bin/python -m optidel.cli benchmark \
  --config cpu-endoscopy --out runs/benchmark-endoscopy --workers "${WORKERS:-1}" "${ARGS[@]}" >> runs/benchmark-endoscopy.log 2>&1 &
echo $! > runs/bench.pid
echo "benchmark running as pid $(cat runs/bench.pid); log runs/benchmark-endoscopy.log"
