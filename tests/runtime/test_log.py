"""Run logs: every start of a run writes which code ran into its log file, and only there."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

import optidel
from optidel.log import attach_run_log, code_provenance, detach_run_log, logger


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(optidel.__file__).parent), *args],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_head() -> str | None:
    """The commit of the checkout optidel runs from, None for an installed copy (its files untracked)."""
    if _git("ls-files", "--error-unmatch", "log.py") is None:
        return None
    return _git("rev-parse", "--short", "HEAD")


def test_code_provenance_names_version_commit_and_python() -> None:
    text = code_provenance()
    assert text.startswith(f"optidel {optidel.__version__}") and ", python 3." in text
    head = _git_head()
    if head is None:
        assert "git" not in text  # an installed copy, not a checkout: no commit to name
    else:
        assert f"(git {head}" in text


def test_each_attach_writes_the_provenance_line_to_that_file_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="optidel")
    for _ in range(2):  # a run and its resume
        handler = attach_run_log(tmp_path)
        logger.info("working")
        detach_run_log(handler)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [code_provenance(), "working"] * 2
    assert all(code_provenance() not in r.getMessage() for r in caplog.records)  # the console never shows it
