"""``PretrainConfig``: everything that defines a self-supervised pre-training run, with documented defaults.

Defaults are chosen for CPU scale (2 cores, 64 px images, a few hundred to a few thousand steps) and give a falling
loss there; paper-scale settings are one ``--set`` away (see the notes on each field).

Learning rate. MAE [0] scales a base lr of 1.5e-4 linearly with batch/256 and warms up for 40 of 800 epochs. At CPU
scale the rule gives 1.5e-4 * 64/256 = 3.75e-5 for a budget of a few thousand steps, far fewer than the paper's, so
the default peak lr is a fixed 1e-3 for both methods (not scaled by batch; the pre-training runs in BENCHMARKS.md use
it), with a linear warmup over the first 5% of the steps and a cosine decay to ``min_lr``. Set ``lr`` explicitly when
changing the batch size by a lot.

Compute matching. The run length is ``steps`` (optimisation steps), never epochs: a 5% subset and the full pool
trained with the same ``steps`` and ``batch_size`` see the same number of images, so the subset is repeated ~20x more
often (the MedDEL/OptiDEL protocol: 100% -> 200 epochs, 5% -> 4000 epochs).

- [0] Masked Autoencoders Are Scalable Vision Learners, He et al., 2021, https://arxiv.org/abs/2111.06377
- [1] SimCLR, Chen et al., 2020, https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from optidel.data.sources.config import SourceOptions

SslMethod = Literal["mae", "simclr"]

DEFAULT_ARCH: dict[str, str] = {"mae": "vit_tiny", "simclr": "resnet18"}

# Fields that change how a run executes, not what it computes: they may differ between a run and its resumption.
EXECUTION_FIELDS = frozenset({"workers", "strict", "checkpoint_every", "log_every", "device"})


@dataclass(frozen=True)
class SSLAugmentConfig:
    """Batched image augmentations (see :mod:`optidel.ssl.augment` for what each does and why).

    A probability of 0 (or a range of width 0) switches an augmentation off.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)  # random resized crop: area fraction range of the crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: aspect ratio (w/h) range
    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    rotate_degrees: float = 0.0  # rotation angle drawn uniformly from [-d, d]
    color_prob: float = 0.0  # probability of applying the brightness/contrast jitter
    brightness: float = 0.0  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # contrast factor drawn from [1 - c, 1 + c]
    grayscale_prob: float = 0.0  # probability of converting to grayscale (no-op on grayscale images)
    blur_prob: float = 0.0  # probability of a gaussian blur
    blur_sigma: tuple[float, float] = (
        0.1,
        2.0,
    )  # blur sigma range in pixels at 224 px (scaled by img_size / 224)


MAE_AUGMENT = SSLAugmentConfig()  # the MAE paper's: random resized crop (0.2-1) and horizontal flip
SIMCLR_AUGMENT = SSLAugmentConfig(
    crop_scale=(0.2, 1.0),  # SimCLR uses 0.08-1; lesions are small, so crops keep at least 20% of the image
    hflip=0.5,
    vflip=0.5,  # endoscopy/ultrasound/fundus images have no canonical up-down orientation worth learning
    rotate_degrees=15.0,
    color_prob=0.8,
    brightness=0.2,  # mild: intensities carry diagnostic meaning
    contrast=0.2,
    grayscale_prob=0.2,
    blur_prob=0.5,
)


@dataclass(frozen=True)
class MAEConfig:
    """Masked autoencoder settings [0]. The decoder is light (2 blocks of width 128) for CPU scale; the paper's
    ViT-B MAE uses 8 blocks of width 512 (``mae.decoder_dim=512 mae.decoder_depth=8 mae.decoder_heads=16``)."""

    mask_ratio: float = 0.75  # fraction of patch tokens removed from the encoder's input
    decoder_dim: int = 128  # width of the decoder's tokens
    decoder_depth: int = 2  # number of decoder transformer blocks
    decoder_heads: int = 4  # attention heads per decoder block
    norm_pix_loss: bool = True  # regress per-patch normalised pixels (the paper's better variant)
    augment: SSLAugmentConfig = field(default_factory=lambda: MAE_AUGMENT)


@dataclass(frozen=True)
class SimCLRConfig:
    """SimCLR settings [1]: two augmented views, a projection head, NT-Xent loss."""

    temperature: float = 0.5  # NT-Xent temperature (SimCLR's value for small batches)
    proj_hidden_dim: int = 512  # hidden width of the 2-layer projection MLP
    proj_dim: int = 128  # output width of the projection MLP (the space the loss works in)
    sync_bn: bool = (
        True  # with several GPUs: batch-norm statistics over the global batch (CPU/gloo: per rank)
    )
    augment: SSLAugmentConfig = field(default_factory=lambda: SIMCLR_AUGMENT)


@dataclass(frozen=True)
class PretrainConfig:
    """A pre-training run.

    Attributes:
        data: pool sources: image folders, ``PATH:SPLIT`` of segmentation datasets, ``optidel select`` outputs.
        ssl: ``mae`` or ``simclr``.
        arch: backbone (``vit_tiny|vit_small|vit_base|resnet18|resnet50`` or a timm name); None = ``vit_tiny`` for
            MAE, ``resnet18`` for SimCLR (fast at 64 px on a CPU).
        img_size: images are decoded and resized (stretched) to ``img_size`` square once, into the array cache.
        patch_size: ViT patch size (ignored for ResNets). 8 at 64 px gives an 8x8 token grid; use 16 at 224 px.
        batch_size: global batch (split evenly over DDP ranks).
        steps: optimisation steps (the compute budget; see module docstring).
        lr: peak learning rate (AdamW), reached after the warmup; not scaled by batch size.
        min_lr: final learning rate of the cosine decay.
        warmup_fraction: fraction of ``steps`` with a linear warmup from ~0 to ``lr``.
        weight_decay: AdamW weight decay (not applied to biases, norms, tokens and position embeddings).
        betas: AdamW betas (MAE's 0.9, 0.95).
        clip_grad: clip the global gradient norm to this value; 0 = off.
        seed: seeds model init, data order, augmentations and masks (all a function of seed and step).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        device: ``auto`` (the rank's GPU if there is one, else CPU), ``cpu`` or ``cuda``.
        workers: threads decoding images into the array cache.
        sources: how DICOM, NIfTI, multi-page TIFF and whole-slide files become 2D images (docs/formats.md).
        strict: a bad image aborts the run (default: it is skipped and logged).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (and always at the end).
        log_every: append a row to ``metrics.csv`` every this many steps.
    """

    data: tuple[str, ...] = ()
    ssl: SslMethod = "mae"
    arch: str | None = None
    img_size: int = 64
    patch_size: int = 8
    batch_size: int = 64
    steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 0.0
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 0.0
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    mae: MAEConfig = field(default_factory=MAEConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    sources: SourceOptions = field(default_factory=SourceOptions)
    workers: int = 2
    strict: bool = False
    checkpoint_every: int = 500
    log_every: int = 10

    def resolved(self) -> PretrainConfig:
        """This config with method defaults filled in (``arch``); what ``config.yaml`` records."""
        if self.arch is None:
            return dataclasses.replace(self, arch=DEFAULT_ARCH[self.ssl])
        return self

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for values that cannot work."""
        checks = [
            (bool(self.data), "data: give at least one pool source"),
            (self.ssl in DEFAULT_ARCH, f"ssl: {self.ssl!r} is not one of {sorted(DEFAULT_ARCH)}"),
            (self.img_size >= 8, f"img_size: {self.img_size} is too small (>= 8)"),
            (self.patch_size >= 1, f"patch_size: {self.patch_size} must be positive"),
            (self.batch_size >= 2, f"batch_size: {self.batch_size} must be >= 2"),
            (self.steps >= 1, f"steps: {self.steps} must be >= 1"),
            (self.lr > 0, f"lr: {self.lr} must be positive"),
            (0 <= self.min_lr <= self.lr, f"min_lr: {self.min_lr} must be in [0, lr]"),
            (0 <= self.warmup_fraction < 1, f"warmup_fraction: {self.warmup_fraction} must be in [0, 1)"),
            (self.checkpoint_every >= 1, f"checkpoint_every: {self.checkpoint_every} must be >= 1"),
            (self.log_every >= 1, f"log_every: {self.log_every} must be >= 1"),
            (0 < self.mae.mask_ratio < 1, f"mae.mask_ratio: {self.mae.mask_ratio} must be in (0, 1)"),
            (self.simclr.temperature > 0, f"simclr.temperature: {self.simclr.temperature} must be positive"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        from optidel.models.backbone import check_patch_grid, is_vit

        arch = self.arch or DEFAULT_ARCH[self.ssl]
        if self.ssl == "mae" and not is_vit(arch):
            raise ValueError(f"arch: MAE needs a ViT (vit_tiny, vit_small, vit_base), got {arch!r}")
        check_patch_grid(arch, self.img_size, self.patch_size)
        for name in ("mae", "simclr"):
            aug: SSLAugmentConfig = getattr(self, name).augment
            lo, hi = aug.crop_scale
            if not 0 < lo <= hi <= 1:
                raise ValueError(
                    f"{name}.augment.crop_scale: {aug.crop_scale} must satisfy 0 < lo <= hi <= 1"
                )
