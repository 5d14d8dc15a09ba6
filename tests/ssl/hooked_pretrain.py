"""Run ``optidel.ssl.train.pretrain`` with test callbacks, as a subprocess (plain ``python`` or under ``torchrun``).

Usage: ``python hooked_pretrain.py CONFIG.yaml OUT [--delay SECONDS] [--rank-state]``

``--delay`` sleeps after every step, so a test can kill the run between two checkpoints; ``--rank-state`` makes
every rank write ``OUT/debug/rank<r>.json`` with a hash of its final parameters (DDP ranks must agree).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from optidel.config import load_config
from optidel.runtime.atomic import atomic_write_json
from optidel.ssl.config import PretrainConfig
from optidel.ssl.loop import TrainState, parameter_digest
from optidel.ssl.train import pretrain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rank-state", action="store_true")
    args = parser.parse_args()

    def on_step(done: int, state: TrainState) -> None:
        if args.delay:
            time.sleep(args.delay)
        if args.rank_state and done == state.cfg.steps:
            rank = state.ctx.rank
            atomic_write_json(
                args.out / "debug" / f"rank{rank}.json",
                {"rank": rank, "params_sha256": parameter_digest(state.model)},
            )

    pretrain(load_config(PretrainConfig, args.config), args.out, on_step=on_step)


if __name__ == "__main__":
    main()
