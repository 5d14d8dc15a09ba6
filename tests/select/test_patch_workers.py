"""Patch-stage worker processes (spawned, real grid proposer + a small random timm embedder): the same store as one
process, unreadable images, strict mode, resume after an injected failure, a worker that cannot start, the
default number of processes, and workers exiting when their parent is killed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from select_fakes import make_pool

from optidel.data.image import ImageDecodeError
from optidel.data.pool import PoolImage, list_pool
from optidel.select.patches import workers as patch_workers
from optidel.select.patches.compute import PatchStageError, embedding_dim
from optidel.select.patches.store import PatchStore, merge_shards, process_shards
from optidel.select.patches.workers import ModelSpec, PatchWorkers, resolve_procs, threads_per_proc

SPEC = ModelSpec("grid", {"scales": (0.5,), "device": "cpu"}, "timm:resnet10t", "cpu", seed=0, threads=1)
SHARD = 4


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[PoolImage]:
    root = make_pool(tmp_path_factory.mktemp("pw") / "pool", 9, size=40, seed=5, broken=1)
    return list_pool([str(root)])


@pytest.fixture(scope="module")
def models() -> Iterator[tuple]:
    import torch

    threads = torch.get_num_threads()
    yield SPEC.build()  # sets 1 thread in this process too
    torch.set_num_threads(threads)


def _store(pool: list[PoolImage], models: tuple, root: Path, **kw: object) -> PatchStore:
    proposer, embedder = models
    process_shards(pool, proposer, embedder, root, SHARD, spec=SPEC, **kw)  # type: ignore[arg-type]
    return merge_shards(root, len(pool), SHARD, embedding_dim(proposer, embedder))


def _rows(store: PatchStore) -> dict:
    d = store.table.to_pydict()
    return {k: ["nan" if isinstance(x, float) and x != x else x for x in v] for k, v in d.items()}


@pytest.fixture(scope="module")
def one_process(pool: list[PoolImage], models: tuple, tmp_path_factory: pytest.TempPathFactory) -> PatchStore:
    return _store(pool, models, tmp_path_factory.mktemp("one") / "patches", procs=1)


def test_two_processes_give_the_same_store(
    pool: list[PoolImage], models: tuple, one_process: PatchStore, tmp_path: Path
) -> None:
    two = _store(pool, models, tmp_path / "patches", procs=2)
    assert len(two) == len(one_process) > 0
    assert len(set(two.table.column("image_index").to_pylist())) == 9  # every readable image has patches
    assert _rows(two) == _rows(one_process)
    assert np.array_equal(np.asarray(two.embeddings), np.asarray(one_process.embeddings))  # 1 thread in both
    assert [f["path"] for f in two.failed] == [f["path"] for f in one_process.failed]
    assert len(two.failed) == 1 and "zz_broken_0" in two.failed[0]["path"]


def test_strict_names_the_unreadable_file(pool: list[PoolImage], models: tuple, tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="zz_broken_0"):
        _store(pool, models, tmp_path / "patches", procs=2, strict=True)


def test_resume_after_injected_failure(
    pool: list[PoolImage], models: tuple, one_process: PatchStore, tmp_path: Path
) -> None:
    def fail(s: int) -> None:
        if s == 0:
            raise RuntimeError("injected")

    root = tmp_path / "patches"
    proposer, embedder = models
    with pytest.raises(RuntimeError, match="injected"):
        process_shards(pool, proposer, embedder, root, SHARD, after_shard=fail, procs=2, spec=SPEC)
    assert sorted(p.name for p in root.glob("shard_*.parquet")) == ["shard_00000.parquet"]
    done = process_shards(pool, proposer, embedder, root, SHARD, procs=2, spec=SPEC)
    assert done == [1, 2]  # only the missing shards
    store = merge_shards(root, len(pool), SHARD, embedding_dim(proposer, embedder))
    assert _rows(store) == _rows(one_process)


def test_a_worker_that_cannot_start_is_a_clear_error(pool: list[PoolImage]) -> None:
    with (
        PatchWorkers(ModelSpec("no-such-proposer"), procs=2) as pw,
        pytest.raises(PatchStageError, match="worker process died.*procs=1"),
    ):
        list(pw.results([[(0, pool[0].path)]]))


def test_default_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patch_workers, "cpu_cores", lambda: 2)
    monkeypatch.setattr(patch_workers, "_ram_bytes", lambda: 24 * 2**30)
    assert resolve_procs(None, 900) == 2  # one per core
    assert resolve_procs(None, 100) == 1  # too few images to pay for starting a second process
    assert resolve_procs(None, 900, device="cuda") == 1
    assert resolve_procs(None, 900, distributed=True) == 1
    assert resolve_procs(3, 2) == 2  # never more than the images
    monkeypatch.setattr(patch_workers, "_ram_bytes", lambda: 6 * 2**30)
    assert resolve_procs(None, 900) == 1  # one per 4 GiB
    monkeypatch.setattr(patch_workers, "_ram_bytes", lambda: 256 * 2**30)
    monkeypatch.setattr(patch_workers, "cpu_cores", lambda: 16)
    assert resolve_procs(None, 900) == 4 and threads_per_proc(None, 4) == 4
    assert threads_per_proc(3, 4) == 3 and threads_per_proc(None, 1) is None


KILL_SCRIPT = """
import os, sys, time
from pathlib import Path
from optidel.select.patches.workers import ModelSpec, PatchWorkers

if __name__ == "__main__":
    spec = ModelSpec("grid", {"scales": (0.5,), "device": "cpu"}, "timm:resnet10t", "cpu", threads=1)
    pw = PatchWorkers(spec, procs=2)
    items = [(i, Path(sys.argv[1])) for i in range(2)]
    list(pw.results([items[:1], items[1:]]))
    print("RUNNING", flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc (Linux)")
def test_workers_exit_when_the_parent_is_killed(pool: list[PoolImage], tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pool[0].path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "RUNNING"
        children = [
            int(c) for f in Path(f"/proc/{proc.pid}/task").glob("*/children") for c in f.read_text().split()
        ]
        assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.2)
        alive = [c for c in children if Path(f"/proc/{c}").exists()]
        for c in alive:
            os.kill(c, signal.SIGKILL)
        assert not alive, "worker processes outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
