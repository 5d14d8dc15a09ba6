"""One ViT shape check for every command that builds a ViT (issue 16, item 9).

timm itself accepts an image size the patch size does not divide (it drops the border); optidel refuses it in one
place, :func:`optidel.models.backbone.check_patch_grid`, used by pretrain, finetune, evaluate and the select embedders.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from optidel.models.backbone import BackboneError, check_patch_grid, create_backbone
from optidel.models.encoder_io import EncoderFileError, check_encoder
from reliability.helpers import invoke, one_line_error


def test_finetune_refuses_30_px_with_patch_16_in_one_line(tiny_seg: Path, tmp_path: Path):
    out = tmp_path / "ft"
    result = invoke("finetune", "--encoder", "none", "--dataset", tiny_seg, "--out", out, "--img-size", "30",
                    "--patch-size", "16")  # fmt: skip
    assert result.exit_code == 2
    assert "image size 30 is not a multiple of the ViT patch size 16" in one_line_error(result.output)
    assert not (out / "DONE").exists()


def test_every_builder_uses_the_same_check(tiny_encoder: Path, tmp_path: Path):
    from optidel.downstream.config import FinetuneConfig
    from optidel.select.patches.embedders import TimmPatchEmbedder
    from optidel.ssl.config import PretrainConfig

    with pytest.raises(BackboneError, match="use e.g. 16 or 32"):
        check_patch_grid("vit_tiny", 30, 16)
    check_patch_grid("vit_tiny", 32, 16)
    check_patch_grid("resnet18", 30, 16)  # CNNs take any size
    with pytest.raises(BackboneError, match="patch size 16"):  # the patch size in the timm name
        create_backbone("vit_tiny_patch16_224", 40)
    with pytest.raises(BackboneError, match="image size 30"):
        PretrainConfig(data=("x",), img_size=30, patch_size=8).resolved().validate()
    with pytest.raises(BackboneError, match="image size 30"):
        FinetuneConfig(encoder="none", dataset="x", img_size=30, patch_size=16).validate()
    FinetuneConfig(encoder="none", dataset="x", arch="resnet18", img_size=30).validate()
    with pytest.raises(BackboneError, match="image size 30"):
        TimmPatchEmbedder(arch="vit_tiny_patch16_224", img_size=30)
    with pytest.raises(EncoderFileError, match=r"encoder\.safetensors: image size 36 is not a multiple .* 8"):
        check_encoder(tiny_encoder, img_size=36)  # an encoder file run at another size (finetune, evaluate)
    with pytest.raises(EncoderFileError, match="image size 36"):
        TimmPatchEmbedder(encoder_path=tiny_encoder, img_size=36)
