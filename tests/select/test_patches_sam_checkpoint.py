"""SAM-checkpoint proposer: clear error without weights, architecture read from the file, masks -> patches."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from optidel.select.patches.sam_checkpoint import (
    SamCheckpointMissingError,
    SamCheckpointProposer,
    _encoder_arch,
    load_sam_checkpoint,
)


def _tiny_sam():
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=64,
            patch_size=8,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=4.0,
            out_chans=256,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(_tiny_sam().state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def proposer(tiny_checkpoint) -> SamCheckpointProposer:
    return SamCheckpointProposer(
        tiny_checkpoint, points_per_side=4, pred_iou_thresh=0.0, stability_thresh=0.0, max_patches=5
    )


@pytest.mark.parametrize("path", [None, "/nonexistent/sam_vit_b.pth"])
def test_missing_checkpoint_says_what_to_download(path):
    with pytest.raises(SamCheckpointMissingError) as e:
        SamCheckpointProposer(path)
    msg = str(e.value)
    for name in ("sam_vit_b_01ec64.pth", "sam_vit_l_0b3195.pth", "sam_vit_h_4b8939.pth"):
        assert f"https://dl.fbaipublicfiles.com/segment_anything/{name}" in msg
    assert "--sam-checkpoint" in msg and "375 MB" in msg
    if path:
        assert path in msg


def test_not_a_sam_file(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not a Segment Anything"):
        load_sam_checkpoint(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_sam_checkpoint(junk)


def test_official_architectures_are_read_from_weights():
    from segment_anything import sam_model_registry

    expect = {"vit_b": (768, 12, 12, (2, 5, 8, 11)), "vit_l": (1024, 24, 16, (5, 11, 17, 23))}
    for kind, (dim, depth, heads, glob) in expect.items():
        with torch.device("meta"):  # shapes only, no memory, no weights
            state = sam_model_registry[kind]().state_dict()
        arch = _encoder_arch(state)
        assert (arch["embed_dim"], arch["depth"], arch["num_heads"]) == (dim, depth, heads)
        assert arch["global_attn_indexes"] == glob and arch["window_size"] == 14
        assert (arch["img_size"], arch["patch_size"]) == (1024, 16)


def test_tiny_checkpoint_loads_and_type_is_checked(tiny_checkpoint):
    model, kind = load_sam_checkpoint(tiny_checkpoint)
    assert kind == "custom" and model.image_encoder.img_size == 64
    ref = _tiny_sam().state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref[k])
    with pytest.raises(ValueError, match="not vit_b"):
        load_sam_checkpoint(tiny_checkpoint, model_type="vit_b")


def test_process_end_to_end(proposer):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    p = proposer.process(img)
    n = len(p)
    assert n <= 5 and p.boxes.shape == (n, 4)
    assert (p.boxes[:, 2] <= 80).all() and (p.boxes[:, 3] <= 48).all() and (p.boxes[:, :2] >= 0).all()
    assert p.embeddings is not None and p.embeddings.shape == (n, 256)
    assert np.isfinite(p.embeddings).all()
    assert proposer.embed_dim == 256 and proposer.cache_key()["model_type"] == "custom"


def test_annotations_to_patches(proposer):
    h, w = 40, 60
    m1 = np.zeros((h, w), bool)
    m1[10:20, 5:25] = True  # 200 px
    m2 = np.zeros((h, w), bool)
    m2[10:20, 6:25] = True  # near-duplicate of m1, lower score: NMS drops it
    m3 = np.zeros((h, w), bool)
    m3[0:2, 0:2] = True  # 4 px = 0.17%: below min_area
    m4 = np.zeros((h, w), bool)
    m4[25:40, 40:60] = True

    def ann(m, iou, stab):
        ys, xs = np.nonzero(m)
        x0, y0 = xs.min(), ys.min()
        bbox = [x0, y0, xs.max() - x0, ys.max() - y0]  # SAM's XYWH from inclusive extents
        return {
            "segmentation": m,
            "bbox": bbox,
            "area": int(m.sum()),
            "predicted_iou": iou,
            "stability_score": stab,
        }

    anns = [ann(m1, 0.9, 0.95), ann(m2, 0.8, 0.9), ann(m3, 0.99, 0.99), ann(m4, 1.02, 0.97)]
    feats = torch.zeros(1, 256, 8, 8)
    feats[0, 0] = 1.0
    feats[0, 1, 4:, 4:] = 5.0  # distinct bottom-right cells
    p = proposer.annotations_to_patches(anns, (h, w), feats, input_size=(43, 64))
    assert len(p) == 2
    # m4 first (score 1.0 x 0.97 after clipping the IoU to 1), then m1
    np.testing.assert_allclose(p.pred_iou, [1.0, 0.9])
    np.testing.assert_allclose(p.mask_area, [300 / 2400, 200 / 2400])
    # m1: box (5, 10, 25, 20) + 10% margin -> (3, 9, 27, 21)
    assert p.boxes[1].tolist() == [3, 9, 27, 21]
    assert p.boxes[0].tolist() == [38, 23, 60, 40]
    assert p.embeddings is not None
    np.testing.assert_allclose(np.linalg.norm(p.embeddings, axis=1), 1.0, atol=1e-5)
    assert p.embeddings[0, 1] > p.embeddings[1, 1]  # m4 sits on the distinct cells
    empty = proposer.annotations_to_patches([ann(m3, 0.9, 0.9)], (h, w), feats, (43, 64))
    assert len(empty) == 0 and empty.embeddings is not None and empty.embeddings.shape == (0, 256)
