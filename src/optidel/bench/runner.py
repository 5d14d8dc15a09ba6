"""The benchmark grid runner: select -> pre-train -> fine-tune for every cell, reusing every finished stage.

The output folder's layout is :class:`optidel.bench.grid.RunLayout`'s. Every stage writes ``DONE`` last; a finished
stage is never redone, a killed pre-training resumes from its checkpoint, a killed selection from its last patch
shard. A fine-tuning counts as finished from its ``DONE`` and ``metrics.json`` alone, and an arm whose fine-tunings
are all finished is not selected or pre-trained again: a folder that kept only those small files resumes without the
encoders. One process at a time writes into a benchmark folder (``OUT/.lock``); with ``--workers N`` it runs N arms at
once in worker processes (:meth:`BenchmarkRunner.run_parallel`). Kill the benchmark at any time and run the same
command again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from optidel.bench.config import SCORE_WITH, BenchmarkConfig, resolve_data_root
from optidel.bench.estimate import StageEstimate, finetune_seconds, hours, pretrain_seconds, selection_seconds
from optidel.bench.grid import FULL, RANDOM_INIT, Arm, FinetuneCell, RunLayout, grid_arms
from optidel.bench.results import collect_rows, read_centres, read_set_vinfo
from optidel.bench.tables import TableContext, write_tables
from optidel.config import config_hash, layer_config, save_config
from optidel.data.pool import PoolError, list_pool
from optidel.data.segmentation import is_seg_dataset
from optidel.downstream.config import FinetuneConfig
from optidel.log import attach_run_log, console_level, detach_run_log, logger
from optidel.runtime import progress
from optidel.runtime.atomic import atomic_write_json
from optidel.runtime.errors import OptidelError
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import is_done
from optidel.select.config import SelectConfig
from optidel.ssl.config import PretrainConfig


class BenchmarkDataError(OptidelError, FileNotFoundError):
    """A dataset of the benchmark is missing or is not usable as configured."""

    exit_code = 2


class BenchmarkSelectionError(OptidelError, ValueError):
    """``--only`` names no arm of the grid."""

    exit_code = 2


class BenchmarkRunner:
    """Runs (or resumes) a :class:`BenchmarkConfig` into ``out``.

    Args:
        cfg: the grid.
        out: the benchmark folder.
        config_file: the YAML it came from (relative ``data_root`` resolves against its folder).
        command: what the run lock records as the holder's command.
    """

    def __init__(
        self,
        cfg: BenchmarkConfig,
        out: str | Path,
        config_file: Path | None = None,
        command: str = "optidel benchmark",
    ):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(out)
        self.layout = RunLayout(self.out)
        self.command = command
        self.config_file = config_file
        self.data_root = resolve_data_root(cfg, config_file)
        hint = f"set data_root, or fetch it with `optidel data fetch NAME --root {self.data_root}`"
        for d in cfg.datasets:
            if not is_seg_dataset(self.data_root / d):
                raise BenchmarkDataError(
                    f"{self.data_root / d}: downstream dataset {d!r} not found (needs images/ and masks/; {hint})"
                )
        for d in cfg.pool_datasets:
            if not (self.data_root / d).is_dir():
                raise BenchmarkDataError(f"{self.data_root / d}: pool dataset {d!r} not found ({hint})")

    # -- configs of each stage ---------------------------------------------------------------------------------
    @property
    def pool_sources(self) -> tuple[str, ...]:
        """The pool: the train split of every pool dataset (a plain image folder is taken whole)."""
        names = self.cfg.pool_datasets or self.cfg.datasets
        paths = [self.data_root / d for d in names]
        return tuple(f"{p}:train" if is_seg_dataset(p) else str(p) for p in paths)

    def select_config(self, arm: Arm) -> SelectConfig:
        base: dict[str, Any] = {
            "pool": list(self.pool_sources),
            "out": str(self.layout.select_dir(arm)),
            "method": arm.method,
            "ratio": arm.ratio,
            "seed": arm.seed,
            # the downstream test splits must not leak into the pool (the pool's own are guarded already)
            "leakage_against": [f"{self.data_root / d}:test" for d in self.cfg.datasets],
        }
        if self.cfg.share_patch_cache:
            # one cache for every seed: the patch stage's key holds no seed (its embedders are seed-free), so SAM
            # runs once per pool; k-means and everything after it are keyed by the seed
            base["runtime"] = {"cache_dir": str(self.layout.patch_cache)}
        sets = self._variant(arm, "select")
        if (scorer := self.scorer(arm)) is not None:
            sets["scoring"] = {**sets.get("scoring", {}), "score": "reconstruction"}
            sets["scoring"]["mae_run"] = str(self.layout.pretrain_dir(scorer))
        return layer_config(
            SelectConfig, config_file=self.cfg.select, sets=sets, base=base, source="benchmark select"
        )

    def _variant(self, arm: Arm, stage: str) -> dict[str, Any]:
        """The arm's variant settings for ``stage`` (they take precedence over the grid's stage settings)."""
        return dict(self.cfg.variants.get(arm.variant, {}).get(stage, {})) if arm.variant else {}

    @staticmethod
    def needs_patches(arm: Arm) -> bool:
        """Whether ``arm``'s selection runs the patch stage (SAM or grid patches, embeddings): neither ``full`` nor
        the whole-image methods such as ``random`` and the ``noise`` control do."""
        from optidel.select.strategies.base import get_strategy

        return arm.selects and get_strategy(arm.method).needs_patches

    def scorer(self, arm: Arm) -> Arm | None:
        """The MAE arm whose model scores this arm's patches (its variant's ``score_with``), None for most arms.

        It is the plain arm of the named method with the same seed, MAE, ratio 1 for ``full`` (else this arm's).
        """
        method = self.cfg.variants.get(arm.variant, {}).get(SCORE_WITH) if arm.variant else None
        if method is None:
            return None
        return Arm(method, 1.0 if method == FULL else arm.ratio, "mae", arm.seed)

    @functools.cached_property
    def _pool_leaks(self) -> bool:
        return self._check_full_pool()

    def full_pool_leaks(self) -> bool:
        """Whether some pool image duplicates a downstream test image (optidel.data.leakage; the guard is on
        unless the select overrides turn it off). Checked once per runner (every seed's full arm asks)."""
        return self._pool_leaks

    def _check_full_pool(self) -> bool:
        """:meth:`full_pool_leaks`, computed; fingerprints are cached beside the patch cache."""
        from optidel.select.leakage_guard import leakage_targets

        cfg = self.select_config(Arm(FULL, 1.0, self.cfg.ssl[0], self.cfg.seeds[0]))
        targets = leakage_targets(tuple(cfg.pool), tuple(cfg.leakage_against))
        if not cfg.leakage_guard or not targets:
            return False
        from optidel.data.leakage import check_pool

        pool = list_pool(cfg.pool)
        check = check_pool(
            [im.uid for im in pool],
            [im.path for im in pool],
            targets,
            cache_dir=self.layout.patch_cache / "leakage",
        )
        return bool(check.leaking().any())

    def pretrain_config(self, arm: Arm) -> PretrainConfig:
        # full: the pool as given, or its leakage-guarded copy (a `full` selection) when pool images leak
        raw = arm.method == FULL and not is_done(self.layout.select_dir(arm))
        data = list(self.pool_sources) if raw else [str(self.layout.select_dir(arm))]
        base = {"data": data, "ssl": arm.ssl, "seed": arm.seed}
        cfg = layer_config(
            PretrainConfig,
            config_file=self.cfg.pretrain,
            sets=self._variant(arm, "pretrain"),
            base=base,
            source="benchmark pretrain",
        )
        return cfg.resolved()

    def finetune_config(self, cell: FinetuneCell) -> FinetuneConfig:
        arm = cell.arm
        base: dict[str, Any] = {
            "dataset": str(self.data_root / cell.dataset),
            "out": str(self.layout.finetune_dir(cell)),
            "label_fraction": cell.label_fraction,
            "seed": arm.seed,
        }
        if arm.pretrained:
            base["encoder"] = str(self.layout.pretrain_dir(arm) / "encoder.safetensors")
        else:
            pre = self.pretrain_config(Arm(FULL, 1.0, arm.ssl, arm.seed))
            base.update(encoder="none", arch=pre.arch, patch_size=pre.patch_size)
        return layer_config(
            FinetuneConfig, config_file=self.cfg.finetune, base=base, source="benchmark finetune"
        )

    # -- the grid ------------------------------------------------------------------------------------------------
    def all_arms(self) -> list[Arm]:
        """Every arm in run order: per seed, the random-init references (fine-tunings only: cheap), then the grid's
        arms; so a partial benchmark already holds whole replicates with their reference rows.

        Random init gets one arm per SSL method (the architecture that method pre-trains); two methods with one
        architecture share its run folder, so it runs once.
        """
        cfg = self.cfg
        grid: list[Arm] = []
        for part in cfg.grid_parts():
            grid += grid_arms(part["seeds"], part["ssl"], part["methods"], part["ratios"], part["variant"])
        arms: list[Arm] = []
        for seed in dict.fromkeys(a.seed for a in grid):  # seeds in the order the grid first names them
            if cfg.random_init:
                for ssl in dict.fromkeys(a.ssl for a in grid if a.seed == seed):
                    arch = self.pretrain_config(Arm(FULL, 1.0, ssl, seed)).arch
                    arms.append(Arm(RANDOM_INIT, 1.0, ssl, seed, arch or ""))
            arms.extend(a for a in grid if a.seed == seed)
        return list(dict.fromkeys(arms))  # an arm named by two parts of the grid runs once

    def arms_to_run(self, only: Sequence[str] = ()) -> list[Arm]:
        """The arms a run works through: all of them in run order, or with ``only`` those whose key (``--plan`` and
        the folder names show them, e.g. ``optidel+context_r0.05_mae_s1``) matches one of the shell-style patterns,
        in the order of the patterns (then in run order): a long grid can be scheduled by what is wanted first.

        Raises:
            BenchmarkSelectionError: a pattern matches no arm of the grid.
        """
        arms = self.all_arms()
        if not only:
            return arms
        chosen: list[Arm] = []
        for pattern in only:
            hits = [a for a in arms if fnmatch.fnmatchcase(a.key, pattern)]
            if not hits:
                examples = ", ".join(a.key for a in arms[:3])
                raise BenchmarkSelectionError(
                    f"--only {pattern!r} matches no arm of the grid {self.cfg.name!r} (arm keys look like {examples})"
                )
            chosen.extend(hits)
        return list(dict.fromkeys(chosen))

    def cells(self, arm: Arm) -> list[FinetuneCell]:
        return [FinetuneCell(arm, d, float(lf)) for d in self.cfg.datasets for lf in self.cfg.label_fractions]

    def finetune_cells(self) -> list[FinetuneCell]:
        return [c for arm in self.all_arms() for c in self.cells(arm)]

    def arm_finished(self, arm: Arm) -> bool:
        """Every fine-tuning of the arm is finished (its selection and pre-training are then not needed)."""
        return all(self.layout.cell_done(c) for c in self.cells(arm))

    # -- plan ------------------------------------------------------------------------------------------------------
    def _pool_size(self) -> int | None:
        try:
            return len(list_pool(self.pool_sources))
        except (PoolError, OSError):
            return None

    def patch_cache_filled(self) -> bool:
        """Whether the shared patch cache holds a finished patch stage (a ``patches-<key>`` folder; one being built
        is ``.patches-<key>.partial``, :mod:`optidel.select.stage_cache`)."""
        return any(p.is_dir() for p in self.layout.patch_cache.glob("patches-*"))

    def stage_estimates(self) -> list[StageEstimate]:
        """Runs, finished runs and estimated seconds (2 CPU cores, :mod:`optidel.bench.estimate`) per stage.

        A stage counts as done when its ``DONE`` exists or nothing downstream needs it any more (every fine-tuning
        of its arms finished). Folders shared by several arms (a selection serves every SSL method of its method,
        ratio and seed; random init's fine-tunings are per architecture) count once.
        """
        arms = [a for a in self.all_arms() if a.pretrained]
        needed = {a: not (is_done(self.layout.pretrain_dir(a)) or self.arm_finished(a)) for a in arms}
        sel: dict[Path, bool] = {}
        with_patches: dict[Path, bool] = {}  # the selections that run the patch stage
        for a in arms:
            if a.selects:
                d = self.layout.select_dir(a)
                sel[d] = sel.get(d, True) and (is_done(d) or not needed[a])
                if self.needs_patches(a):
                    with_patches[d] = sel[d]
        cells = {self.layout.finetune_dir(c): c for c in self.finetune_cells()}
        sel_arm = next((a for a in arms if self.needs_patches(a)), None)
        uses_sam = sel_arm is not None and self.select_config(sel_arm).proposal.patches in (
            "sam",
            "sam-checkpoint",
        )
        patch_s, select_s = selection_seconds(self._pool_size() or 0, uses_sam)
        # a shared patch cache: SAM runs once for the pool, in the first selection that needs patches; else in each.
        # Done when the cache holds a finished patch stage, or no selection needs it any more: finished selections
        # alone (their small files kept, the cache gone with a machine) leave the next one to run SAM again.
        shared = {"pool": all(with_patches.values()) or self.patch_cache_filled()} if with_patches else {}
        patch = shared if self.cfg.share_patch_cache else with_patches
        return [
            StageEstimate.of("patch stage", [patch_s] * len(patch), list(patch.values())),
            StageEstimate.of("selections", [select_s] * len(sel), list(sel.values())),
            StageEstimate.of(
                "pretrainings",
                [pretrain_seconds(self.pretrain_config(a)) for a in arms],
                [not needed[a] for a in arms],
            ),
            StageEstimate.of(
                "finetunings",
                [finetune_seconds(self.finetune_config(c)) for c in cells.values()],
                [self.layout.cell_done(c) for c in cells.values()],
            ),
        ]

    def grid_text(self) -> str:
        """The grid in one line (for ``--plan`` and the demo's summary)."""
        c = self.cfg
        parts = []
        for part in c.grid_parts():
            ratios = ", ".join(f"{r:g}" for r in part["ratios"]) + (
                " (full: 1)" if FULL in part["methods"] else ""
            )
            variant = f" (variant {part['variant']})" if part["variant"] else ""
            parts.append(
                f"methods {', '.join(part['methods'])}{variant} x ratios {ratios} x ssl {', '.join(part['ssl'])} "
                f"x seeds {', '.join(map(str, part['seeds']))}"
            )
        fractions = ", ".join(f"{f:g}" for f in c.label_fractions)
        return (
            " + ".join(parts)
            + f"; fine-tuned on {', '.join(c.datasets)} x label fractions {fractions}"
            + ("; plus random init" if c.random_init else "")
        )

    def plan(self, only: Sequence[str] = ()) -> dict[str, Any]:
        """The grid, how many runs of each stage it holds and how many are done, and the estimated time left; with
        ``only``, also which arms a run with those patterns works through, in order."""
        est = self.stage_estimates()
        out: dict[str, Any] = {"grid": self.grid_text(), "config hash": config_hash(self.cfg)}
        unfinished = [a.key for a in self.all_arms() if not self.arm_finished(a)]
        out["arms unfinished (run order)"] = ", ".join(unfinished) or "-"
        if only:
            arms = self.arms_to_run(only)
            left = [a.key for a in arms if not self.arm_finished(a)]
            out["--only"] = (
                f"{len(arms)} arms, {len(left)} unfinished, in this order: {', '.join(left) or '-'}"
            )
        for e in est:
            out[e.stage] = e.runs
            out[f"{e.stage} done"] = e.done
        total = sum(e.seconds_total for e in est)
        left = sum(e.seconds_left for e in est)
        parts = ", ".join(f"{e.stage} {hours(e.seconds_left)}" for e in est if e.runs)
        out["estimated time, 2 CPU cores"] = (
            f"{hours(left)} left of {hours(total)} ({parts}; from measured rates)"
        )
        return out

    # -- running -------------------------------------------------------------------------------------------------
    def run_arm(self, arm: Arm, force: bool = False) -> None:
        """Select (unless full) and pre-train one arm; skipped when done or when all its fine-tunings are (unless
        ``force``: a scoring arm whose model another arm needs is pre-trained even then)."""
        from optidel.select.pipeline import run_selection
        from optidel.ssl.train import pretrain

        if not arm.pretrained or (self.arm_finished(arm) and not force):
            return
        if arm.selects and not is_done(self.layout.select_dir(arm)):
            if (scorer := self.scorer(arm)) is not None and not is_done(self.layout.pretrain_dir(scorer)):
                logger.info("benchmark: %s scores its patches with %s, which runs first", arm.key, scorer.key)
                self.run_arm(scorer, force=True)
            self._select(arm)
        if arm.method == FULL and not is_done(self.layout.select_dir(arm)) and self.full_pool_leaks():
            logger.info("benchmark: the pool holds test images; the full arm uses its guarded copy")
            run_selection(self.select_config(arm))  # method full drops the leaking images
        pdir = self.layout.pretrain_dir(arm)
        if not is_done(pdir):
            logger.info("benchmark: pre-training %s", arm.key)
            pretrain(self.pretrain_config(arm), pdir, resume=(pdir / "checkpoint.pt").is_file())

    def run_cell(self, cell: FinetuneCell) -> None:
        from optidel.downstream.finetune import finetune

        if self.layout.cell_done(cell):
            return
        logger.info("benchmark: fine-tuning %s on %s", cell.arm.key, cell.key)
        finetune(self.finetune_config(cell))

    def _record_start(self) -> None:
        """Write the resolved ``config.yaml`` and ``plan.json`` (with the config hash) and log what runs."""
        save_config(self.cfg, self.out)
        plan = self.plan()
        atomic_write_json(self.out / "plan.json", plan)
        logger.info("benchmark %s (config hash %s) -> %s", self.cfg.name, plan["config hash"], self.out)

    def run(self, stop_after: int | None = None, only: Sequence[str] = (), workers: int = 1) -> Path:
        """Run every unfinished stage, holding ``out``'s run lock; tables are rewritten after each fine-tuning.

        Args:
            stop_after: stop after this many fine-tunings were run in this call (for tests and smoke runs; one
                worker only).
            only: run only the arms matching these patterns, in their order (:meth:`arms_to_run`); the tables
                still hold every finished cell.
            workers: arms run at once, each in its own process (:meth:`run_parallel`).

        Returns:
            ``out/results.csv``.

        Raises:
            RunFolderLocked: another process runs in ``out``.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        with run_lock(self.out, command=self.command):
            if workers > 1:
                return self.run_parallel(workers, only)
            return self.run_unlocked(stop_after, only)

    def next_arm(self, queue: Sequence[Arm], running: Sequence[Arm]) -> Arm | None:
        """The first arm of ``queue`` that may start beside the ``running`` ones, None if none may yet.

        Two arms whose selection folder is the same (the SSL methods of one method, ratio and seed; random init's
        architectures of one seed) do not run together until that selection is finished, nor two arms that would
        pre-train one folder (an arm and another arm's scoring arm, :meth:`scorer`): two processes never write one
        folder. Everything else runs in queue order.
        """
        busy = {self.layout.select_dir(a) for a in running}
        busy |= {self.layout.pretrain_dir(a) for a in running}
        scorers = [s for a in running if (s := self.scorer(a)) is not None]
        busy |= {self.layout.pretrain_dir(s) for s in scorers if not is_done(self.layout.pretrain_dir(s))}
        for arm in queue:
            d = self.layout.select_dir(arm)
            needs = [self.layout.pretrain_dir(arm)]
            if (scorer := self.scorer(arm)) is not None and not is_done(self.layout.pretrain_dir(scorer)):
                needs.append(self.layout.pretrain_dir(scorer))
            if (d not in busy or is_done(d)) and not busy.intersection(needs):
                return arm
        return None

    def run_parallel(self, workers: int, only: Sequence[str] = ()) -> Path:
        """:meth:`run_unlocked` with ``workers`` processes, each running whole arms (selection, pre-training and
        fine-tunings) with ``cores // workers`` torch threads; this process rewrites the tables as arms finish.

        Small models may keep more CPU cores busy this way than with all cores in one process (as the patch stage's
        workers do, BENCHMARKS.md). The first unfinished selection that runs the patch stage runs before the workers
        start, alone: with a shared patch cache that SAM has not filled yet, SAM then runs once. Results are those of
        a one-worker run up to float rounding where the torch thread count differs. Ctrl-C or a failing arm stops
        every worker (a resume redoes the fine-tunings they were in); killed, this process takes its workers with it.
        """
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

        from optidel.runtime.processes import cpu_cores

        handler = attach_run_log(self.out)
        try:
            self._record_start()
            queue = [a for a in self.arms_to_run(only) if not self.arm_finished(a)]
            first = next((a for a in queue if self.needs_patches(a) and self.scorer(a) is None), None)
            if first is not None and not is_done(self.layout.select_dir(first)):
                self._select(first)
            threads = max(1, cpu_cores() // workers)
            logger.info(
                "benchmark: %d arm(s) on %d worker processes x %d torch threads", len(queue), workers, threads
            )
            pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_arm_worker,
                initargs=(threads, console_level(), progress.is_enabled()),
            )
            running: dict[Future[None], Arm] = {}
            try:
                with _ctrl_c_flag() as interrupted:
                    while queue or running:
                        while len(running) < workers and (
                            arm := self.next_arm(queue, list(running.values()))
                        ):
                            queue.remove(arm)
                            job = pool.submit(_run_arm, self.cfg, str(self.out), self.config_file, arm.key)
                            running[job] = arm
                        done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                        if interrupted.is_set():
                            raise KeyboardInterrupt
                        for f in done:
                            del running[f]
                            if (error := f.exception()) is not None:
                                raise error
                        if done:
                            self.write_tables()
            except BaseException:
                _stop_workers(pool)
                raise
            pool.shutdown()
            return self.write_tables()
        finally:
            detach_run_log(handler)

    def _select(self, arm: Arm) -> None:
        from optidel.select.pipeline import run_selection

        logger.info("benchmark: selecting %s", self.layout.select_dir(arm).name)
        run_selection(self.select_config(arm))

    def run_arm_and_cells(self, arm: Arm) -> None:
        """Select, pre-train and fine-tune one arm (a worker's share of :meth:`run_parallel`)."""
        self.run_arm(arm)
        for cell in self.cells(arm):
            self.run_cell(cell)

    def run_unlocked(self, stop_after: int | None = None, only: Sequence[str] = ()) -> Path:
        """:meth:`run` for a caller that holds ``run_lock(out)`` itself (the demo, which also writes its data)."""
        handler = attach_run_log(self.out)
        try:
            self._record_start()
            arms = self.arms_to_run(only)
            if only:
                logger.info("benchmark: --only: %d arm(s): %s", len(arms), ", ".join(a.key for a in arms))
            n_run = 0
            for arm in arms:
                self.run_arm(arm)
                for cell in self.cells(arm):
                    if self.layout.cell_done(cell):
                        continue
                    self.run_cell(cell)
                    n_run += 1
                    self.write_tables()
                    if stop_after is not None and n_run >= stop_after:
                        return self.out / "results.csv"
            return self.write_tables()
        finally:
            detach_run_log(handler)

    # -- tables --------------------------------------------------------------------------------------------------
    def table_context(self) -> TableContext:
        centres = {d: c for d in self.cfg.datasets if (c := read_centres(self.data_root / d))}
        vinfo = {}
        for arm in self.all_arms():
            if arm.selects and (v := read_set_vinfo(self.layout.select_dir(arm))) is not None:
                vinfo[(arm.label, arm.ratio, arm.seed)] = v
        return TableContext(
            self.cfg.name,
            self.cfg.n_boot,
            centres,
            vinfo,
            tuple(self.cfg.comparison_pairs()),
            self.cfg.goal,
            config_hash(self.cfg),
        )

    def rows(self) -> list[dict[str, Any]]:
        return collect_rows(self.layout, self.finetune_cells())

    def write_tables(self) -> Path:
        """Rewrite ``results.csv``, ``results.md`` and ``plots/`` from every finished fine-tuning."""
        return write_tables(self.out, self.rows(), self.table_context())


@contextlib.contextmanager
def _ctrl_c_flag() -> Iterator[threading.Event]:
    """Ctrl-C sets the yielded event instead of raising where it lands: a KeyboardInterrupt inside
    ``concurrent.futures.wait`` may leave a future's lock held, and stopping the pool would hang on it. Off the main
    thread (no signal handlers there) the event is never set and Ctrl-C raises as usual."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(pool: Any) -> None:
    """Terminate a ProcessPoolExecutor's processes now, not after their running arms (Python 3.14 has this as
    ``ProcessPoolExecutor.terminate_workers``; before it, only through the executor's process table)."""
    procs = list(getattr(pool, "_processes", {}).values())
    for proc in procs:
        proc.terminate()
    for proc in procs:  # SIGTERM ends a worker at once; a worker that ignores it is killed after 10 s
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _init_arm_worker(threads: int, console: int | None, progress_bars: bool) -> None:
    """A ``--workers`` process: ``threads`` torch threads, no Ctrl-C of its own, exits with the parent; logs to the
    terminal at the parent's console level (None: not at all) and shows progress bars if the parent does."""
    import torch

    from optidel.log import attach_console
    from optidel.runtime.processes import worker_signals

    worker_signals()
    if console is not None:
        attach_console(console, progress.console)
    progress.set_enabled(progress_bars)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # faiss (k-means) reads it in optidel.select.rank.cluster


def _run_arm(cfg: BenchmarkConfig, out: str, config_file: Path | None, key: str) -> None:
    """One arm of :meth:`BenchmarkRunner.run_parallel`, in a worker process; its log lines go to ``out/log.txt``."""
    runner = BenchmarkRunner(cfg, out, config_file=config_file)
    handler = attach_run_log(runner.out)
    try:
        runner.run_arm_and_cells(next(a for a in runner.all_arms() if a.key == key))
    finally:
        detach_run_log(handler)
