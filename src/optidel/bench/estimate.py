"""How long a benchmark grid takes on a 2-core CPU machine, from the rates measured in BENCHMARKS.md.

An estimate, not a measurement: it scales each measured rate by the work of a stage (images seen, pixels, tokens,
model size) and assumes an idle machine. The rates (``RATES``) are the measured ones; the scaling factors are stated
where they are used. A GPU config gets a CPU estimate too, which says how far it is from being CPU-sized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Measured on this project's 2-core CPU machine (BENCHMARKS.md): seconds or images per second.
RATES = {
    "sam_s_per_image": 1.5,  # LiteMedSAM patch proposal + embedding ("Selection: optidel select ... end to end")
    "select_rest_s_per_image": 0.1,  # k-means, scores, mosaics per selection (demo: 11 s for 100 images)
    "grid_patches_s_per_image": 0.05,  # grid patches with a small embedder (no SAM)
    "mae_vit_tiny8_64px_img_per_s": 80.0,  # "Pre-training throughput" (ViT-Tiny/8 at 64 px)
    "simclr_resnet18_64px_img_per_s": 30.0,  # SimCLR, ResNet-18 at 64 px, two views per image
    "probe_64px_s": 80.0,  # frozen-encoder probe, 300 steps at 64 px ("The comparison benchmark": ~60 min for 45)
    "finetune_vs_probe": 3.0,  # full fine-tuning trains the encoder too: backward through it (assumed ~3x)
}
# Relative cost of an encoder forward+backward against the measured one of its family (parameter-count ratio).
ARCH_COST = {
    "vit_tiny": 1.0,
    "vit_small": 3.9,
    "vit_base": 15.2,
    "vit_large": 53.0,
    "resnet18": 1.0,
    "resnet50": 2.1,
}


@dataclass(frozen=True)
class StageEstimate:
    """One stage of the grid: how many runs, how many finished, and seconds for all / for the remaining ones."""

    stage: str
    runs: int
    done: int
    seconds_total: float
    seconds_left: float

    @classmethod
    def of(cls, stage: str, seconds: list[float], done: list[bool]) -> StageEstimate:
        """From one estimate and one done flag per run."""
        left = sum(s for s, d in zip(seconds, done, strict=True) if not d)
        return cls(stage, len(seconds), sum(done), float(sum(seconds)), float(left))


def _arch_cost(arch: str | None) -> float:
    return ARCH_COST.get(arch or "", 1.0)


def pretrain_seconds(cfg: Any) -> float:
    """Seconds of one pre-training (a resolved :class:`optidel.ssl.config.PretrainConfig`).

    MAE: the ViT-Tiny/8 64 px rate, scaled by encoder tokens ((img/patch)^2 against 64) and model size. SimCLR: the
    ResNet-18 64 px rate, scaled by pixels and model size.
    """
    images = cfg.steps * cfg.batch_size
    if cfg.ssl == "mae":
        tokens = (cfg.img_size / cfg.patch_size) ** 2 / 64.0
        rate = RATES["mae_vit_tiny8_64px_img_per_s"] / (tokens * _arch_cost(cfg.arch))
    else:
        rate = RATES["simclr_resnet18_64px_img_per_s"] / ((cfg.img_size / 64.0) ** 2 * _arch_cost(cfg.arch))
    return images / rate


def finetune_seconds(cfg: Any) -> float:
    """Seconds of one fine-tuning (a :class:`optidel.downstream.config.FinetuneConfig`): the measured probe time,
    scaled by steps (against 300), pixels (against 64 px), model size, and x3 for full fine-tuning."""
    scale = max(cfg.min_steps, 1) / 300.0 * (cfg.img_size / 64.0) ** 2 * _arch_cost(cfg.arch)
    if cfg.mode != "probe":
        scale *= RATES["finetune_vs_probe"]
    return RATES["probe_64px_s"] * scale


def selection_seconds(pool_images: int, uses_sam: bool) -> tuple[float, float]:
    """(seconds of the shared patch stage, seconds of each selection after it) for a pool of ``pool_images``."""
    per_image = RATES["sam_s_per_image"] if uses_sam else RATES["grid_patches_s_per_image"]
    return pool_images * per_image, 10.0 + pool_images * RATES["select_rest_s_per_image"]


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
