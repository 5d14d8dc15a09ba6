"""Masked autoencoder (MAE) on a timm ViT, written like facebookresearch/mae, built from lightly's modules.

The encoder is lightly's :class:`MaskedVisionTransformerTIMM` around a plain timm ``VisionTransformer`` (so the
pre-trained encoder exports with timm key names), with fixed 2-D sine-cosine position embeddings; the decoder is
lightly's :class:`MaskedVisionTransformerDecoderTIMM` (mask token, fixed sine-cosine position embeddings, transformer
blocks, norm) between a linear embedding and a linear per-patch pixel head. 75% of the patch tokens are masked; the
loss is the mean squared error on the masked patches, optionally on per-patch normalised pixels.

Two more public functions serve the selection stage: :func:`load_mae` rebuilds the full model (encoder + decoder)
of a run from ``RUN/mae.safetensors``, and :func:`reconstruction_error` scores images by how badly it reconstructs
them (the ``reconstruction`` hardness score).

- [0] Masked Autoencoders Are Scalable Vision Learners, He et al., 2021, https://arxiv.org/abs/2111.06377
- [1] https://github.com/facebookresearch/mae (models_mae.py)

Examples:
    >>> from optidel.models.backbone import create_backbone
    >>> mae = MAE(create_backbone("vit_tiny", img_size=32, patch_size=8))
    >>> loss = mae(torch.randn(2, 3, 32, 32))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.models import utils as lightly_utils
from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM

from optidel.models.inputs import MEAN, STD, normalize

__all__ = ["MAE", "MAE_FILE", "load_mae", "reconstruction_error", "save_mae"]

MAE_FILE = "mae.safetensors"


class MAE(nn.Module):
    """Masked autoencoder with a timm ViT encoder and a light transformer decoder.

    Args:
        vit: a timm ``VisionTransformer`` (e.g. from :func:`optidel.models.backbone.create_backbone`); its weights are
            re-initialised as in MAE (xavier-uniform linears, sine-cosine position embeddings, frozen).
        mask_ratio: fraction of patch tokens removed.
        decoder_dim: decoder token width.
        decoder_depth: decoder transformer blocks.
        decoder_heads: decoder attention heads.
        norm_pix_loss: regress per-patch normalised pixels (mean 0, variance 1 per patch and channel mix).

    Attributes:
        encoder: ``MaskedVisionTransformerTIMM``; ``encoder.vit`` is the timm backbone to export.
        patch_size: pixels per patch side.
        num_patches: L, patches per image.
        num_prefix_tokens: P, class/register tokens before the patch tokens.
    """

    def __init__(
        self,
        vit: nn.Module,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
    ):
        super().__init__()
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.encoder = MaskedVisionTransformerTIMM(vit=vit)
        # MAE drops masked tokens instead of replacing them, so the encoder's mask token is never used; freezing it
        # keeps DDP from waiting for its gradient.
        self.encoder.mask_token.requires_grad_(False)
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.num_patches = int(vit.patch_embed.num_patches)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        self.in_chans = int(vit.patch_embed.proj.in_channels)
        self.decoder_embed = nn.Linear(vit.embed_dim, decoder_dim, bias=True)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.num_patches,
            embed_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            num_prefix_tokens=self.num_prefix_tokens,
        )
        self.prediction_head = nn.Linear(decoder_dim, self.patch_size**2 * self.in_chans, bias=True)
        nn.init.xavier_uniform_(self.decoder_embed.weight)
        nn.init.zeros_(self.decoder_embed.bias)
        nn.init.xavier_uniform_(self.prediction_head.weight)
        nn.init.zeros_(self.prediction_head.bias)

    @property
    def vit(self) -> nn.Module:
        """The timm ViT backbone (the encoder to export)."""
        return self.encoder.vit

    @property
    def img_size(self) -> int:
        return int(self.vit.patch_embed.img_size[0])

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs: (N, C, H, W) -> x: (N, L, patch_size**2 * C), patches in row-major order, pixels as (p, q, c)."""
        return lightly_utils.patchify(imgs, self.patch_size)

    def random_masking(
        self, noise: torch.Tensor, mask_ratio: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image random masking by sorting noise, as in MAE: the smallest-noise patches are kept.

        Args:
            noise: (N, L) uniform noise, one value per patch (drawn by the caller from a seeded generator, so masks
                are reproducible and independent of how the batch is split over processes).
            mask_ratio: fraction of patches to mask; the model's own when None.

        Returns:
            idx_keep: (N, L_keep) indices of the visible patches, in [0, L).
            idx_mask: (N, L - L_keep) indices of the masked patches, in [0, L).
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        n, length = noise.shape
        len_keep = max(1, int(length * (1 - ratio)))
        ids_shuffle = torch.argsort(noise, dim=1)
        return ids_shuffle[:, :len_keep], ids_shuffle[:, len_keep:]

    def _with_prefix(self, idx: torch.Tensor) -> torch.Tensor:
        """Patch indices (N, K) -> sequence indices (N, P + K) that also keep the P prefix tokens."""
        p = self.num_prefix_tokens
        prefix = torch.arange(p, device=idx.device).expand(idx.shape[0], p)
        return torch.cat([prefix, idx + p], dim=1)

    def forward_encoder(self, imgs: torch.Tensor, idx_keep: torch.Tensor) -> torch.Tensor:
        """Encode the visible patches.

        Args:
            imgs: (N, C, H, W) normalised images.
            idx_keep: (N, L_keep) visible patch indices.

        Returns:
            latent: (N, P + L_keep, D) encoder tokens (prefix tokens first).
        """
        return self.encoder.encode(imgs, idx_keep=self._with_prefix(idx_keep))

    def forward_decoder(
        self, latent: torch.Tensor, idx_keep: torch.Tensor, idx_mask: torch.Tensor
    ) -> torch.Tensor:
        """Fill the masked positions with the mask token, decode, predict the pixels of the masked patches.

        Args:
            latent: (N, P + L_keep, D) from :meth:`forward_encoder`.
            idx_keep: (N, L_keep) visible patch indices.
            idx_mask: (N, L_mask) masked patch indices whose pixels to predict.

        Returns:
            pred: (N, L_mask, patch_size**2 * C) predicted (normalised, if ``norm_pix_loss``) pixels.
        """
        x = self.decoder_embed(latent)
        n, _, d = x.shape
        tokens = lightly_utils.repeat_token(
            self.decoder.mask_token, (n, self.num_prefix_tokens + self.num_patches)
        )
        tokens = lightly_utils.set_at_index(tokens, self._with_prefix(idx_keep), x.type_as(tokens))
        decoded = self.decoder(
            tokens
        )  # adds the sine-cosine position embeddings, runs the blocks and the norm
        decoded = lightly_utils.get_at_index(decoded, idx_mask + self.num_prefix_tokens)
        return self.prediction_head(decoded)

    def patch_losses(self, imgs: torch.Tensor, pred: torch.Tensor, idx_mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per predicted patch.

        Args:
            imgs: (N, C, H, W) the (normalised) input images: the targets.
            pred: (N, L_mask, patch_size**2 * C).
            idx_mask: (N, L_mask) which patches ``pred`` predicts.

        Returns:
            (N, L_mask) per-patch MSE (on per-patch normalised pixels if ``norm_pix_loss``).
        """
        target = lightly_utils.get_at_index(self.patchify(imgs), idx_mask)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return (pred.float() - target.float()).pow(2).mean(dim=-1)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, idx_mask: torch.Tensor) -> torch.Tensor:
        """Scalar loss: mean over masked patches of the per-patch MSE (see :meth:`patch_losses`)."""
        return self.patch_losses(imgs, pred, idx_mask).mean()

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Training loss of a batch.

        Args:
            imgs: (N, C, H, W) normalised images.
            noise: (N, L) masking noise; drawn from the global RNG when None.

        Returns:
            scalar loss.
        """
        if noise is None:
            noise = torch.rand(imgs.shape[0], self.num_patches, device=imgs.device)
        idx_keep, idx_mask = self.random_masking(noise)
        latent = self.forward_encoder(imgs, idx_keep)
        pred = self.forward_decoder(latent, idx_keep, idx_mask)
        return self.forward_loss(imgs, pred, idx_mask)


def build_mae(vit: nn.Module, mae_cfg: Any) -> MAE:
    """An :class:`MAE` from a timm ViT and an :class:`optidel.ssl.config.MAEConfig`."""
    return MAE(
        vit,
        mask_ratio=mae_cfg.mask_ratio,
        decoder_dim=mae_cfg.decoder_dim,
        decoder_depth=mae_cfg.decoder_depth,
        decoder_heads=mae_cfg.decoder_heads,
        norm_pix_loss=mae_cfg.norm_pix_loss,
    )


def _mae_hparams(model: MAE) -> dict[str, Any]:
    return {
        "mask_ratio": model.mask_ratio,
        "decoder_dim": model.decoder_embed.out_features,
        "decoder_depth": len(model.decoder.blocks),
        "decoder_heads": model.decoder.blocks[0].attn.num_heads,
        "norm_pix_loss": model.norm_pix_loss,
    }


def save_mae(model: MAE, path: str | Path, arch: str, timm_kwargs: dict[str, Any]) -> None:
    """Write the full MAE (encoder + decoder) state dict as safetensors, with what :func:`load_mae` needs to rebuild it.

    Metadata: ``arch`` (timm name), ``timm_kwargs``, ``mae`` (decoder sizes, mask ratio, loss) and ``normalization``.
    """
    from safetensors.torch import save as st_save

    from optidel import __version__
    from optidel.runtime.atomic import atomic_write_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "arch": arch,
        "timm_kwargs": json.dumps(timm_kwargs),
        "mae": json.dumps(_mae_hparams(model)),
        "normalization": json.dumps({"mean": MEAN, "std": STD}),
        "optidel_version": __version__,
    }
    atomic_write_bytes(path, st_save(state, metadata=metadata))


def load_mae(run_dir: str | Path, device: str | torch.device = "cpu") -> MAE:
    """Rebuild the full MAE of a pre-training run, in eval mode.

    Args:
        run_dir: an ``optidel pretrain --ssl mae`` output folder (holding ``mae.safetensors``), or that file itself.
        device: where to put the model.

    Raises:
        FileNotFoundError: no ``mae.safetensors`` (e.g. a SimCLR run).
        ValueError: an unfinished run (no DONE), a file that is not safetensors or lacks the metadata written by
            :func:`save_mae`, or weights that do not fit (all :class:`~optidel.models.encoder_io.EncoderFileError`:
            one line naming the file). Weights are read by safetensors only, never unpickled.
    """
    import timm
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from optidel.models.encoder_io import EncoderFileError, EncoderFileNotFound, state_dict_mismatch
    from optidel.runtime.run_dir import is_done

    path = Path(run_dir)
    if path.is_dir() and (path / "config.yaml").is_file() and not is_done(path):
        raise EncoderFileError(
            f"{path} is an unfinished pretrain run (no DONE); finish it with `optidel pretrain ... --resume` first"
        )
    if path.is_dir() or path.suffix != ".safetensors":
        path = path / MAE_FILE
    if not path.is_file():
        raise EncoderFileNotFound(f"{path} does not exist (only finished MAE runs write it)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "arch" not in meta or "mae" not in meta:
            raise EncoderFileError(
                f"{path}: no MAE metadata (arch, mae); not written by optidel.models.mae.save_mae"
            )
        vit = timm.create_model(meta["arch"], pretrained=False, **json.loads(meta.get("timm_kwargs") or "{}"))
        model = MAE(vit, **json.loads(meta["mae"]))
        state = load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError, TypeError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise EncoderFileError(f"{path}: not a usable MAE file ({type(e).__name__}: {reason})") from None
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise EncoderFileError(f"{path}: weights do not fit the MAE its metadata describes: {problem}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


@torch.no_grad()
def reconstruction_error(
    model: MAE,
    imgs: torch.Tensor,
    mask_ratio: float | None = None,
    n_masks: int = 4,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """How badly the MAE reconstructs each image: mean per-patch MSE on masked patches (hard = large).

    Masks are fixed and seeded: mask ``k`` comes from ``torch.Generator().manual_seed(seed + k)`` and is **the same for
    every image**, so an image's score does not depend on the batch it is in or on the other images. The score is the
    mean, over ``n_masks`` such masks, of the mean per-patch MSE over the masked patches (in the model's loss space:
    per-patch normalised pixels if it was trained with ``norm_pix_loss``). With ``mask_ratio=0`` nothing is masked and
    the error is taken over all patches from one pass (a plain autoencoding error; ``n_masks`` is then ignored).

    Args:
        model: an :class:`MAE` (see :func:`load_mae`); put in eval mode here.
        imgs: (N, 3, H, W) float in [0, 1]; resized (bilinear, antialiased) when H, W differ from the model's size.
        mask_ratio: fraction of patches masked; the model's training ratio when None.
        n_masks: number of masks averaged.
        seed: seed of the first mask.
        batch_size: images per forward pass.

    Returns:
        (N,) float32 scores on the CPU.
    """
    model.eval()
    device = next(model.parameters()).device
    ratio = model.mask_ratio if mask_ratio is None else mask_ratio
    if not 0 <= ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1), got {ratio}")
    if imgs.ndim != 4 or imgs.shape[1] != 3:
        raise ValueError(f"imgs must be (N, 3, H, W), got {tuple(imgs.shape)}")
    length = model.num_patches
    if ratio == 0:
        all_idx = torch.arange(length, device=device).unsqueeze(0)
        masks = [(all_idx, all_idx)]
    else:
        masks = []
        for k in range(n_masks):
            noise = torch.rand(1, length, generator=torch.Generator().manual_seed(seed + k)).to(device)
            masks.append(model.random_masking(noise, ratio))
    out = []
    for start in range(0, imgs.shape[0], batch_size):
        x = imgs[start : start + batch_size].to(device=device, dtype=torch.float32)
        if x.shape[-2:] != (model.img_size, model.img_size):
            x = F.interpolate(x, size=(model.img_size, model.img_size), mode="bilinear", antialias=True)
        x = normalize(x)
        n = x.shape[0]
        score = torch.zeros(n, device=device)
        for idx_keep, idx_mask in masks:
            keep, mask = idx_keep.expand(n, -1), idx_mask.expand(n, -1)
            pred = model.forward_decoder(model.forward_encoder(x, keep), keep, mask)
            score += model.patch_losses(x, pred, mask).mean(dim=1)
        out.append((score / len(masks)).float().cpu())
    return torch.cat(out)
