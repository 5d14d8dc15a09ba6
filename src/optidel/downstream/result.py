"""What a fine-tuning run ends with: :class:`FinetuneResult`, the typed view of its ``metrics.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FinetuneResult"]

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class FinetuneResult:
    """One fine-tuning (or probe) run of one encoder on one dataset.

    The metric groups stay mappings of metric name to value, exactly as in ``metrics.json`` (whose
    ``metric_definitions`` say what each name means); everything else is a typed field.

    Attributes:
        run_dir: the run folder (holds ``metrics.json``, ``per_image.csv``, ``history.csv``, ``overlays.png``).
        mode: ``finetune`` or ``probe``.
        test: test-split scores: ``miou``, ``iou_fg``, ``dice_fg``, ``iou_background``, ``iou_foreground``,
            ``pixel_accuracy``, ``n_images``.
        floors: the same scores of the trivial predictors, by name (``all-background``, ``all-foreground``,
            ``mean-mask prior``).
        dataset: ``name``, ``path``, ``n_train``, ``n_train_available``, ``n_val``, ``n_test``, ``label_fraction``,
            ``fov_scored``, ``split_source``.
        encoder: ``path``, ``random_init``, ``arch``, ``patch_size``, ``metadata``, ``n_params``.
        best_epoch: the epoch whose weights were tested (1-based).
        best_val_miou: its validation mIoU.
        epochs_run: epochs trained (fewer than planned after an early stop).
        history: one row per epoch: ``epoch``, ``train_loss``, ``val_miou``, ``val_dice_fg``, ``lr``.
        train_time_s: training wall time.
        metrics: the whole ``metrics.json`` (timings, config, normalisation, definitions).
    """

    run_dir: Path
    mode: str
    test: dict[str, float]
    floors: dict[str, dict[str, float]]
    dataset: dict[str, Any]
    encoder: dict[str, Any]
    best_epoch: int
    best_val_miou: float
    epochs_run: int
    history: tuple[dict[str, Any], ...]
    train_time_s: float
    metrics: dict[str, Any]

    @property
    def miou(self) -> float:
        """Test mIoU (the paper's metric)."""
        return float(self.test["miou"])

    @classmethod
    def from_metrics(cls, run_dir: str | Path, metrics: dict[str, Any]) -> FinetuneResult:
        """The result of the run in ``run_dir`` whose ``metrics.json`` content is ``metrics``."""
        return cls(
            run_dir=Path(run_dir),
            mode=metrics["mode"],
            test=metrics["test"],
            floors=metrics["floors"],
            dataset=metrics["dataset"],
            encoder=metrics["encoder"],
            best_epoch=int(metrics["best_epoch"]),
            best_val_miou=float(metrics["best_val_miou"]),
            epochs_run=int(metrics["epochs_run"]),
            history=tuple(metrics["history"]),
            train_time_s=float(metrics["train_time_s"]),
            metrics=metrics,
        )

    @classmethod
    def read(cls, run_dir: str | Path) -> FinetuneResult:
        """Read a finished run's ``metrics.json``.

        Raises:
            FileNotFoundError: ``run_dir`` has no ``metrics.json``.
            ValueError: the file is not a fine-tuning ``metrics.json`` (the message names it).
        """
        path = Path(run_dir) / METRICS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (not a finished finetune run)")
        try:
            return cls.from_metrics(run_dir, json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a finetune metrics.json ({type(e).__name__}: {e})") from e
