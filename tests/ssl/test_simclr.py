"""SimCLR: projection head, two-view NT-Xent loss and its gradients."""

from __future__ import annotations

import torch

from optidel.models.backbone import create_backbone
from optidel.ssl.simclr import SimCLR


def test_simclr_loss_and_gradients_on_resnet():
    torch.manual_seed(0)
    model = SimCLR(create_backbone("resnet18", img_size=32), proj_hidden_dim=64, proj_dim=16)
    x0, x1 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    assert model.embed(x0).shape == (4, 16)
    loss = model(x0, x1)
    # NT-Xent with 2N = 8 views: each has 1 positive among 7 candidates, so an uninformed model scores ~log(7)
    assert 0.5 * torch.log(torch.tensor(7.0)) < loss < 2 * torch.log(torch.tensor(7.0))
    loss.backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_positive_pairs_lower_the_loss():
    torch.manual_seed(0)
    model = SimCLR(
        create_backbone("vit_tiny", img_size=32, patch_size=8), proj_hidden_dim=64, proj_dim=16
    ).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        same = model(x, x)  # identical views: the positive is the most similar candidate
        other = model(x, torch.randn(6, 3, 32, 32))
    assert same < other
