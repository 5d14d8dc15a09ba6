"""The run-folder lock: a second writer fails at once naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from optidel.runtime.lock import LOCK_NAME, RunFolderLocked, lock_holder, run_lock


def test_second_writer_in_another_process_is_refused_with_the_holder_named(tmp_path):
    with run_lock(tmp_path / "run", command="optidel select") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert lock_holder(tmp_path / "run")["command"] == "optidel select"
        code = textwrap.dedent(
            f"""
            from optidel.runtime.lock import run_lock, RunFolderLocked
            try:
                with run_lock({str(tmp_path / "run")!r}):
                    print("ACQUIRED")
            except RunFolderLocked as e:
                print("REFUSED", e)
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        assert out.startswith("REFUSED")
        assert f"pid {os.getpid()}" in out and "optidel select" in out
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert lock_holder(tmp_path / "run") is None


def test_second_writer_in_the_same_process_is_refused(tmp_path):
    with run_lock(tmp_path), pytest.raises(RunFolderLocked, match="in use"), run_lock(tmp_path):
        pass


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    code = textwrap.dedent(
        f"""
        import os, time
        from optidel.runtime.lock import run_lock
        with run_lock({str(tmp_path)!r}, command="optidel pretrain"):
            print("HELD", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HELD"
        with pytest.raises(RunFolderLocked, match=f"pid {proc.pid}"), run_lock(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / LOCK_NAME).is_file()  # left behind by the killed holder
    with caplog.at_level(logging.WARNING, logger="optidel"), run_lock(tmp_path):
        pass
    assert f"pid {proc.pid}" in caplog.text and "no longer running" in caplog.text


def test_a_file_is_not_a_run_folder(tmp_path):
    from optidel.runtime.lock import RunFolderError

    f = tmp_path / "out"
    f.write_text("")
    with pytest.raises(RunFolderError, match="exists and is not a folder"), run_lock(f):
        pass
