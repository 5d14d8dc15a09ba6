"""The downstream fine-tuning protocol as one typed config (see ``docs/downstream.md`` for why each default).

Every field has a default; ``optidel finetune`` builds it with :func:`optidel.config.resolve_config` from the
defaults, an optional YAML file (``--config``), ``--set key=value`` overrides and the named command-line options. The
resolved config is written into every run directory as ``config.yaml``.

Examples:
    >>> from optidel.config import resolve_config
    >>> cfg = resolve_config(FinetuneConfig, overrides=["dataset=data/kvasir-seg", "epochs=5"])
    >>> cfg.epochs, cfg.mode
    (5, 'finetune')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from optidel.data.sources.config import SourceOptions

Mode = Literal["finetune", "probe"]
LossName = Literal["ce", "ce+dice"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FinetuneAugmentConfig:
    """Training-time augmentation (applied on the fly to each batch, seeded; never to validation or test).

    Attributes:
        enabled: switch all augmentation off with ``false``.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip (endoscopy, ultrasound and fundus images have no canonical up).
        rotate_deg: rotation drawn uniformly from [-rotate_deg, rotate_deg].
        scale: zoom factor drawn from [1 - scale, 1 + scale].
        translate: shift drawn from [-translate, translate] as a fraction of the image side.
        brightness: additive brightness shift drawn from [-brightness, brightness] (pixel values in [0, 1]).
        contrast: contrast factor drawn from [1 - contrast, 1 + contrast] around each image's mean.
    """

    enabled: bool = True
    hflip: float = 0.5
    vflip: float = 0.5
    rotate_deg: float = 15.0
    scale: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass(frozen=True)
class FinetuneConfig:
    """One segmentation fine-tuning (or frozen-probe) run of one encoder on one dataset.

    Attributes:
        encoder: path of an ``encoder.safetensors`` (arch and patch size come from its metadata), or ``none`` for a
            randomly initialised backbone of ``arch`` / ``patch_size`` (the floor every pre-training must beat).
        dataset: a segmentation dataset folder (``images/``, ``masks/``, ``splits.csv``; see optidel.data.segmentation).
        out: the run directory.
        arch: backbone when ``encoder`` is ``none`` (``vit_tiny``, ``vit_small``, ``resnet18``, any timm name).
        patch_size: ViT patch size when ``encoder`` is ``none`` (ignored for CNNs and for encoder files).
        img_size: working resolution: images and masks are resized to img_size x img_size; training and scoring
            happen at this size.
        mode: ``finetune`` trains encoder and head; ``probe`` freezes the encoder (eval mode) and trains the head.
        epochs: training epochs (raised when needed so that training has at least ``min_steps`` optimiser steps).
        min_steps: the fewest optimiser steps a run takes (small datasets such as DRIVE get more epochs).
        batch_size: training batch size.
        lr: peak learning rate of the head (AdamW).
        encoder_lr_mult: the encoder's peak lr is ``lr * encoder_lr_mult`` in finetune mode.
        layer_decay: layer-wise lr decay inside the encoder (BEiT/MAE style, 1.0 = off): block i of n gets an extra
            factor ``layer_decay ** (n - i)``.
        weight_decay: AdamW weight decay (not applied to biases, norms, position embeddings and tokens).
        warmup_fraction: linear warmup over this fraction of all steps, then cosine decay to 0.
        loss: ``ce`` (cross-entropy) or ``ce+dice`` (cross-entropy plus a soft foreground Dice loss).
        head_dim: channels of the head's common embedding (SegFormer's ``embed_dim``).
        num_levels: how many encoder blocks/stages feed the head (evenly spaced ViT blocks, the last ResNet stages).
        head_dropout: dropout before the head's classifier.
        label_fraction: train on this seeded fraction of the labelled training part (after the validation hold-out).
        val_fraction: seeded fraction of the train split held out for validation and best-epoch choice.
        patience: stop when validation mIoU has not improved for this many epochs (0 = never stop early).
        eval_batch_size: batch size for validation and test inference.
        seed: seeds the validation split, label subset, initialisation, batch order, augmentation and dropout.
        mean: per-channel normalisation mean (RGB, [0, 1] scale); empty = the encoder file's ``mean`` if it records
            one, else ImageNet's.
        std: per-channel normalisation std (as ``mean``).
        n_overlays: how many best and worst test images ``overlays.png`` shows (each).
        threads: torch CPU threads for this run (0 = leave torch's default); restored when the run ends. Set it
            below the core count when other jobs share the cores (timings in BENCHMARKS.md). Bit-identical metrics
            are promised for the same seed and the same thread count.
        augment: training augmentation.
        sources: how DICOM, NIfTI and multi-page TIFF files (and label volumes) become 2D pairs (docs/formats.md).
    """

    encoder: str = "none"
    dataset: str = ""
    out: str = ""
    arch: str = "vit_tiny"
    patch_size: int = 16
    img_size: int = 128
    mode: Mode = "finetune"
    epochs: int = 20
    min_steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    encoder_lr_mult: float = 0.1
    layer_decay: float = 1.0
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    loss: LossName = "ce+dice"
    head_dim: int = 128
    num_levels: int = 4
    head_dropout: float = 0.1
    label_fraction: float = 1.0
    val_fraction: float = 0.1
    patience: int = 0
    eval_batch_size: int = 32
    seed: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    n_overlays: int = 4
    threads: int = 0
    augment: FinetuneAugmentConfig = FinetuneAugmentConfig()
    sources: SourceOptions = SourceOptions()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value cannot work."""
        if not self.dataset:
            raise ValueError("dataset is not set (give --dataset PATH)")
        if self.img_size < 16:
            raise ValueError(f"img_size must be >= 16, got {self.img_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the head uses batch norm), got {self.batch_size}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.encoder_lr_mult < 0:
            raise ValueError(
                f"lr must be > 0 and encoder_lr_mult >= 0, got {self.lr}, {self.encoder_lr_mult}"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if len(self.mean) not in (0, 3) or len(self.std) not in (0, 3):
            raise ValueError(f"mean and std need 3 values each (or none), got {self.mean}, {self.std}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {self.num_levels}")
        from optidel.models.backbone import check_patch_grid

        if self.encoder.lower() == "none":  # an encoder file's patch size is checked when it is read
            check_patch_grid(self.arch, self.img_size, self.patch_size)
