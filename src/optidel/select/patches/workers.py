"""Local worker processes for the patch stage: K processes, each with its own proposer and embedder.

On a CPU one process with all cores as torch threads leaves cores idle: LiteMedSAM's encoder has memory-bound
passes, its decoder many small ops, and decoding images and Python run on one core. K processes with
``cores // K`` threads each keep every core busy. On 2 cores, two 1-thread processes took 0.85x the time per image
of one 2-thread process (median of 3 alternating rounds on 64 Kvasir-SEG train images, ``benchmarks/bench_procs.py``,
BENCHMARKS.md); ``optidel select`` on Kvasir-SEG's 900 train images went from 27 to 23 minutes.

The parent keeps writing the shards (so resuming, progress and the shard files are those of one process); the
workers only turn (pool index, image path) into :class:`~optidel.select.patches.store.ImageResult`. Images are
handed out one unit (``batch_size`` consecutive images of a shard) at a time, across shard boundaries, so no worker
waits for another to finish a shard. Results do not depend on K, except for float rounding where the number of
torch threads changes.

Under ``torchrun`` every rank is already a process (the default there is 1 worker per rank); on a GPU the default
is 1 as well. Worker processes are started with ``spawn`` (safe with torch's threads): a script calling the Python
API with ``procs`` > 1 needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optidel.runtime.processes import cpu_cores, worker_signals
from optidel.select.patches.compute import ImageResult, PatchStageError, compute_images, embedding_dim
from optidel.select.patches.types import PatchEmbedder, PatchProposer

# The default never starts more processes than AUTO_MAX_PROCS, nor more than one per AUTO_MIN_IMAGES_PER_PROC
# images to compute (on 2 cores two workers start in ~11 s and then save ~0.19 s per image: they pay from ~60 images
# on), nor more than one per AUTO_RAM_PER_PROC of RAM (a LiteMedSAM process peaks at ~3.4 GB).
AUTO_MAX_PROCS = 4
AUTO_MIN_IMAGES_PER_PROC = 64
AUTO_RAM_PER_PROC = 4 * 2**30


@dataclass(frozen=True)
class ModelSpec:
    """What builds the patch stage's proposer and embedder (picklable, so a worker process can build its own).

    Attributes:
        patches: proposer kind (``sam``, ``sam-checkpoint``, ``grid``).
        proposer_options: its constructor options (``device`` included).
        embedder: embedder spec (see :func:`optidel.select.patches.proposers.make_embedder`).
        device: torch device of the embedder.
        seed: seeds every RNG before the models are built.
        threads: torch intra-op threads (None: torch's default).
    """

    patches: str
    proposer_options: dict[str, Any] = field(default_factory=dict)
    embedder: str | None = None
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None

    def build(self) -> tuple[PatchProposer, PatchEmbedder | None]:
        import torch

        from optidel.runtime.seed import seed_everything
        from optidel.select.patches.proposers import make_embedder, make_proposer

        seed_everything(self.seed)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        proposer = make_proposer(self.patches, **self.proposer_options)
        # None = the proposer's own embeddings; for a proposer without them (grid): LiteMedSAM box features
        embedder = make_embedder(self.embedder, proposer=proposer, device=self.device)
        return proposer, embedder


def _ram_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def resolve_procs(
    requested: int | None, n_images: int, device: str = "cpu", distributed: bool = False
) -> int:
    """How many worker processes compute ``n_images`` images: ``requested``, or (None) the default.

    The default: 1 on a GPU, under ``torchrun`` or for fewer than ``2 x AUTO_MIN_IMAGES_PER_PROC`` images; else one
    per core, at most :data:`AUTO_MAX_PROCS`, one per ``AUTO_MIN_IMAGES_PER_PROC`` images and one per 4 GiB of RAM.
    Never more than the images.
    """
    if requested is not None:
        return max(1, min(int(requested), n_images))
    if distributed or not device.startswith("cpu"):
        return 1
    k = min(cpu_cores(), AUTO_MAX_PROCS, n_images // AUTO_MIN_IMAGES_PER_PROC)
    ram = _ram_bytes()
    if ram is not None:
        k = min(k, ram // AUTO_RAM_PER_PROC)
    return max(1, k)


def threads_per_proc(threads: int | None, procs: int) -> int | None:
    """Torch threads of each of ``procs`` processes: ``threads`` when given, else the cores shared out (None for
    one process: torch's default)."""
    if threads is not None or procs <= 1:
        return threads
    return max(1, cpu_cores() // procs)


# ---------------------------------------------------------------------------------------------------------------
# the worker side

_WORKER: dict[str, Any] = {}


def _init_worker(spec: ModelSpec, workers: int) -> None:
    worker_signals()  # Ctrl-C is the parent's; exit with the parent (killed with SIGKILL it cannot stop us)
    proposer, embedder = spec.build()
    _WORKER.update(
        proposer=proposer, embedder=embedder, dim=embedding_dim(proposer, embedder), workers=workers
    )


def _work(unit: list[tuple[int, str]], batch_size: int) -> list[ImageResult]:
    w = _WORKER
    items = [(i, Path(p)) for i, p in unit]
    return list(compute_images(items, w["proposer"], w["embedder"], w["dim"], w["workers"], batch_size))


# ---------------------------------------------------------------------------------------------------------------
# the parent side


class PatchWorkers:
    """``procs`` worker processes computing :class:`ImageResult` for the parent.

    Examples:
        >>> with PatchWorkers(ModelSpec("grid"), procs=2) as pw:
        ...     for r in pw.results([[(0, path0), (1, path1)]]):
        ...         print(r.index, len(r.patches))
    """

    def __init__(self, spec: ModelSpec, procs: int, decode_threads: int = 1, batch_size: int = 1):
        import multiprocessing

        if procs < 2:
            raise ValueError(f"PatchWorkers needs at least 2 processes, not {procs}")
        self.procs = procs
        self.batch_size = max(1, int(batch_size))
        self.spec = spec
        self._ex = ProcessPoolExecutor(
            max_workers=procs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(spec, decode_threads),
        )

    def __enter__(self) -> PatchWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (work not started is dropped; a unit in progress finishes first)."""
        self._ex.shutdown(wait=True, cancel_futures=True)

    def results(self, shards: Sequence[Sequence[tuple[int, Path]]]) -> Iterator[ImageResult]:
        """ImageResults of every (pool index, path) item of ``shards``, shard by shard, each shard's results in
        item order; at most ``2 x procs`` units are handed out ahead of the one being read.

        Raises:
            PatchStageError: a worker process died (killed, out of memory) or could not build its models.
        """
        units = (
            [(i, str(p)) for i, p in shard[lo : lo + self.batch_size]]
            for shard in shards
            for lo in range(0, len(shard), self.batch_size)
        )
        pending: deque[Future[list[ImageResult]]] = deque()
        ahead = 2 * self.procs
        try:
            for unit in units:
                pending.append(self._ex.submit(_work, unit, self.batch_size))
                if len(pending) > ahead:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as e:
            raise PatchStageError(
                f"a patch-stage worker process died ({e}); shards written so far are kept: run again to resume, "
                "with --set procs=1 to compute in this process (and see the error above, if any)"
            ) from None
        finally:
            for f in pending:
                f.cancel()
