"""Helpers for the worker processes optidel starts (the patch stage's, the benchmark's ``--workers``).

Hand-written because the standard library has no portable "die with my parent": a worker started by a
``ProcessPoolExecutor`` outlives a parent killed with SIGKILL (or SIGTERM, which skips the executor's shutdown) and
would keep writing into folders that a restarted run then also writes into.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["cpu_cores", "exit_with_parent", "worker_signals"]


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def exit_with_parent() -> None:
    """Exit this process as soon as its parent is gone (a daemon thread polls the parent pid twice a second)."""
    threading.Thread(target=_watch, args=(os.getppid(),), daemon=True).start()


def worker_signals() -> None:
    """A worker's setup: Ctrl-C is the parent's to handle, and the worker exits with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
