"""One writer per run folder (issue 16, item 3) for pretrain, finetune and evaluate, through the Python API too.

The lock itself (flock, holder file, take-over of a dead holder's lock) is tested in tests/runtime/test_lock.py; here
the run functions hold it: two concurrent ``optidel pretrain --out X`` processes, the second refused at once with
the holder named while the first finishes with the right weights.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optidel.runtime.lock import RunFolderLocked, lock_holder, run_lock
from reliability.helpers import cli_env, one_line_error, pretrain_args, run_cli, same_tensors

# `optidel ARGS` whose training waits after step 1 until the file GO exists: the run is surely in progress (and
# holds its folder) while the second run starts, however slow the machine
_HELD_AFTER_STEP_1 = """
import sys, time
from pathlib import Path
import optidel.ssl.train as train
go = Path(sys.argv.pop(1))
real = train.train_steps
def wait_for_go(done, state):
    deadline = time.monotonic() + 300
    while done == 1 and not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
train.train_steps = lambda state, on_step=None: real(state, wait_for_go)
from optidel.cli import main
main()
"""


def test_second_pretrain_on_the_same_folder_exits_at_once_naming_the_holder(
    tiny_seg: Path, clean_pretrain: Path, tmp_path: Path
):
    out, go = tmp_path / "run", tmp_path / "go"
    args = [*pretrain_args(tiny_seg), "--out", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-c", _HELD_AFTER_STEP_1, str(go), "pretrain", *args],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while (lock_holder(out) or {}).get("pid") != first.pid:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.1)
        second = run_cli("pretrain", *args)
        assert first.poll() is None, "the second run waited for the first instead of exiting at once"
        assert second.returncode == 1
        msg = one_line_error(second.stdout)
        assert f"{out} is in use by another optidel run (pid {first.pid} on {socket.gethostname()}" in msg
        assert "optidel pretrain" in msg
        go.touch()
        output, _ = first.communicate(timeout=300)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, output
    assert "Traceback" not in output
    assert (out / "DONE").is_file() and not (out / ".lock").exists()
    assert same_tensors(out / "encoder.safetensors", clean_pretrain / "encoder.safetensors")


def test_pretrain_finetune_and_evaluate_functions_hold_the_lock(
    tiny_seg: Path, tiny_encoder: Path, tmp_path: Path
):
    """The Python API (not only the CLI) refuses a folder another writer holds, before writing anything."""
    from optidel.config import from_dict
    from optidel.downstream.config import FinetuneConfig
    from optidel.downstream.evaluate import evaluate
    from optidel.downstream.finetune import finetune
    from optidel.ssl.config import PretrainConfig
    from optidel.ssl.train import pretrain

    runs = {
        "pretrain": lambda out: pretrain(from_dict(PretrainConfig, {"data": [f"{tiny_seg}:train"]}), out),
        "finetune": lambda out: finetune(
            FinetuneConfig(encoder=str(tiny_encoder), dataset=str(tiny_seg), out=str(out), img_size=32)
        ),
        "evaluate": lambda out: evaluate(tiny_encoder, [tiny_seg], out, base=FinetuneConfig(img_size=32)),
    }
    for name, run in runs.items():
        out = tmp_path / name
        with run_lock(out, command="a test holding the folder"):
            with pytest.raises(
                RunFolderLocked, match=rf"pid {os.getpid()} .*running `a test holding the folder`"
            ):
                run(out)
            assert sorted(p.name for p in out.iterdir()) == [".lock"], f"{name} wrote into a locked folder"
