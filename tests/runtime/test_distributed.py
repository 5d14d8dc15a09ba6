"""The one distributed context: single-process defaults, device choice, a real 2-process gloo job, lazy torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optidel.runtime.distributed import DistContext, DistributedError, init_distributed, pick_device
from optidel.runtime.errors import OptidelError

WORKER = """
import datetime, json, sys
from pathlib import Path
from optidel.runtime.distributed import init_distributed
ctx = init_distributed(device="cpu", backend="gloo", timeout=datetime.timedelta(seconds=120))
ctx.barrier()
Path(sys.argv[1], f"rank{ctx.rank}.json").write_text(json.dumps(
    {"rank": ctx.rank, "world": ctx.world, "local_rank": ctx.local_rank, "device": ctx.device,
     "here": ctx.initialized_here, "main": ctx.is_main}))
ctx.barrier()
ctx.close()
import torch.distributed as dist
assert not dist.is_initialized()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def test_a_plain_process_is_rank_0_of_1_and_never_joins(monkeypatch: pytest.MonkeyPatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world, ctx.local_rank, ctx.device) == (0, 1, 0, "cpu")
    assert ctx.is_main and not ctx.distributed and not ctx.initialized_here
    ctx.barrier()  # no-ops
    ctx.close()
    assert DistContext() == ctx
    assert str(ctx.torch_device) == "cpu"


def test_device_choice_and_errors():
    import torch

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto", 3) == ("cuda:3" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DistributedError, match="'tpu' is not one of auto, cpu, cuda"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DistributedError, match="CUDA is not available") as e:
            pick_device("cuda")
        assert isinstance(e.value, OptidelError) and e.value.exit_code == 2


def test_cpu_only_use_does_not_import_torch():
    """optidel select (grid patches) may never need torch: the context must not import it."""
    code = (
        "import sys; from optidel.runtime.distributed import init_distributed; "
        "ctx = init_distributed('cpu', backend='gloo'); ctx.barrier(); ctx.close(); print('torch' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


def test_two_gloo_processes_meet_at_barriers(tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run = subprocess.run(
        [*cmd, str(script), str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert [r["main"] for r in ranks] == [True, False] and all(r["here"] for r in ranks)
    assert all(r["device"] == "cpu" for r in ranks)
