"""The earlier cases, kept in the reliability package: SIGKILL + resume, and bad images named in one line.

The full kill test (kill between checkpoints, byte-identical metrics and weights, no step twice) lives in
tests/ssl/test_train.py; here the kill also leaves the dead run's lock behind, which the resumed run takes over with a
warning naming the dead holder, and still ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from optidel.runtime.lock import LOCK_NAME, lock_holder
from reliability.helpers import cli_env, invoke, one_line_error, pretrain_args, same_tensors

# `optidel ARGS` that stops after step 4 (one checkpoint, at step 3, is on disk) and waits to be killed
_STOP_AFTER_STEP_4 = """
import sys, time
import optidel.ssl.train as train
real = train.train_steps
def park(done, state):
    if done == 4:
        print("PARKED", flush=True)
        time.sleep(600)
train.train_steps = lambda state, on_step=None: real(state, park)
from optidel.cli import main
main()
"""


def test_sigkill_leaves_a_stale_lock_that_the_resumed_run_takes_over(
    tiny_seg: Path, clean_pretrain: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    out = tmp_path / "killed"
    args = [*pretrain_args(tiny_seg), "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _STOP_AFTER_STEP_4, "pretrain", *args],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            if line.strip() == "PARKED" or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 3 and not (out / "DONE").exists()
    stale = json.loads((out / LOCK_NAME).read_text())
    assert stale["pid"] == proc.pid and lock_holder(out) is None  # the file is left, the flock died with it

    with caplog.at_level(logging.WARNING, logger="optidel"):
        result = invoke("pretrain", *args, "--resume")
    assert result.exit_code == 0, result.output
    took_over = f"taking over the lock left by a process that is no longer running (pid {proc.pid}"
    assert any(took_over in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert "resumed from" in (out / "log.txt").read_text()
    assert (out / "DONE").is_file() and not (out / LOCK_NAME).exists()
    for name in ("encoder.safetensors", "mae.safetensors"):
        assert same_tensors(out / name, clean_pretrain / name), f"{name} differs after kill + resume"


def test_a_bad_image_is_named_in_one_line_with_strict(tmp_path: Path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 40), (40 * i, 80, 120)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    result = invoke("pretrain", "--data", folder, "--out", tmp_path / "run", "--ssl", "simclr", "--img-size", "32",
                    "--batch-size", "4", "--steps", "1", "--strict")  # fmt: skip
    assert result.exit_code == 2
    msg = one_line_error(result.output)
    assert str(folder / "broken.png") in msg, msg
    assert not (tmp_path / "run" / "DONE").exists()
