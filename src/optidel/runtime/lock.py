"""One writer per run folder: an exclusive lock file ``RUN/.lock`` holding the holder's pid, host and command.

The lock is an ``fcntl.flock`` on that file, so the kernel releases it when its process dies, even by SIGKILL: a second
run on a folder in use fails at once with :class:`RunFolderLocked` naming the holder, and a lock left behind by a dead
process is taken over with a warning that names it. The file is removed on a clean exit. Local filesystems only
(``flock`` on NFS depends on the server); the file's content is for people, the flock is what counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optidel.log import logger
from optidel.runtime.errors import OptidelError, os_errors

LOCK_NAME = ".lock"


class RunFolderError(OptidelError):
    """The output folder cannot be a run folder (e.g. it is a file)."""

    exit_code = 2


class RunFolderLocked(OptidelError):
    """Another live process writes into this run folder."""

    exit_code = 1


def _describe(info: dict[str, Any]) -> str:
    parts = [f"pid {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("command"):
        parts.append(f"running `{info['command']}`")
    if info.get("started"):
        parts.append(f"since {info['started']}")
    return ", ".join(parts)


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        info = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The holder recorded in ``run_dir/.lock`` if a live process holds it, else None."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str = "") -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the body (creates ``run_dir``); yields the lock file's path.

    Raises:
        RunFolderLocked: a live process holds it; the message names its pid, host, command and start time.
        RunFolderError: ``run_dir`` is a file.
        optidel.runtime.errors.RunFileError: the folder or lock file cannot be created (read-only, permissions).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} exists and is not a folder; choose another output folder")
    path = run_dir / LOCK_NAME
    with os_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    while True:
        with os_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunFolderLocked(
                f"{run_dir} is in use by another optidel run ({_describe(holder)}); wait for it to finish or "
                "choose another output folder"
            ) from None
        # the file may have been removed by its previous holder between our open and our flock: lock the file
        # that is at the path now, or two runs could each hold a lock on a different inode
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        stale = _read(fd)
        if stale:
            logger.warning(
                "%s: taking over the lock left by a process that is no longer running (%s)",
                run_dir,
                _describe(stale),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
