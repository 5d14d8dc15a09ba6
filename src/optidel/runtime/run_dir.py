"""Run directories: every command writes its resolved config, logs, metrics and a ``DONE`` marker written last."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optidel.runtime.atomic import atomic_write_text

DONE = "DONE"


def mark_done(run_dir: str | Path, info: dict[str, Any] | None = None) -> None:
    """Write ``run_dir/DONE`` (last, atomically) so a rerun knows the stage finished."""
    atomic_write_text(Path(run_dir) / DONE, json.dumps(info or {}, sort_keys=True, default=str) + "\n")


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / DONE).is_file()
