"""``optidel vinfo``: V-information of a selected set against random pool subsets (registered in :mod:`optidel.cli`).

X is the patches' embedding, the representation the selection scored. Y (``--labels``) is, by default, **not** built
from it, so that a margin-hard set is not hard to label by construction (docs/theory.md, "A Y that is not the
hardness"):

- ``lesion``: the lesion share of each patch box from its pool image's mask, 3 bins (downstream labels); needs a
  mask for every patch's image (pools of ``DATASET:SPLIT`` segmentation datasets, read from ``SET_DIR/config.yaml``);
- ``lowlevel``: k-means (``k``) of colour/texture statistics of the patch pixels;
- ``embedding``: k-means (``k``) of the same embeddings - circular, kept for comparison (the only choice with
  ``--reference``, which gives embeddings and no pixels);
- ``auto``: lesion when every image has a mask, else lowlevel - the rule of the select report.

Rows, pixels and label sources are those of the select report
(:mod:`optidel.select.stages.vinfo_labels`); the estimator is :func:`optidel.metrics.vinfo.vinfo_report`. The
command lives in ``select`` rather than ``theory`` because reading a selection's images and masks needs ``data``.

Settings: :func:`optidel.config.layer_config` over :class:`VinfoConfig` (defaults < ``--config`` < named options <
``--set``); help texts read the defaults from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from optidel.log import logger
from optidel.metrics.vinfo import LabelSource
from optidel.options import ConfigOption, SetOption, given, input_errors, option
from optidel.runtime.errors import one_line_errors

console = Console()
LABELS = ("auto", "lesion", "lowlevel", "embedding")
# the select report's own estimate (the benchmark reads it): never overwritten here
SELECT_VINFO = "vinfo.json"


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
    names = pq.read_schema(manifest).names
    # only the columns used here: a manifest has a row per pool patch and some 25 columns, paths among them
    table = pq.read_table(manifest, columns=[c for c in ("selected", "patch_id") if c in names])
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
    """Settings of ``optidel vinfo`` (written nowhere; the report it writes records what it used).

    Attributes:
        reference: a ``(m, D)`` .npy of reference (pool) embeddings (only with ``labels = embedding``); None = the
            manifest's rows.
        embeddings: the ``(n_patches, D)`` .npy aligned with the manifest's ``patch_id``; None = found in SET_DIR.
        labels: Y: ``auto`` | ``lesion`` | ``lowlevel`` | ``embedding`` (module docstring).
        k: k-means pseudo-label classes of ``lowlevel`` and ``embedding`` (fitted on the pool side).
        n_random: random subsets of the pool side, of the set's size.
        folds: cross-fitting folds.
        C: inverse L2 strength of the logistic-regression probe.
        seed: seed of the row samples, the labeller, subsets, folds and bootstrap.
    """

    reference: str | None = None
    embeddings: str | None = None
    labels: str = "auto"
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
    labels: Annotated[
        str | None,
        option(
            V,
            "labels",
            "Y: auto (lesion when every patch's image has a mask, else lowlevel), lesion (lesion share of the "
            "patch box from the pool's masks, 3 bins), lowlevel (k-means of colour/texture statistics of the "
            "patch pixels), embedding (k-means of the same embeddings: circular).",
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        option(
            V,
            "reference",
            "A (m, D) .npy of reference (pool) embeddings; only with --labels embedding.",
            none="the manifest's rows",
        ),
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
        int | None, option(V, "k", "k-means classes of lowlevel and embedding labels (fitted on the pool).")
    ] = None,
    n_random: Annotated[
        int | None, option(V, "n_random", "Random subsets of the pool, same size as the set.")
    ] = None,
    folds: Annotated[int | None, option(V, "folds", "Cross-fitting folds.")] = None,
    c: Annotated[
        float | None, option(V, "C", "Inverse L2 strength of the logistic-regression probe.", "--C")
    ] = None,
    seed: Annotated[
        int | None, option(V, "seed", "Seed of the row samples, labeller, subsets, folds and bootstrap.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Report file: SET_DIR/vinfo-LABELS.json by default (LABELS = the Y used); not SET_DIR/vinfo.json.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """V-information of a selected set (Xu et al. 2020) against random subsets of the pool of the same size.

    X = the patches' embeddings (L2-normalised when the selection used cosine distance, as in its report); Y = --labels, by default not built from the embeddings that define hardness; V = linear probes (multinomial logistic regression, fixed L2); H_V(Y|X) and H_V(Y|0) cross-fitted over folds; I_V = H_V(Y|0) - H_V(Y|X), in nats and bits, with a 95% bootstrap interval for the set and the 2.5-97.5 percentiles of the random subsets.

    Set = the manifest rows with selected = true (a seeded sample of 5,000 above that); pool = every manifest row (a seeded sample of 10,000 above that), or --reference with --labels embedding. lesion and lowlevel read the patch pixels from the manifest's image_path (relative paths from the current folder) and the masks of the pool sources in SET_DIR/config.yaml. Writes SET_DIR/vinfo-<label source>.json (or --out); the select report's SET_DIR/vinfo.json is left as it is.

    Precedence: defaults < --config FILE < named options < --set key=value.
    """
    from optidel.config import layer_config
    from optidel.runtime.atomic import atomic_write_json
    from optidel.runtime.errors import os_errors

    options = given(
        reference=reference,
        embeddings=embeddings,
        labels=labels,
        k=k,
        n_random=n_random,
        folds=folds,
        C=c,
        seed=seed,
    )
    cfg = layer_config(VinfoConfig, config_file=config, options=options, sets=set_ or [])
    with input_errors(ValueError, FileNotFoundError):
        _check_out(set_dir, out)
        report = vinfo_set_report(set_dir, cfg)
    est = report["estimator"]
    target = out if out is not None else set_dir / f"vinfo-{est['label_source']}.json"
    with os_errors(target):
        atomic_write_json(target, report)
    console.print(_vinfo_table(report))
    if est["circular"]:
        console.print(
            "warning: Y is built from the embeddings that define hardness (circular): a margin-hard set is hard "
            "to label by construction; use --labels lesion or lowlevel to judge the set."
        )
    console.print(report["verdict"])
    console.print(f"-> {target}")


def _check_out(set_dir: Path, out: Path | None) -> None:
    """Refuse ``--out`` = the select report's own ``vinfo.json`` (the benchmark reads it)."""
    if out is not None and out.resolve() == (set_dir / SELECT_VINFO).resolve():
        raise ValueError(
            f"--out {out} is the select report's V-information (the benchmark reads it); choose another file"
        )


def vinfo_set_report(set_dir: Path, cfg: VinfoConfig) -> dict[str, Any]:
    """The V-information report of the set in ``set_dir`` (see :func:`vinfo`); writes nothing.

    Raises:
        ValueError / FileNotFoundError naming the file and the problem.
    """
    from optidel.metrics.embedding import l2_normalize
    from optidel.metrics.vinfo import as_embedding_array, vinfo_report
    from optidel.select.stages.vinfo_labels import vinfo_rows

    if cfg.labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)} (got {cfg.labels!r})")
    if cfg.reference is not None and cfg.labels != "embedding":
        raise ValueError(
            f"--reference {cfg.reference} gives embeddings only (no pixels): use it with --labels embedding "
            f"(labels is {cfg.labels!r})"
        )
    manifest = set_dir / "manifest.parquet"
    feats, selected = load_set_embeddings(set_dir, Path(cfg.embeddings) if cfg.embeddings else None)
    if not selected.any():
        raise ValueError(f"{manifest} has no selected rows")
    if cfg.reference is None and selected.all():
        raise ValueError(
            f"every row of {manifest} is selected (an image-level manifest?): the pool would equal the set; "
            "pass --reference POOL.npy with --labels embedding"
        )
    select_cfg = _select_config(set_dir)
    cosine = _uses_cosine(select_cfg)
    if cosine:  # the same geometry as the selection and its report
        feats = l2_normalize(feats)
    sel, pool_rows = vinfo_rows(selected, cfg.seed)
    common = {"k": cfg.k, "n_random": cfg.n_random, "seed": cfg.seed, "folds": cfg.folds, "C": cfg.C}
    if cfg.reference is not None:
        pool = as_embedding_array(Path(cfg.reference))
        report = vinfo_report(feats[sel], l2_normalize(pool) if cosine else pool, **common)
    elif cfg.labels == "embedding":
        report = vinfo_report(feats[sel], feats[pool_rows], **common)
    else:
        src, s_rows, p_rows = _pixel_labels(set_dir, cfg, select_cfg, sel, pool_rows)
        report = vinfo_report(feats[s_rows], feats[p_rows], labels=src, **common)
    report["estimator"] |= {
        "labels_option": cfg.labels,
        "set_dir": str(set_dir),
        "reference_file": cfg.reference,
        "n_selected_total": int(selected.sum()),
        "n_pool_total": int(selected.size),
        "l2_normalized": cosine,
    }
    return report


def _pixel_labels(
    set_dir: Path, cfg: VinfoConfig, select_cfg: dict[str, Any], sel: np.ndarray, pool_rows: np.ndarray
) -> tuple[LabelSource, np.ndarray, np.ndarray]:
    """Y from the patch pixels and masks (``lesion`` / ``lowlevel`` / ``auto``), and the set and pool rows it labels.

    Rows whose image cannot be decoded are dropped (as in the select report); a missing image file is an error.
    """
    from optidel.select.stages.vinfo_labels import label_sources, mask_paths

    manifest = set_dir / "manifest.parquet"
    image_index, boxes, paths = _manifest_patches(manifest)
    used = np.unique(image_index[np.union1d(sel, pool_rows)])
    _check_images(manifest, paths, used)
    if cfg.labels == "lowlevel":
        masks: list[Path | None] = [None] * len(paths)
    else:
        pool = select_cfg.get("pool") or []
        masks = mask_paths([str(s) for s in pool], paths)
        without = [int(i) for i in used if masks[int(i)] is None]
        if cfg.labels == "lesion" and without:
            where = f"pool sources {list(pool)}" if pool else f"no key 'pool' in {set_dir / 'config.yaml'}"
            raise ValueError(
                f"--labels lesion needs a mask for every patch's image, but {len(without)} of {used.size} images "
                f"in {manifest} have none (e.g. {paths[without[0]]}; {where}); use --labels lowlevel"
            )
        if without:
            logger.info("vinfo: %d of %d images have no mask: Y = lowlevel", len(without), used.size)
    sources, s_rows, p_rows = label_sources(paths, image_index, boxes, masks, sel, pool_rows, cfg.k, cfg.seed)
    by_name = {s.name: s for s in sources}
    if cfg.labels == "lesion" and "lesion" not in by_name:
        raise ValueError(
            f"--labels lesion: the lesion share of some patches of {manifest} could not be read (a mask unreadable "
            "or of another size than its image; the log names it); use --labels lowlevel"
        )
    if s_rows.size == 0:
        raise ValueError(f"no image of a selected patch in {manifest} could be decoded")
    name = "lesion" if cfg.labels != "lowlevel" and "lesion" in by_name else "lowlevel"
    return by_name[name], s_rows, p_rows


def _manifest_patches(manifest: Path) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Each manifest row's image position and box, and the image file of each position.

    Returns:
        image_index: (n_rows,) int64; boxes: (n_rows, 4) int64 ``x0, y0, x1, y1``; paths: the ``image_path`` of
        each image position (None where no row has it).
    """
    import pyarrow.parquet as pq

    cols = ["image_index", "image_path", "x0", "y0", "x1", "y1"]
    missing = [c for c in cols if c not in pq.read_schema(manifest).names]
    if missing:
        raise ValueError(f"{manifest} has no column(s) {', '.join(missing)}: cannot read the patch pixels")
    table = pq.read_table(manifest, columns=cols)
    image_index = np.asarray(table.column("image_index").to_numpy(zero_copy_only=False), np.int64)
    boxes = np.stack(
        [np.asarray(table.column(c).to_numpy(zero_copy_only=False), np.int64) for c in cols[2:]], axis=1
    )
    uniq, first = np.unique(image_index, return_index=True)
    paths: list[str | None] = [None] * (int(uniq.max()) + 1 if uniq.size else 0)
    for i, p in zip(uniq, table.column("image_path").take(first).to_pylist(), strict=True):
        paths[int(i)] = p
    return image_index, boxes, paths


def _check_images(manifest: Path, paths: list[str | None], used: np.ndarray) -> None:
    """A one-line error naming the first image of ``used`` whose file is not there."""
    from optidel.data.sources.locator import real_file

    gone = [int(i) for i in used if paths[int(i)] is None or not real_file(str(paths[int(i)])).is_file()]
    if gone:
        raise FileNotFoundError(
            f"image {paths[gone[0]]} named in {manifest} does not exist ({len(gone)} of {used.size} images "
            f"missing; a relative image_path is read from the current folder {Path.cwd()}); run from the folder "
            "`optidel select` ran in, or use --labels embedding"
        )


def _select_config(set_dir: Path) -> dict[str, Any]:
    """The selection's ``config.yaml`` as a dict ({} when there is none)."""
    import yaml

    path = set_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from e
    return data if isinstance(data, dict) else {}


def _uses_cosine(select_cfg: dict[str, Any]) -> bool:
    """Whether the selection clustered with cosine distance (its config; the default), nested (now) or flat."""
    if not select_cfg:
        return False
    cluster = select_cfg.get("cluster") if isinstance(select_cfg.get("cluster"), dict) else {}
    return cluster.get("distance", select_cfg.get("distance", "cosine")) == "cosine"


def _vinfo_table(report: dict[str, Any]) -> Table:
    est, s, r = report["estimator"], report["set"], report["random"]
    circular = "CIRCULAR: built from the scored embeddings" if est["circular"] else "not circular"
    t = Table(
        title=f"V-information, Y = {est['label_source']} ({circular}; k = {s['k']}, "
        f"log k = {s['log_k_nats']:.3f} nats)",
        title_justify="left",
        caption=f"Y: {est['labels']}. V: {est['family']}.",
        caption_justify="left",
    )
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
