"""User-facing errors: one line that names the file and the problem, never a traceback.

Every error a user can cause or fix (bad input, a folder in use, a full disk) is an :class:`OptidelError` or is turned
into one here; the CLI (``optidel.cli``) prints ``error: <message>`` and exits with the error's ``exit_code``.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class OptidelError(Exception):
    """An error the user can act on; ``str(e)`` is one line naming the file or folder and the problem.

    Attributes:
        exit_code: the CLI's exit status for it (2: bad input or usage, 1: the run failed).
    """

    exit_code: int = 1


def _existing_parent(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_space(path: str | Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing parent); None if unknown."""
    try:
        return shutil.disk_usage(_existing_parent(Path(path))).free
    except OSError:
        return None


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def os_error_message(exc: OSError, path: str | Path | None = None) -> str:
    """One line for an OS error: what failed, on which path, and the free space when the disk is the problem.

    Example: ``no space left on device writing runs/x/checkpoint.pt (12.0 MiB free on /work); free space and rerun
    the same command: it resumes``.
    """
    where = path if path is not None else (exc.filename or "?")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_space(where)
        room = f" ({_human(free)} free on {_existing_parent(Path(where))})" if free is not None else ""
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return (
            f"{what} writing {where}{room}; free space and rerun the same command (pretrain: with --resume): "
            "the finished work is kept"
        )
    if exc.errno == errno.EROFS:
        return f"read-only file system: cannot write {where}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}"
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {where}"


class RunFileError(OptidelError, OSError):
    """An OS error on a file optidel reads or writes (disk full, read-only, permission), as one line.

    Still an ``OSError`` (same ``errno``), so code that handles OS errors keeps working; ``str()`` is
    :func:`os_error_message`.
    """

    def __init__(self, exc: OSError, path: str | Path | None = None) -> None:
        where = exc.filename or path
        super().__init__(exc.errno, exc.strerror or str(exc), None if where is None else str(where))
        self.message = os_error_message(exc, where)

    def __str__(self) -> str:
        return self.message


@contextmanager
def os_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into a :class:`RunFileError` naming ``path`` (disk full: with free space)."""
    try:
        yield
    except OptidelError:
        raise
    except OSError as e:
        raise RunFileError(e, path) from e


def one_line_errors(fn: F) -> F:
    """Decorate a CLI command: an :class:`OptidelError` or ``OSError`` becomes ``error: <one line>`` and an exit code.

    The signature is kept (``functools.wraps``), so typer still sees the command's options.
    """
    import typer
    from rich.markup import escape

    from optidel.runtime import progress

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OptidelError as e:
            progress.console.print(
                f"[red]error:[/red] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True
            )
            raise typer.Exit(e.exit_code) from e
        except OSError as e:
            progress.console.print(
                f"[red]error:[/red] {escape(os_error_message(e))}",
                markup=True,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from e

    return wrapper  # type: ignore[return-value]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
