"""A SegFormer-style all-MLP segmentation head on a timm backbone, and the encoder + head model.

The head follows the SegFormer decoder (Xie et al. 2021): features from several depths of the encoder are each
normalised and projected by a linear layer (a 1x1 convolution) to a common width, upsampled to the finest grid,
concatenated, fused by a linear layer + batch norm + ReLU, and classified per position by a last linear layer. The
logits are upsampled bilinearly to the input size.

Which features feed the head:

- ViTs: the token grids of ``num_levels`` evenly spaced blocks (ViT-Ti/S/B with 12 blocks and 4 levels: blocks 3, 6,
  9, 12), taken with timm's ``forward_intermediates(..., output_fmt="NCHW")``; all levels are at stride = patch size.
- ResNets (any timm CNN with ``forward_intermediates`` and ``feature_info``): the last ``num_levels`` stages, e.g.
  ResNet-18's layer1-layer4 at strides 4, 8, 16 and 32.

References:
    - [0] SegFormer, Xie et al. 2021, https://arxiv.org/abs/2105.15203
    - [1] timm ``forward_intermediates``, https://github.com/huggingface/pytorch-image-models
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d


def is_vit_module(encoder: nn.Module) -> bool:
    """True for timm vision transformers (they have ``blocks`` and ``patch_embed``)."""
    return hasattr(encoder, "blocks") and hasattr(encoder, "patch_embed")


def feature_indices(encoder: nn.Module, num_levels: int = 4) -> list[int]:
    """Indices for ``encoder.forward_intermediates`` that feed the head.

    ViTs: ``num_levels`` evenly spaced blocks ending with the last one (depth 12, 4 levels -> [2, 5, 8, 11]).
    CNNs: the last ``num_levels`` entries of ``feature_info``, leaving out the stem (stride-2) entry when there are
    enough stages (ResNet: [1, 2, 3, 4]).
    """
    if is_vit_module(encoder):
        depth = len(encoder.blocks)
        n = min(num_levels, depth)
        return sorted({round((k + 1) * depth / n) - 1 for k in range(n)})
    info = getattr(encoder, "feature_info", None)
    if not info:
        raise ValueError(
            f"{type(encoder).__name__} has no feature_info; cannot pick feature levels for the head"
        )
    n_info = len(info)
    first = 1 if n_info > num_levels else 0
    return list(range(max(first, n_info - num_levels), n_info))


def feature_channels(encoder: nn.Module, indices: Sequence[int]) -> list[int]:
    """Channels of each selected feature level (from timm's ``feature_info``)."""
    info = encoder.feature_info
    return [int(info[i]["num_chs"]) for i in indices]


class SegFormerHead(nn.Module):
    """All-MLP decoder: per-level norm + linear projection, upsample, concatenate, fuse, classify.

    Args:
        in_channels: channels of each input feature map (finest first or any order).
        embed_dim: the common width every level is projected to.
        num_classes: output classes (2: background, foreground).
        dropout: dropout (channel-wise) before the classifier.

    Shapes:
        forward(feats) with feats[i]: (N, C_i, h_i, w_i) -> logits (N, num_classes, h, w), where (h, w) is the
        largest (h_i, w_i).
    """

    def __init__(
        self, in_channels: Sequence[int], embed_dim: int = 128, num_classes: int = 2, dropout: float = 0.1
    ):
        super().__init__()
        self.norms = nn.ModuleList(LayerNorm2d(c) for c in in_channels)
        self.projections = nn.ModuleList(nn.Conv2d(c, embed_dim, kernel_size=1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(embed_dim * len(in_channels), embed_dim, kernel_size=1, bias=False),
            nn.BatchNorm2d(embed_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, kernel_size=1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.projections):
            raise ValueError(f"head expects {len(self.projections)} feature maps, got {len(feats)}")
        h = max(f.shape[-2] for f in feats)
        w = max(f.shape[-1] for f in feats)
        projected = []
        for f, norm, proj in zip(feats, self.norms, self.projections, strict=True):
            x = proj(norm(f))
            if x.shape[-2:] != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            projected.append(x)
        x = self.fuse(torch.cat(projected, dim=1))
        return self.classifier(self.dropout(x))


class SegmentationModel(nn.Module):
    """A timm backbone plus a :class:`SegFormerHead`; logits at the input resolution.

    Args:
        encoder: a timm model with ``forward_intermediates`` (ViT or CNN), e.g. from
            :func:`optidel.models.backbone.create_backbone` or :func:`optidel.models.encoder_io.load_encoder`.
        head: the decoder; build both with :func:`build_segmentation_model`.
        indices: the encoder's feature levels that feed the head (see :func:`feature_indices`).
        freeze_encoder: probe mode: the encoder stays in eval mode, takes no gradient, and runs under ``no_grad``.

    Shapes:
        forward(x): x (N, 3, H, W) normalised images -> logits (N, num_classes, H, W).
        decode(features, (H, W)): the output of ``features(x)`` -> the same logits (probe mode computes the frozen
        encoder's features of fixed images once and decodes them every epoch).
    """

    def __init__(
        self, encoder: nn.Module, head: SegFormerHead, indices: Sequence[int], freeze_encoder: bool = False
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.indices = list(indices)
        self.freeze_encoder = freeze_encoder
        self._is_vit = is_vit_module(encoder)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The selected feature maps: list of (N, C_i, h_i, w_i)."""
        kwargs = {"indices": self.indices, "intermediates_only": True, "output_fmt": "NCHW"}
        if self._is_vit:
            kwargs["return_prefix_tokens"] = False
        if self.freeze_encoder:
            with torch.no_grad():
                return list(self.encoder.forward_intermediates(x, **kwargs))
        return list(self.encoder.forward_intermediates(x, **kwargs))

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Logits (N, num_classes, *size) from the feature maps of :meth:`features`."""
        return F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x), tuple(x.shape[-2:]))


def build_segmentation_model(
    encoder: nn.Module,
    num_levels: int = 4,
    embed_dim: int = 128,
    num_classes: int = 2,
    dropout: float = 0.1,
    freeze_encoder: bool = False,
) -> SegmentationModel:
    """Encoder + SegFormer-style head with the levels chosen by :func:`feature_indices`."""
    indices = feature_indices(encoder, num_levels)
    head = SegFormerHead(feature_channels(encoder, indices), embed_dim, num_classes, dropout)
    return SegmentationModel(encoder, head, indices, freeze_encoder=freeze_encoder)
