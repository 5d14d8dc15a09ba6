"""The SegFormer-style head on ViTs (patch 8 and 16) and ResNet-18: levels, shapes, probe freezing."""

from __future__ import annotations

import pytest
import torch

from optidel.downstream.seg_head import SegFormerHead, build_segmentation_model, feature_indices
from optidel.models.backbone import create_backbone


@pytest.mark.parametrize(
    ("arch", "patch", "size"), [("vit_tiny", 8, 32), ("vit_tiny", 16, 64), ("resnet18", None, 64)]
)
def test_logits_at_input_size(arch, patch, size):
    torch.manual_seed(0)
    model = build_segmentation_model(create_backbone(arch, size, patch), num_levels=4, embed_dim=32)
    x = torch.randn(2, 3, size, size)
    feats = model.features(x)
    assert len(feats) == 4
    if patch is not None:  # ViT: every level is the token grid
        assert all(f.shape[-2:] == (size // patch, size // patch) for f in feats)
    else:  # ResNet-18: layer1..layer4, strides 4..32
        assert [f.shape[-1] for f in feats] == [size // 4, size // 8, size // 16, size // 32]
    out = model(x)
    assert out.shape == (2, 2, size, size)
    out.sum().backward()
    assert (
        model.encoder.patch_embed.proj.weight.grad is not None
        if patch
        else model.encoder.conv1.weight.grad is not None
    )


def test_feature_indices():
    assert feature_indices(create_backbone("vit_tiny", 32, 8), 4) == [2, 5, 8, 11]
    assert feature_indices(create_backbone("vit_tiny", 32, 8), 1) == [11]
    assert feature_indices(create_backbone("resnet18", 32), 4) == [1, 2, 3, 4]
    assert feature_indices(create_backbone("resnet18", 32), 2) == [3, 4]


def test_probe_mode_freezes_encoder():
    model = build_segmentation_model(create_backbone("resnet18", 32), embed_dim=16, freeze_encoder=True)
    model.train()
    assert not model.encoder.training and model.head.training  # encoder batch-norm statistics stay fixed
    before = model.encoder.bn1.running_mean.clone()
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert torch.equal(before, model.encoder.bn1.running_mean)


def test_head_rejects_wrong_number_of_levels():
    head = SegFormerHead([8, 8], embed_dim=4)
    with pytest.raises(ValueError, match="expects 2"):
        head([torch.zeros(1, 8, 2, 2)])
