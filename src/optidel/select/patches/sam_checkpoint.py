"""Patches from Meta's Segment Anything with a checkpoint the user downloaded (ViT-B/L/H).

SAM's automatic mask generator [0] (a 32x32 point grid, multimask output, predicted-IoU and stability filters, box
NMS) on the full image; its masks become patches exactly as LiteMedSAM's do (:mod:`optidel.select.patches.mask_patches`):
mask bounding box plus a margin, clipped, at most ``max_patches`` by predicted IoU x stability, masks below
``min_area`` or above ``max_area`` of the image dropped. Embeddings: SAM's own 256x64x64 image embedding (the
generator's predictor computes it in ``set_image``; it is kept before the generator resets the predictor) averaged
inside each mask, L2-normalised (D = 256).

No weights can be downloaded by optidel. Get one of the official checkpoints and pass its path (the architecture is
read from the file; ``model_type`` only checks it):

============  ================================================================  ==============
model type    URL                                                               size
============  ================================================================  ==============
``vit_b``     https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth  375 MB
``vit_l``     https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth  1.25 GB
``vit_h``     https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth  2.56 GB
============  ================================================================  ==============

Cost: ViT-B alone is ~11 s per 1024 px image on 2 CPU cores (ViT-H ~10x more); this proposer is for users with a
GPU or patience. Offline, the default ``sam`` proposer (LiteMedSAM) is the practical one.

References:
    - [0] Kirillov et al., Segment Anything, ICCV 2023, https://arxiv.org/abs/2304.02643
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optidel.log import logger
from optidel.runtime.errors import OptidelError
from optidel.select.patches.types import ImagePatches

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

CHECKPOINT_FLAG = "--sam-checkpoint"  # the CLI option that passes the checkpoint path
MODEL_TYPE_FLAG = "--sam-model-type"
OFFICIAL_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "vit_b": ("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth", "375 MB"),
    "vit_l": ("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth", "1.25 GB"),
    "vit_h": ("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth", "2.56 GB"),
}
# (embed_dim, depth) of the official image encoders
_OFFICIAL_SHAPES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}


class SamCheckpointMissingError(OptidelError, FileNotFoundError):
    """No SAM checkpoint given, or the file is not there; the message says what to download and how to pass it
    (several lines on purpose: the download links)."""

    exit_code = 2


def missing_checkpoint_message(path: str | Path | None) -> str:
    what = "no SAM checkpoint was given" if path is None else f"SAM checkpoint {str(path)!r} does not exist"
    lines = [
        f"The 'sam-checkpoint' patch proposer needs Meta's Segment Anything weights, but {what}.",
        "Download one of the official checkpoints (optidel never downloads weights):",
    ]
    for kind, (url, size) in OFFICIAL_CHECKPOINTS.items():
        lines.append(f"  {kind}: {url}  ({size})")
    lines.append(
        f"and pass its path with {CHECKPOINT_FLAG} PATH (the model type is read from the file; "
        f"{MODEL_TYPE_FLAG} vit_b|vit_l|vit_h checks it). Or use '--patches sam' (LiteMedSAM, bundled, offline)."
    )
    return "\n".join(lines)


def load_sam_checkpoint(
    path: str | Path, model_type: str | None = None, device: str = "cpu"
) -> tuple[nn.Module, str]:
    """Build a ``segment_anything.Sam`` whose architecture matches the checkpoint's tensors, and load it (strict).

    The image encoder's hyper-parameters are read from the state dict (embedding width, depth, heads from the
    relative-position tables, windowed vs global blocks, patch and image size), so the official ViT-B/L/H files and
    smaller SAM-style encoders load alike; the prompt encoder and mask decoder are SAM's standard ones.

    Args:
        path: a ``.pth`` file holding the model's state dict (as Meta's checkpoints do).
        model_type: ``vit_b``, ``vit_l`` or ``vit_h`` to check the file against (None: no check).

    Returns:
        (model in eval mode on ``device``, model type: ``vit_b``/``vit_l``/``vit_h`` or ``custom``).

    Raises:
        SamCheckpointMissingError: no path or no such file. ValueError: unreadable file, not a SAM state dict, or a
        mismatch with ``model_type``.
    """
    import torch

    if path is None or not Path(path).is_file():
        raise SamCheckpointMissingError(missing_checkpoint_message(path))
    path = Path(path)
    if model_type is not None and model_type not in OFFICIAL_CHECKPOINTS:
        raise ValueError(
            f"model_type must be one of {sorted(OFFICIAL_CHECKPOINTS)} or None, got {model_type!r}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or "image_encoder.pos_embed" not in state:
        raise ValueError(f"{path}: not a Segment Anything state dict (no 'image_encoder.pos_embed')")
    arch = _encoder_arch(state)
    kind = _OFFICIAL_SHAPES.get((arch["embed_dim"], arch["depth"]), "custom")
    if model_type is not None and kind != model_type:
        raise ValueError(
            f"{path}: the file holds a {kind} image encoder (width {arch['embed_dim']}, depth {arch['depth']}), "
            f"not {model_type}"
        )
    model = _build_sam(arch, prompt_dim=int(state["prompt_encoder.no_mask_embed.weight"].shape[1]))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit a SAM model ({str(e)[:500]})") from e
    return model.eval().to(device), kind


def _encoder_arch(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    pos = state["image_encoder.pos_embed"]  # (1, S, S, D)
    embed_dim = int(pos.shape[-1])
    grid = int(pos.shape[1])
    patch = int(state["image_encoder.patch_embed.proj.weight"].shape[-1])
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
    use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in state
    head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]) if use_rel_pos else 64
    global_idx, window = [], 14
    for i in range(depth):
        key = f"image_encoder.blocks.{i}.attn.rel_pos_h"
        if use_rel_pos:
            side = (int(state[key].shape[0]) + 1) // 2
            if side == grid:
                global_idx.append(i)
            else:
                window = side
    mlp_dim = int(state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": max(1, embed_dim // head_dim),
        "mlp_ratio": mlp_dim / embed_dim,
        "out_chans": int(state["image_encoder.neck.0.weight"].shape[0]),
        "qkv_bias": "image_encoder.blocks.0.attn.qkv.bias" in state,
        "use_rel_pos": use_rel_pos,
        "window_size": window if global_idx != list(range(depth)) else 0,
        "global_attn_indexes": tuple(global_idx),
    }


def _build_sam(arch: dict[str, Any], prompt_dim: int = 256) -> nn.Module:
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    emb = arch["img_size"] // arch["patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch["img_size"],
            patch_size=arch["patch_size"],
            embed_dim=arch["embed_dim"],
            depth=arch["depth"],
            num_heads=arch["num_heads"],
            mlp_ratio=arch["mlp_ratio"],
            out_chans=arch["out_chans"],
            qkv_bias=arch["qkv_bias"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=arch["use_rel_pos"],
            window_size=arch["window_size"],
            global_attn_indexes=arch["global_attn_indexes"],
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(arch["img_size"], arch["img_size"]),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


class SamCheckpointProposer:
    """Patches from ``SamAutomaticMaskGenerator`` with a user-supplied SAM checkpoint.

    Args:
        checkpoint: path of a SAM ``.pth`` checkpoint (required; see the module docstring for the downloads).
        model_type: ``vit_b``/``vit_l``/``vit_h`` to check the file against (None: read from the file).
        points_per_side: point grid of the generator (points_per_side**2 prompts).
        points_per_batch: prompts decoded per batch.
        pred_iou_thresh: generator's predicted-IoU filter (SAM's default for ViT-H: 0.88).
        stability_thresh: generator's stability-score filter (SAM's default 0.95).
        box_nms_thresh: generator's box NMS.
        nms_thresh: a second box NMS over the kept masks, as the LiteMedSAM proposer does (1.0: off).
        margin: fraction of the mask box's width/height added on each side.
        max_patches: most patches per image (best predicted IoU x stability first).
        min_area: smallest mask kept, as a fraction of the image.
        max_area: largest mask kept, as a fraction of the image.
        embed: also return SAM's image embedding pooled in each mask (D = 256); False gives ``embeddings=None``.
        device: torch device.

    Raises:
        SamCheckpointMissingError: when ``checkpoint`` is None or missing (the message lists the official URLs).
    """

    name = "sam-checkpoint"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model_type: str | None = None,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        nms_thresh: float = 0.5,
        margin: float = 0.1,
        max_patches: int = 16,
        min_area: float = 0.005,
        max_area: float = 0.9,
        embed: bool = True,
        device: str = "cpu",
    ) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        if max_patches < 1:
            raise ValueError(f"max_patches must be >= 1, got {max_patches}")
        if not 0 <= min_area < max_area <= 1:
            raise ValueError(f"need 0 <= min_area < max_area <= 1, got {min_area}, {max_area}")
        model, kind = load_sam_checkpoint(checkpoint, model_type, device)  # type: ignore[arg-type]
        self.checkpoint = Path(checkpoint).resolve()  # type: ignore[arg-type]
        self.model_type = kind
        self.points_per_side = int(points_per_side)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_thresh = float(stability_thresh)
        self.box_nms_thresh = float(box_nms_thresh)
        self.nms_thresh = float(nms_thresh)
        self.margin = float(margin)
        self.max_patches = int(max_patches)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.embed = bool(embed)
        self.embed_dim: int | None = int(model.prompt_encoder.embed_dim) if embed else None
        self.generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=self.points_per_side,
            points_per_batch=int(points_per_batch),
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_thresh,
            box_nms_thresh=self.box_nms_thresh,
            output_mode="binary_mask",
        )
        self._stat = self.checkpoint.stat()
        self._features: torch.Tensor | None = None
        self._input_size: tuple[int, int] | None = None
        predictor = self.generator.predictor
        reset = predictor.reset_image

        def keep_then_reset() -> (
            None
        ):  # the generator resets the predictor after its crop: keep the features first
            if getattr(predictor, "is_image_set", False) and self._features is None:
                self._features = predictor.features
                self._input_size = tuple(predictor.input_size)  # type: ignore[assignment]
            reset()

        predictor.reset_image = keep_then_reset  # type: ignore[method-assign]
        logger.info("SAM checkpoint %s loaded (%s)", self.checkpoint, kind)

    def cache_key(self) -> dict[str, Any]:
        return {
            "proposer": "sam-checkpoint",
            "version": 1,
            "checkpoint": str(self.checkpoint),
            "checkpoint_size": int(self._stat.st_size),
            "checkpoint_mtime_ns": int(self._stat.st_mtime_ns),
            "model_type": self.model_type,
            "points_per_side": self.points_per_side,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_thresh": self.stability_thresh,
            "box_nms_thresh": self.box_nms_thresh,
            "nms_thresh": self.nms_thresh,
            "margin": self.margin,
            "max_patches": self.max_patches,
            "min_area": self.min_area,
            "max_area": self.max_area,
            "embed": self.embed,
        }

    def process(self, img: np.ndarray) -> ImagePatches:
        """img: (H, W, 3) uint8 -> its patches (embeddings (P, 256) when ``embed``)."""
        import torch

        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        self._features, self._input_size = None, None
        with torch.inference_mode():
            anns = self.generator.generate(np.ascontiguousarray(img[..., :3]))
        return self.annotations_to_patches(anns, img.shape[:2], self._features, self._input_size)

    def annotations_to_patches(
        self,
        anns: list[dict[str, Any]],
        image_hw: tuple[int, int],
        features: torch.Tensor | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> ImagePatches:
        """The generator's mask records -> :class:`ImagePatches` (filter by area, NMS, top ``max_patches``, margin).

        Args:
            anns: records with ``segmentation`` (H, W) bool, ``bbox`` XYWH (inclusive pixel extents, as SAM's
                ``batched_mask_to_box``), ``area``, ``predicted_iou``, ``stability_score``.
            image_hw: (H, W) of the image.
            features: (1, C, S, S) image embedding of the generator's predictor (None: no embeddings).
            input_size: (h, w) of the resized image inside the encoder's square input.
        """
        import torch

        from optidel.select.patches.mask_patches import boxes_to_image, nms_order

        h, w = int(image_hw[0]), int(image_hw[1])
        dim = self.embed_dim
        anns = [a for a in anns if self.min_area <= float(a["area"]) / (h * w) <= self.max_area]
        if not anns:
            return ImagePatches.empty(dim)
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] + 1], axis=1)  # x1/y1 exclusive
        iou = np.clip(np.array([a["predicted_iou"] for a in anns], np.float32), 0, 1)
        stab = np.clip(np.array([a["stability_score"] for a in anns], np.float32), 0, 1)
        order = nms_order(torch.from_numpy(boxes), torch.from_numpy(iou * stab), self.nms_thresh)
        order = order[: self.max_patches].numpy()
        emb = None
        if dim is not None:
            if features is None or input_size is None:
                raise RuntimeError("SAM's image embedding was not captured; cannot pool mask features")
            masks = np.stack([np.asarray(anns[i]["segmentation"], bool) for i in order])
            emb = _pool_masks(features, input_size, masks)
        return ImagePatches(
            boxes=boxes_to_image(boxes[order], 1.0, self.margin, (h, w)),
            mask_area=np.array([float(anns[i]["area"]) / (h * w) for i in order], np.float32),
            pred_iou=iou[order],
            stability=stab[order],
            embeddings=emb,
        )


def _pool_masks(features: torch.Tensor, input_size: tuple[int, int], masks: np.ndarray) -> np.ndarray:
    """Average SAM's (1, C, S, S) embedding inside each (H, W) mask -> (P, C) unit-norm float32.

    A mask is resized to the encoder's input frame (``input_size`` inside the square, padded), then area-pooled to
    the S x S grid to weight the cells.
    """
    import torch
    import torch.nn.functional as F

    from optidel.models.litemedsam import pool_features

    feats = features[0].float().cpu()
    s = feats.shape[-1]
    side = max(input_size)  # the encoder's square input (the resized image's long side fills it)
    weights = []
    for m in masks:  # one mask at a time: (1024 x 1024) floats each
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        t = F.interpolate(
            t, size=tuple(input_size), mode="area" if m.shape[0] >= input_size[0] else "nearest"
        )
        t = F.pad(t, (0, side - input_size[1], 0, side - input_size[0]))
        weights.append(F.adaptive_avg_pool2d(t, (s, s))[0, 0])
    return pool_features(feats, torch.stack(weights))
