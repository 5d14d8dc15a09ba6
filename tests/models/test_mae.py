"""MAE: patchify, masking, losses, export of the full model and the reconstruction-error score."""

from __future__ import annotations

import pytest
import torch

from optidel.models.backbone import create_backbone
from optidel.models.mae import MAE, load_mae, reconstruction_error, save_mae


@pytest.fixture(scope="module")
def mae() -> MAE:
    torch.manual_seed(0)
    return MAE(
        create_backbone("vit_tiny", img_size=32, patch_size=8),
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
    )


def test_patchify_layout(mae: MAE):
    imgs = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    x = mae.patchify(imgs)
    assert x.shape == (2, 16, 8 * 8 * 3)
    # patch 1 is the second patch of the first row; its first pixel is (row 0, col 8), channels last
    assert torch.equal(x[0, 1, :3], imgs[0, :, 0, 8])


def test_random_masking_splits_patches(mae: MAE):
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(0))
    keep, masked = mae.random_masking(noise)
    assert keep.shape == (3, 4) and masked.shape == (3, 12)  # 75% masked
    for k, m in zip(keep, masked, strict=True):
        assert sorted(torch.cat([k, m]).tolist()) == list(range(16))
    assert torch.equal(keep[0], torch.argsort(noise[0])[:4])  # the smallest noise is kept


def test_forward_shapes_loss_and_gradients(mae: MAE):
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    keep, masked = mae.random_masking(noise)
    latent = mae.forward_encoder(imgs, keep)
    assert latent.shape == (2, 1 + 4, 192)  # class token + visible patches
    pred = mae.forward_decoder(latent, keep, masked)
    assert pred.shape == (2, 12, 8 * 8 * 3)
    loss = mae(imgs, noise)
    assert torch.isfinite(loss) and loss.item() > 0
    mae.zero_grad()
    loss.backward()
    assert mae.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert mae.decoder.mask_token.grad.abs().sum() > 0
    assert mae.prediction_head.weight.grad.abs().sum() > 0
    assert not mae.encoder.mask_token.requires_grad  # unused by MAE: frozen so DDP does not wait for it
    assert not mae.vit.pos_embed.requires_grad  # fixed sine-cosine embeddings, as in MAE


def test_norm_pix_loss_targets_are_per_patch_normalised(mae: MAE):
    imgs = torch.randn(1, 3, 32, 32)
    idx = torch.arange(16).unsqueeze(0)
    shifted = imgs * 3 + 5  # per-patch normalisation removes any affine change of the pixels
    pred = torch.zeros(1, 16, 192)
    torch.testing.assert_close(
        mae.patch_losses(imgs, pred, idx), mae.patch_losses(shifted, pred, idx), rtol=1e-3, atol=1e-3
    )


def test_save_and_load_full_model(mae: MAE, tmp_path):
    save_mae(
        mae,
        tmp_path / "mae.safetensors",
        arch="vit_tiny_patch16_224",
        timm_kwargs={"img_size": 32, "patch_size": 8, "num_classes": 0},
    )
    back = load_mae(tmp_path)
    for k, v in mae.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert not back.training and back.mask_ratio == mae.mask_ratio and back.num_patches == 16
    with pytest.raises(FileNotFoundError, match="mae.safetensors"):
        load_mae(tmp_path / "nowhere")


def test_reconstruction_error_is_a_fixed_per_image_score(mae: MAE):
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(3, 3, 32, 32).contiguous()
    noisy = torch.rand(3, 3, 32, 32, generator=g)
    imgs = torch.cat([smooth, noisy])
    scores = reconstruction_error(mae, imgs, n_masks=2)
    assert scores.shape == (6,) and torch.all(torch.isfinite(scores))
    # the same image gets the same score alone, in another batch, and on a second call
    torch.testing.assert_close(reconstruction_error(mae, imgs[4:5], n_masks=2), scores[4:5])
    torch.testing.assert_close(
        reconstruction_error(mae, imgs.flip(0), n_masks=2, batch_size=4), scores.flip(0)
    )
    # a different seed draws different masks
    assert not torch.equal(reconstruction_error(mae, imgs, n_masks=2, seed=1), scores)
    # no masking: error over all patches; other image sizes are resized
    assert reconstruction_error(mae, imgs, mask_ratio=0.0).shape == (6,)
    assert reconstruction_error(mae, torch.rand(2, 3, 48, 48)).shape == (2,)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        reconstruction_error(mae, torch.rand(2, 1, 32, 32))
