"""The one named logger of optidel, and per-run log files.

Library code logs through ``logger``; it never prints. The CLI attaches a rich console handler, and every run
directory gets a ``log.txt`` through :func:`attach_run_log`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("optidel")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def attach_run_log(run_dir: str | Path, filename: str = "log.txt") -> logging.Handler:
    """Append optidel's log records to ``run_dir/filename``; returns the handler (remove it when done)."""
    path = Path(run_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    for h in logger.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve():
            return h
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def detach_run_log(handler: logging.Handler) -> None:
    logger.removeHandler(handler)
    handler.close()


def attach_console(level: int, console: Any) -> None:
    """Log to a rich ``console`` at ``level`` (once per process): the CLI's handler, mirrored by worker processes."""
    from rich.logging import RichHandler

    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setLevel(level)
        logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))


def console_level() -> int | None:
    """The level of this process's console handler (:func:`attach_console`), None without one."""
    from rich.logging import RichHandler

    return next((h.level for h in logger.handlers if isinstance(h, RichHandler)), None)
