"""``optidel theory`` and ``optidel vinfo`` command functions (registered in :mod:`optidel.cli`).

Settings: :func:`optidel.config.layer_config` over :class:`~optidel.theory.experiments.TheoryConfig` and
:class:`VinfoConfig` (defaults < ``--config`` < named options < ``--set``); help texts read the defaults from them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from optidel.options import ConfigOption, SetOption, given, input_errors, option
from optidel.runtime.errors import one_line_errors
from optidel.theory.config import TheoryConfig

console = Console()
T = TheoryConfig


@one_line_errors
def theory(
    experiment: Annotated[
        str | None,
        option(
            T,
            "experiment",
            "theta (perfect probe, alpha_t 5-100, hard pruning), redundant (each pool example x10), "
            "bias (error against a shifted downstream teacher), difficulty (hard vs random vs easy).",
            "--experiment",
            "-e",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory (created; a rerun resumes from its caches).")
    ] = Path("runs/theory"),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="3 repeats and a smaller alpha_t grid: a smoke test (well under a minute)."
        ),
    ] = False,
    repeats: Annotated[
        int | None, option(T, "repeats", "Simulation repeats per point (3 with --quick).")
    ] = None,
    seed: Annotated[
        int | None,
        option(T, "seed", "Base seed of every random stream (results are deterministic given it)."),
    ] = None,
    jobs: Annotated[
        int | None, option(T, "jobs", "Worker processes for simulation and theory (the CPUs are shared).")
    ] = None,
    theory_curves: Annotated[
        bool | None, option(T, "theory", "Also solve the replica-theory curves.", "--theory/--no-theory")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Teacher-student perceptron experiments of the OptiDEL paper (adapted from Sorscher et al. 2022).

    A pool of alpha_t*N Gaussian inputs, a teacher at angle theta from a probe (coordinate 0), pruning to a fraction f = logspace(log10(f_min), 0, n_f) of the pool by the probe's margin |x0| (hard = smallest, easy = largest, or random), a max-margin student on what is kept, and its test error arccos(R)/pi. Simulation and replica theory. Each experiment sets its own alpha_ts, strategies, theta_deg, redundancy and bias_shift (the base below --config); every key of optidel.theory.experiments.TheoryConfig can be set with --config or --set.

    Writes OUT/results.csv (experiment, strategy, alpha_t, f, error, error_std, error_sem, n_repeats, source = sim | theory, ...), OUT/<experiment>.png, OUT/config.yaml, OUT/log.txt and, last, OUT/DONE.

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.runtime.progress import make_progress
    from optidel.theory.experiments import run_experiment

    options = given(experiment=experiment, repeats=repeats, seed=seed, jobs=jobs, theory=theory_curves)
    cfg = theory_config(config, options, set_ or [], quick=quick)
    with make_progress() as prog:
        t_sim = prog.add_task(f"simulate {cfg.experiment}", total=None)
        t_th = prog.add_task("theory curves", total=None, visible=cfg.theory)

        def sim_progress(done: int, total: int) -> None:
            prog.update(t_sim, completed=done, total=total)

        def theory_progress(done: int, total: int) -> None:
            prog.update(t_th, completed=done, total=total)

        res = run_experiment(cfg, out, sim_progress=sim_progress, theory_progress=theory_progress)
    console.print(_theory_table(cfg, res.rows))
    console.print(
        f"simulation {res.seconds_simulation:.1f} s, theory {res.seconds_theory:.1f} s -> "
        f"{out / 'results.csv'}, {out / (cfg.experiment + '.png')}"
    )


def theory_config(
    config: Path | None, options: dict[str, Any], sets: list[str], quick: bool = False
) -> TheoryConfig:
    """The run's TheoryConfig: defaults < the experiment's own settings < ``config`` < ``options`` < ``sets``.

    The experiment (and ``quick``) is read through the same layers first, since it chooses the base.
    """
    from optidel.config import layer_config
    from optidel.theory.experiments import default_config, validate_config

    first = layer_config(T, config_file=config, options={**options, "quick": quick or None}, sets=sets)
    with input_errors(ValueError):
        base = default_config(first.experiment, quick=first.quick)
    cfg = layer_config(T, base=base, config_file=config, options=options, sets=sets)
    with input_errors(ValueError):
        validate_config(cfg)
    return cfg


def _theory_table(cfg: Any, rows: list[dict[str, Any]]) -> Table:
    a = float(max(cfg.alpha_ts))
    t = Table(
        title=f"{cfg.experiment}: error at alpha_t = {a:g} (sim mean +- s.e.m. [theory])",
        title_justify="left",
    )
    t.add_column("f", justify="right")
    for s in cfg.strategies:
        t.add_column(s, justify="right")
    theory = {
        (r["strategy"], round(r["f"], 9)): r["error"]
        for r in rows
        if r["source"] == "theory" and r["alpha_t"] == a
    }
    for f in cfg.fs:
        cells = []
        for s in cfg.strategies:
            r = next(
                r
                for r in rows
                if r["source"] == "sim" and r["strategy"] == s and r["alpha_t"] == a and r["f"] == f
            )
            sem = "" if math.isnan(r["error_sem"]) else f" +- {r['error_sem']:.4f}"
            th = theory.get((s, round(float(f), 9)))
            cells.append(f"{r['error']:.4f}{sem}" + (f" [{th:.4f}]" if th is not None else ""))
        t.add_row(f"{f:.4f}", *cells)
    return t


def load_set_embeddings(set_dir: Path, embeddings: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and the ``selected`` mask of an ``optidel select`` output folder.

    Format assumed: ``set_dir/manifest.parquet`` with a boolean column ``selected`` (one row per pool patch) and
    a float32 ``(n_patches, D)`` ``embeddings.npy`` whose row ``i`` belongs to the manifest row with ``patch_id == i``
    (rows in manifest order when there is no ``patch_id``). The embeddings file is ``embeddings`` when given, else
    ``set_dir/embeddings.npy``, else that of the patch store the manifest's metadata names (``patch_store``), else the
    single ``set_dir/cache/patches-*/embeddings.npy`` of the select cache.

    Returns:
        features: (n_rows, D) float32 in manifest order; selected: (n_rows,) bool.

    Raises:
        FileNotFoundError / ValueError naming the file and the problem.
    """
    import pyarrow.parquet as pq

    manifest = set_dir / "manifest.parquet"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist (is {set_dir} an `optidel select` output?)")
    table = pq.read_table(manifest)
    if "selected" not in table.column_names:
        raise ValueError(f"{manifest} has no boolean column 'selected'")
    selected = np.asarray(table.column("selected").to_numpy(zero_copy_only=False), dtype=bool)
    if embeddings is None:
        cands = [set_dir / "embeddings.npy"] if (set_dir / "embeddings.npy").is_file() else []
        meta = json.loads((table.schema.metadata or {}).get(b"optidel", b"{}"))
        store = set_dir / meta["patch_store"] / "embeddings.npy" if meta.get("patch_store") else None
        cands = cands or ([store] if store is not None and store.is_file() else [])
        cands = cands or sorted(set_dir.glob("cache/patches-*/embeddings.npy"))
        if len(cands) != 1:
            raise FileNotFoundError(
                f"no unique embeddings file in {set_dir} (looked for embeddings.npy and cache/patches-*/embeddings.npy, "
                f"found {len(cands)}); pass --embeddings"
            )
        embeddings = cands[0]
    if not embeddings.is_file():
        raise FileNotFoundError(f"embeddings file {embeddings} does not exist")
    emb = np.load(embeddings, mmap_mode="r")
    if emb.ndim != 2:
        raise ValueError(f"{embeddings} holds shape {emb.shape}, expected (n_patches, D)")
    if "patch_id" in table.column_names and table.column("patch_id").null_count == 0:
        rows = np.asarray(table.column("patch_id").to_numpy(), dtype=np.int64)
    else:
        rows = np.arange(table.num_rows)
    if rows.size and (rows.min() < 0 or rows.max() >= emb.shape[0]):
        raise ValueError(
            f"{manifest} refers to embedding rows up to {rows.max()} but {embeddings} has {emb.shape[0]}"
        )
    return np.asarray(emb[rows], dtype=np.float32), selected


@dataclass(frozen=True)
class VinfoConfig:
    """Settings of ``optidel vinfo`` (written nowhere; the report in vinfo.json records what it used).

    Attributes:
        reference: a ``(m, D)`` .npy of reference (pool) embeddings; None = every manifest row.
        embeddings: the ``(n_patches, D)`` .npy aligned with the manifest's ``patch_id``; None = found in SET_DIR.
        k: k-means pseudo-label classes (fitted on the reference).
        n_random: random subsets of the reference, of the set's size.
        folds: cross-fitting folds.
        C: inverse L2 strength of the logistic-regression probe.
        seed: seed of the labeller, subsets, folds and bootstrap.
    """

    reference: str | None = None
    embeddings: str | None = None
    k: int = 10
    n_random: int = 20
    folds: int = 5
    C: float = 1.0
    seed: int = 0


V = VinfoConfig


@one_line_errors
def vinfo(
    set_dir: Annotated[
        Path, typer.Argument(help="An `optidel select` output folder (manifest.parquet + embeddings).")
    ],
    reference: Annotated[
        Path | None,
        option(V, "reference", "A (m, D) .npy of reference (pool) embeddings.", none="every manifest row"),
    ] = None,
    embeddings: Annotated[
        Path | None,
        option(
            V,
            "embeddings",
            "The (n_patches, D) .npy aligned with the manifest's patch_id.",
            none="found in SET_DIR",
        ),
    ] = None,
    k: Annotated[
        int | None, option(V, "k", "k-means pseudo-label classes (fitted on the reference).")
    ] = None,
    n_random: Annotated[
        int | None, option(V, "n_random", "Random subsets of the reference, same size as the set.")
    ] = None,
    folds: Annotated[int | None, option(V, "folds", "Cross-fitting folds.")] = None,
    c: Annotated[
        float | None, option(V, "C", "Inverse L2 strength of the logistic-regression probe.", "--C")
    ] = None,
    seed: Annotated[
        int | None, option(V, "seed", "Seed of the labeller, subsets, folds and bootstrap.")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """V-information of a selected set (Xu et al. 2020) against random subsets of the pool of the same size.

    Y = k-means pseudo-labels of the embeddings (faiss, k-means++ init) fitted on the reference; V = linear probes (multinomial logistic regression, fixed L2); H_V(Y|X) and H_V(Y|0) cross-fitted over folds; I_V = H_V(Y|0) - H_V(Y|X), in nats and bits, with a 95% bootstrap interval for the set and the 2.5-97.5 percentiles of the random subsets.

    Set = the manifest rows with selected = true; reference = every manifest row (or --reference). Reads SET_DIR/manifest.parquet and the embeddings (SET_DIR/embeddings.npy or the select cache), L2-normalised when the selection used cosine distance (as in its report), and writes SET_DIR/vinfo.json.

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.config import layer_config
    from optidel.runtime.atomic import atomic_write_json

    options = given(
        reference=reference, embeddings=embeddings, k=k, n_random=n_random, folds=folds, C=c, seed=seed
    )
    cfg = layer_config(VinfoConfig, config_file=config, options=options, sets=set_ or [])
    with input_errors(ValueError, FileNotFoundError):
        report = _vinfo_report(set_dir, cfg)
    atomic_write_json(set_dir / "vinfo.json", report)
    console.print(_vinfo_table(report))
    console.print(report["verdict"])
    console.print(f"-> {set_dir / 'vinfo.json'}")


def _vinfo_report(set_dir: Path, cfg: VinfoConfig) -> dict[str, Any]:
    """The V-information report of the set in ``set_dir`` (see :func:`vinfo`)."""
    from optidel.metrics.vinfo import as_embedding_array, vinfo_report

    feats, selected = load_set_embeddings(set_dir, Path(cfg.embeddings) if cfg.embeddings else None)
    if not selected.any():
        raise ValueError(f"{set_dir / 'manifest.parquet'} has no selected rows")
    if cfg.reference is None and selected.all():
        raise ValueError(
            f"every row of {set_dir / 'manifest.parquet'} is selected (an image-level manifest?): "
            "the reference would equal the set; pass --reference POOL.npy"
        )
    pool = feats if cfg.reference is None else as_embedding_array(Path(cfg.reference))
    if _selection_uses_cosine(set_dir):  # the same geometry as the selection and its report
        from optidel.metrics.embedding import l2_normalize

        feats = l2_normalize(feats)
        pool = feats if cfg.reference is None else l2_normalize(pool)
    return vinfo_report(
        feats[selected], pool, k=cfg.k, n_random=cfg.n_random, seed=cfg.seed, folds=cfg.folds, C=cfg.C
    )


def _selection_uses_cosine(set_dir: Path) -> bool:
    """Whether the selection in ``set_dir`` clustered with cosine distance (its ``config.yaml``; the default)."""
    import yaml

    cfg = set_dir / "config.yaml"
    if not cfg.is_file():
        return False
    data = yaml.safe_load(cfg.read_text()) or {}
    cluster = data.get("cluster") if isinstance(data.get("cluster"), dict) else {}
    return (
        cluster.get("distance", data.get("distance", "cosine")) == "cosine"
    )  # nested (now) or flat (before)


def _vinfo_table(report: dict[str, Any]) -> Table:
    s, r = report["set"], report["random"]
    t = Table(title=f"V-information (k = {s['k']}, log k = {s['log_k_nats']:.3f} nats)", title_justify="left")
    t.add_column("")
    t.add_column("H_V(Y|0) nats", justify="right")
    t.add_column("H_V(Y|X) nats", justify="right")
    t.add_column("I_V nats", justify="right")
    t.add_column("I_V bits", justify="right")
    t.add_column("95% interval (nats)", justify="right")
    lo, hi = s["vinfo_ci95_nats"]
    t.add_row(
        f"set (n = {s['n']})",
        f"{s['h_y_nats']:.4f}",
        f"{s['h_y_given_x_nats']:.4f}",
        f"{s['vinfo_nats']:.4f}",
        f"{s['vinfo_bits']:.4f}",
        f"{lo:.4f} - {hi:.4f}",
    )
    lo, hi = r["vinfo_p2.5_p97.5_nats"]
    t.add_row(
        f"random x{r['n_draws']}",
        f"{r['h_y_mean_nats']:.4f}",
        f"{r['h_y_given_x_mean_nats']:.4f}",
        f"{r['vinfo_mean_nats']:.4f}",
        f"{r['vinfo_mean_bits']:.4f}",
        f"{lo:.4f} - {hi:.4f}",
    )
    return t
