"""Patch embedders (LiteMedSAM box pooling, timm backbones) and the proposer / embedder factories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optidel.data.synthetic import synthetic_sample
from optidel.select.patches.grid import GridProposer
from optidel.select.patches.proposers import PROPOSER_KINDS, make_embedder, make_proposer
from optidel.select.patches.types import ImagePatches


@pytest.fixture(scope="session")
def litemedsam():
    from optidel.models.litemedsam import LiteMedSAM

    return LiteMedSAM()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_sample(np.random.default_rng(5), 160)[0]


def _unit_rows(e: np.ndarray, n: int, d: int) -> None:
    assert e.shape == (n, d) and e.dtype == np.float32 and np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)


def test_box_weights_are_exact_cell_coverage():
    from optidel.models.litemedsam import box_weights

    w = box_weights(np.array([[8, 4, 16, 10]], np.float32))[0]  # cells x 2..3, y 1 (full) and 2 (half)
    assert w.shape == (64, 64)
    assert float(w.sum()) == pytest.approx(8 * 6 / 16)
    assert w[1, 2] == 1.0 and w[2, 3] == 0.5 and w[0, 2] == 0.0 and w[1, 4] == 0.0


def test_litemedsam_embedder_pools_inside_boxes(litemedsam, image):
    from optidel.select.patches.embedders import LiteMedSAMEmbedder

    emb = LiteMedSAMEmbedder(model=litemedsam)
    patches = GridProposer(scales=(0.5,)).process(image)
    e = emb.embed(image, patches)
    _unit_rows(e, len(patches), 256)
    # the first box (0, 0, 80, 80) of a 160 px image is the top-left 32 x 32 cells of the 256 frame
    f = litemedsam.encode([image])[0].features
    ref = torch.nn.functional.normalize(f[:, :32, :32].mean((1, 2)), dim=0).numpy()
    np.testing.assert_allclose(e[0], ref, atol=1e-5)
    assert emb.embed(image, ImagePatches.empty()).shape == (0, 256)
    assert emb.cache_key()["embedder"] == "litemedsam-box-pool"


def test_timm_random_init_embedder(image):
    from optidel.select.patches.embedders import TimmPatchEmbedder

    emb = TimmPatchEmbedder(arch="resnet18", img_size=32, batch_size=4)
    patches = GridProposer(scales=(0.5, 0.25)).process(image)
    e = emb.embed(image, patches)
    _unit_rows(e, len(patches), emb.dim)
    assert emb.dim == 512 and emb.name == "timm:resnet18"
    np.testing.assert_allclose(
        TimmPatchEmbedder(arch="resnet18", img_size=32).embed(image, patches), e, atol=1e-5
    )
    with pytest.raises(ValueError, match="exactly one"):
        TimmPatchEmbedder()


def test_optidel_encoder_embedder(tmp_path, image):
    from optidel.models.backbone import backbone_kwargs, create_backbone
    from optidel.models.encoder_io import save_encoder

    model = create_backbone("vit_tiny", 32, patch_size=8)
    path = tmp_path / "run" / "encoder.safetensors"
    path.parent.mkdir()
    save_encoder(model, path, "vit_tiny_patch16_224", backbone_kwargs("vit_tiny", 32, 8))
    for spec in (str(path), str(path.parent)):
        emb = make_embedder(spec)
        assert emb is not None and emb.img_size == 32 and emb.dim == 192
        patches = GridProposer(scales=(0.5,)).process(image)
        _unit_rows(emb.embed(image, patches), len(patches), 192)


def test_make_embedder_specs(tmp_path, litemedsam):
    from optidel.select.patches.embedders import LiteMedSAMEmbedder, TimmPatchEmbedder
    from optidel.select.patches.litemedsam import LiteMedSAMProposer

    sam = LiteMedSAMProposer(model=litemedsam)
    assert make_embedder(None, sam) is None  # the proposer embeds its own patches
    grid_default = make_embedder(None, GridProposer())
    assert isinstance(grid_default, LiteMedSAMEmbedder)
    shared = make_embedder("litemedsam", sam)
    assert isinstance(shared, LiteMedSAMEmbedder) and shared.model is litemedsam
    assert isinstance(make_embedder("timm:resnet18", img_size=32), TimmPatchEmbedder)
    with pytest.raises(ValueError, match="architecture"):
        make_embedder("timm:")
    with pytest.raises(ValueError, match="unknown embedder spec"):
        make_embedder("banana")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_embedder(str(tmp_path / "nope" / "encoder.safetensors"))
    with pytest.raises(FileNotFoundError, match="holds no encoder.safetensors"):
        make_embedder(str(tmp_path))
    with pytest.raises(ValueError, match="does not take option"):
        make_embedder("timm:resnet18", bogus=1)


def test_make_proposer():
    from optidel.select.patches.sam_checkpoint import SamCheckpointMissingError

    assert PROPOSER_KINDS == ("sam", "sam-checkpoint", "grid")
    g = make_proposer("grid", scales=(0.5,), device="cpu")
    assert isinstance(g, GridProposer) and g.embed_dim is None
    with pytest.raises(ValueError, match="unknown patch proposer 'sam2'.*sam, sam-checkpoint, grid"):
        make_proposer("sam2")
    with pytest.raises(ValueError, match="does not take option.*scale.*it takes: scales"):
        make_proposer("grid", scale=0.5)
    with pytest.raises(SamCheckpointMissingError, match="sam_vit_b_01ec64.pth"):
        make_proposer("sam-checkpoint")
