"""Downstream evaluation: segmentation fine-tuning / probing of an encoder and mIoU across datasets.

Python API (the CLI ``optidel finetune`` / ``optidel evaluate`` is a thin layer over it)::

    from optidel.downstream import FinetuneConfig, evaluate, finetune

    result = finetune(FinetuneConfig(encoder="run/encoder.safetensors", dataset="data/kvasir-seg", out="ft/kvasir"))
    result.miou, result.floors["mean-mask prior"]["miou"]  # a FinetuneResult (the typed metrics.json)
    rows = evaluate("run/encoder.safetensors", ["data/kvasir-seg", "data/busi"], "eval/run")

These modules import only numpy at load time; torch and timm are imported when a function runs. The package
attributes ``finetune`` and ``evaluate`` are the functions; reach the modules of the same name through
``importlib.import_module("optidel.downstream.finetune")``.
"""

from __future__ import annotations

from optidel.downstream.config import FinetuneAugmentConfig, FinetuneConfig
from optidel.downstream.evaluate import evaluate
from optidel.downstream.finetune import finetune
from optidel.downstream.result import FinetuneResult

__all__ = ["FinetuneAugmentConfig", "FinetuneConfig", "FinetuneResult", "evaluate", "finetune"]
