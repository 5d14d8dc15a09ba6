"""The one named logger of optidel, and per-run log files.

Library code logs through ``logger``; it never prints. The CLI attaches a rich console handler, and every run
directory gets a ``log.txt`` through :func:`attach_run_log`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import platform
import subprocess
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
    # which code wrote what follows (each start or resume of a run appends its own line); to this file only
    handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, code_provenance(), None, None))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


@functools.lru_cache(maxsize=1)
def code_provenance() -> str:
    """``optidel 0.1.0 (git 6b4b97b, uncommitted changes), python 3.11.7, torch 2.14.1``: the code a run used.

    The git part is there when optidel runs from a git checkout that tracks this file (an editable install or
    ``PYTHONPATH=src``) and git answers within 5 s; "uncommitted changes" when tracked files differ from that commit. Written by hand because
    no library here records this: ``importlib.metadata`` knows the version, not the commit.
    """
    from optidel import __version__

    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    text = f"optidel {__version__}"
    # this file tracked in the checkout: not an installed copy inside some other project's repository
    if git("ls-files", "--error-unmatch", Path(__file__).name) is not None and (
        commit := git("rev-parse", "--short", "HEAD")
    ):
        dirty = git("status", "--porcelain", "--untracked-files=no")
        text += f" (git {commit}{', uncommitted changes' if dirty else ''})"
    text += f", python {platform.python_version()}"
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        text += f", torch {importlib.metadata.version('torch')}"
    return text


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
