"""The :class:`LiteMedSAM` runtime: encode images, decode box prompts (fast paths or the package's own)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from optidel.models.litemedsam.checkpoint import load_litemedsam_module
from optidel.models.litemedsam.decoder import (
    _decode_tokens,
    _decoder_constants,
    _reference_decode,
    _upscale_masks,
)
from optidel.models.litemedsam.encoder import _encoder_forward_nhwc, _fuse_conv_bn
from optidel.models.litemedsam.memory import keep_freed_memory
from optidel.models.litemedsam.preprocess import FEATURE_SIZE, STRIDE, Normalize, preprocess

if TYPE_CHECKING:
    import torch


@dataclass
class EncodedImage:
    """One image through the encoder.

    Attributes:
        features: (256, 64, 64) float32 image embedding (padding included).
        scale: original pixels per 256-frame pixel (``max(H, W) / 256``).
        valid_hw: (h, w) of the resized image inside the 256x256 frame (the rest is zero padding).
        orig_hw: (H, W) of the original image.
    """

    features: torch.Tensor
    scale: float
    valid_hw: tuple[int, int]
    orig_hw: tuple[int, int]

    @property
    def valid_hw64(self) -> tuple[int, int]:
        """(h, w) of the embedding cells that hold image content."""
        h, w = self.valid_hw
        return max(1, math.ceil(h / STRIDE)), max(1, math.ceil(w / STRIDE))


class LiteMedSAM:
    """LiteMedSAM with fast CPU forward passes (see the module docstring).

    Args:
        device: torch device string.
        fast: use the re-arranged encoder and decoder (False: the package's own forward passes, for comparison).
        normalize: intensity normalisation (see :func:`preprocess`).
        decoder_chunk: boxes decoded per batch (bounds memory: ~40 MB per box).
        reuse_memory: call :func:`keep_freed_memory` (process-wide glibc setting; on by default because the
            proposer runs in long batch jobs where page-fault churn costs 10-17% of the time).

    Examples:
        >>> sam = LiteMedSAM()
        >>> enc = sam.encode([img])[0]
        >>> logits, iou = sam.decode(enc.features, boxes256)
    """

    def __init__(
        self,
        device: str = "cpu",
        fast: bool = True,
        normalize: Normalize = "minmax",
        decoder_chunk: int = 32,
        reuse_memory: bool = True,
    ) -> None:
        import torch

        if reuse_memory:
            keep_freed_memory()
        self.device = torch.device(device)
        self.fast = fast
        self.normalize: Normalize = normalize
        self.decoder_chunk = int(decoder_chunk)
        net = load_litemedsam_module(str(self.device))
        self.net = net
        if fast:
            self.encoder = _fuse_conv_bn(copy.deepcopy(net.image_encoder)).eval()
            self._decoder_consts = _decoder_constants(net)
        else:
            self.encoder = net.image_encoder
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder

    # ----------------------------------------------------------------------------------------------------------
    def encode(self, imgs: list[np.ndarray]) -> list[EncodedImage]:
        """imgs: list of (H, W, 3) uint8 -> one :class:`EncodedImage` each (one encoder batch)."""
        import torch

        if not imgs:
            return []
        prep = [preprocess(im, self.normalize) for im in imgs]
        x = torch.from_numpy(np.stack([p[0] for p in prep])).to(self.device)
        with torch.inference_mode():
            feats = _encoder_forward_nhwc(self.encoder, x) if self.fast else self.encoder(x)
        return [
            EncodedImage(feats[i], p[1], p[2], (int(im.shape[0]), int(im.shape[1])))
            for i, (p, im) in enumerate(zip(prep, imgs, strict=True))
        ]

    def decode(
        self, features: torch.Tensor, boxes: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode box prompts of one image, all boxes batched.

        Args:
            features: (256, 64, 64) image embedding.
            boxes: (B, 4) float ``x0, y0, x1, y1`` in the 256x256 frame.

        Returns:
            logits: (B, 256, 256) float32 mask logits (threshold at 0); iou: (B,) predicted IoU.
        """
        _, logits, iou = self.decode_masks(features, boxes)
        return logits, iou

    def decode_masks(
        self,
        features: torch.Tensor,
        boxes: torch.Tensor | np.ndarray,
        cells_hw: tuple[int, int] | None = None,
        min_pred_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`decode`, with the mask work spent only where it is used.

        The predicted IoU comes out of the transformer, before the masks are upscaled, so boxes that fail a
        predicted-IoU filter get no mask; and each mask pixel depends only on its own embedding cell, so the masks can
        be computed on the image's part of the padded frame only. Both give the masks :meth:`decode` would (up to
        float rounding: the GEMMs see fewer rows).

        Args:
            features: (256, 64, 64) image embedding.
            boxes: (B, 4) float ``x0, y0, x1, y1`` in the 256x256 frame.
            cells_hw: (h64, w64) embedding cells to compute masks on (the top-left part; default all 64 x 64), e.g.
                :attr:`EncodedImage.valid_hw64`.
            min_pred_iou: masks only for boxes whose predicted IoU, clamped to [0, 1], is above this.

        Returns:
            kept: (K,) int64 indices of the boxes that have a mask (ascending); logits: (K, 4*h64, 4*w64) float32
            mask logits; iou: (B,) predicted IoU of every box.
        """
        import torch

        boxes = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device).reshape(-1, 4)
        fh, fw = cells_hw if cells_hw is not None else (FEATURE_SIZE, FEATURE_SIZE)
        # each list starts with an empty piece, so no boxes (or no kept box) needs no special case
        kept = [torch.zeros(0, dtype=torch.long, device=self.device)]
        outs = [torch.zeros(0, STRIDE * fh, STRIDE * fw, device=self.device)]
        ious = [torch.zeros(0, device=self.device)]
        with torch.inference_mode():
            for s in range(0, boxes.shape[0], self.decoder_chunk):
                b = boxes[s : s + self.decoder_chunk]
                if self.fast:
                    keys, q, hyper = _decode_tokens(self, features, b)
                else:
                    m, q = _reference_decode(self, features, b)
                keep = (
                    torch.ones_like(q, dtype=torch.bool)
                    if min_pred_iou is None
                    else q.clamp(0, 1) > min_pred_iou
                )
                idx = torch.nonzero(keep).flatten()
                ious.append(q)
                kept.append(idx + s)
                if idx.numel() == 0:
                    continue
                if self.fast:
                    rows = idx if idx.numel() < keep.numel() else None
                    outs.append(_upscale_masks(self, keys, hyper, (fh, fw), rows))
                else:
                    outs.append(m[idx, : STRIDE * fh, : STRIDE * fw])
            return torch.cat(kept), torch.cat(outs), torch.cat(ious)
