"""SimCLR on a timm backbone: two augmented views, a projection MLP, NT-Xent loss (lightly's modules).

The two views of a batch go through the backbone together (one forward of 2N images, so batch-norm statistics cover
both views, as in SimCLR's implementation), then through lightly's :class:`SimCLRProjectionHead` (Linear, BN, ReLU,
Linear), and lightly's :class:`NTXentLoss` treats the other view of the same image as the positive and the 2N - 2
other views as negatives. Under DDP the loss gathers the embeddings of all ranks, so negatives come from the global
batch. The views themselves come from :mod:`optidel.ssl.augment` (SimCLR preset, adapted to medical images).

- [0] A Simple Framework for Contrastive Learning of Visual Representations, Chen et al., 2020,
  https://arxiv.org/abs/2002.05709

Examples:
    >>> from optidel.models.backbone import create_backbone
    >>> model = SimCLR(create_backbone("resnet18", img_size=32))
    >>> loss = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
"""

from __future__ import annotations

import torch
import torch.nn as nn
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

__all__ = ["SimCLR"]


class SimCLR(nn.Module):
    """Backbone + projection head + NT-Xent.

    Args:
        backbone: a timm model created with ``num_classes=0`` (its ``forward`` returns pooled features (N, D)).
        proj_hidden_dim: hidden width of the projection MLP.
        proj_dim: output width of the projection MLP.
        temperature: NT-Xent temperature.
        gather_distributed: gather negatives from all DDP ranks.

    Attributes:
        backbone: the encoder to export.
        projection_head: ``SimCLRProjectionHead`` (discarded after pre-training).
        criterion: ``NTXentLoss``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 512,
        proj_dim: int = 128,
        temperature: float = 0.5,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(int(backbone.num_features), proj_hidden_dim, proj_dim)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised images -> z: (N, proj_dim) projections."""
        return self.projection_head(self.backbone(x))

    def forward(self, view0: torch.Tensor, view1: torch.Tensor) -> torch.Tensor:
        """NT-Xent loss of two views of the same N images.

        Args:
            view0: (N, 3, H, W) first views (normalised).
            view1: (N, 3, H, W) second views, ``view1[i]`` the positive of ``view0[i]``.

        Returns:
            scalar loss.
        """
        z0, z1 = self.embed(torch.cat([view0, view1])).chunk(2)
        return self.criterion(z0, z1)
