"""OS errors become one line naming the path (and the free space when the disk is full)."""

from __future__ import annotations

import errno

import pytest
import typer
from typer.testing import CliRunner

from optidel.runtime.errors import OptidelError, one_line_errors, os_error_message, os_errors


def test_disk_full_message_names_path_and_free_space(tmp_path):
    msg = os_error_message(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a" / "ckpt.pt")
    assert "no space left on device" in msg and "ckpt.pt" in msg and "free on" in msg and "\n" not in msg


def test_os_errors_wraps_into_optidel_error(tmp_path):
    with pytest.raises(OptidelError, match="permission denied"), os_errors(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))


def test_cli_decorator_prints_one_line_and_no_traceback():
    app = typer.Typer()

    @app.command()
    @one_line_errors
    def cmd(path: str = "p") -> None:
        """A command that runs out of disk."""
        raise OSError(errno.ENOSPC, "No space left on device", path)

    @app.command()
    def other() -> None:
        pass

    res = CliRunner().invoke(app, ["cmd", "--path", "/tmp/somewhere/file.bin"])
    assert res.exit_code == 1
    assert "no space left on device writing /tmp/somewhere/file.bin" in res.output
    assert "Traceback" not in res.output
