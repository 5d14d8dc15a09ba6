"""One encoder over several datasets: one fine-tuning run per dataset and one results table.

Layout of ``out``::

    out/config.yaml            the shared protocol (dataset and out left empty)
    out/log.txt
    out/<dataset name>/        a full finetune run directory per dataset (config.yaml, metrics.json, ..., DONE)
    out/results.csv            one row per dataset (rewritten after each dataset, so partial progress is visible)
    out/results.md             the same table in Markdown
    out/DONE                   written when every dataset is done

Resumable: a dataset whose run directory has ``DONE`` is not run again, as long as its recorded config is the one
asked for now (otherwise :class:`ValueError` says which fields differ, so stale numbers never mix with new ones).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optidel.config import load_config, save_config, to_dict
from optidel.downstream.config import FinetuneConfig
from optidel.downstream.result import FinetuneResult
from optidel.log import attach_run_log, detach_run_log, logger
from optidel.runtime.atomic import atomic_write_text
from optidel.runtime.lock import run_lock
from optidel.runtime.run_dir import is_done, mark_done

RESULT_COLUMNS = [
    "dataset",
    "miou",
    "iou_fg",
    "dice_fg",
    "floor_all_background_miou",
    "floor_all_foreground_miou",
    "floor_mean_mask_prior_miou",
    "best_epoch",
    "n_train",
    "n_test",
    "train_time_s",
    "mode",
    "encoder",
]


def result_row(result: FinetuneResult) -> dict[str, Any]:
    """One results-table row from a run's result."""
    floors = result.floors
    return {
        "dataset": result.dataset["name"],
        "miou": result.test["miou"],
        "iou_fg": result.test["iou_fg"],
        "dice_fg": result.test["dice_fg"],
        "floor_all_background_miou": floors["all-background"]["miou"],
        "floor_all_foreground_miou": floors["all-foreground"]["miou"],
        "floor_mean_mask_prior_miou": floors["mean-mask prior"]["miou"],
        "best_epoch": result.best_epoch,
        "n_train": result.dataset["n_train"],
        "n_test": result.dataset["n_test"],
        "train_time_s": result.train_time_s,
        "mode": result.mode,
        "encoder": result.encoder["path"],
    }


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def results_markdown(rows: list[dict[str, Any]], encoder: str, mode: str) -> str:
    head = [
        "dataset",
        "miou",
        "iou_fg",
        "dice_fg",
        "all-background miou",
        "all-foreground miou",
        "mean-mask prior miou",
        "best epoch",
    ]
    keys = RESULT_COLUMNS[: len(head)]  # the columns that ``head`` names, in its order
    lines = [
        f"# Downstream segmentation: {encoder} ({mode})",
        "",
        "miou: set-level mean IoU over {background, foreground}; iou_fg / dice_fg: per-image foreground means. "
        "Floors are scored the same way (docs/downstream.md).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dataset_run_name(path: str | Path) -> str:
    """The run folder name of a dataset: its folder name."""
    return Path(path).resolve().name


RESUME_IGNORED = frozenset({"threads", "n_overlays"})  # fields that do not change a run's numbers


def _differences(a: FinetuneConfig, b: FinetuneConfig) -> list[str]:
    da, db = to_dict(a), to_dict(b)
    return sorted(k for k in (set(da) | set(db)) - RESUME_IGNORED if da.get(k) != db.get(k))


def evaluate(
    encoder: str | Path,
    datasets: Sequence[str | Path],
    out: str | Path,
    base: FinetuneConfig | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune ``encoder`` on every dataset with the protocol ``base`` and tabulate the test metrics.

    Args:
        encoder: an ``encoder.safetensors`` path or ``none`` (random init of ``base.arch`` / ``base.patch_size``).
        datasets: dataset folders; their folder names must differ (each names a run folder).
        out: the output folder (see module docstring).
        base: the protocol (its ``encoder``, ``dataset`` and ``out`` are replaced); defaults to FinetuneConfig().

    Returns:
        one :func:`result_row` per dataset, in the given order.
    """
    if not datasets:
        raise ValueError("no datasets given")
    base = base or FinetuneConfig()
    enc = "none" if str(encoder).lower() == "none" else str(Path(encoder).resolve())
    if enc != "none":  # a missing, pickled or misshapen encoder file is refused before anything is written
        from optidel.models.encoder_io import check_encoder

        check_encoder(enc, img_size=base.img_size)
    names = [dataset_run_name(d) for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"several datasets share the folder name {dupes}; rename or evaluate them separately"
        )
    out = Path(out)
    with run_lock(out, command="optidel evaluate"):
        return _evaluate_locked(enc, datasets, names, out, base)


def _evaluate_locked(
    enc: str, datasets: Sequence[str | Path], names: list[str], out: Path, base: FinetuneConfig
) -> list[dict[str, Any]]:
    """The body of :func:`evaluate`, run while this process holds ``out``'s lock."""
    (out / "DONE").unlink(missing_ok=True)
    shared = dataclasses.replace(base, encoder=enc, dataset="", out="")
    save_config(shared, out)
    handler = attach_run_log(out)
    rows: list[dict[str, Any]] = []
    try:
        for ds, name in zip(datasets, names, strict=True):
            run_dir = out / name
            cfg = dataclasses.replace(shared, dataset=str(Path(ds).resolve()), out=str(run_dir.resolve()))
            if is_done(run_dir) and (run_dir / "metrics.json").is_file():
                done_cfg = load_config(FinetuneConfig, run_dir / "config.yaml")
                diff = _differences(done_cfg, cfg)
                if diff:
                    raise ValueError(
                        f"{run_dir} holds a finished run with a different config (fields {diff}); "
                        "use another --out or delete that folder"
                    )
                logger.info("%s: already done, reusing %s", name, run_dir / "metrics.json")
                result = FinetuneResult.read(run_dir)
            else:
                from optidel.downstream.finetune import finetune

                logger.info("%s: fine-tuning (%d of %d)", name, len(rows) + 1, len(names))
                result = finetune(cfg)
            rows.append(result_row(result))
            atomic_write_text(out / "results.csv", results_csv(rows))
            atomic_write_text(out / "results.md", results_markdown(rows, enc, shared.mode))
        mark_done(out, {"datasets": names})
        return rows
    finally:
        detach_run_log(handler)
