"""SAM's prompt encoder + mask decoder for a batch of box prompts on one image, re-arranged (see the package
docstring): shared first-block projections, low-rank attention forms, per-pixel upscaling GEMMs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optidel.models.litemedsam.kernels import _linear_gelu

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from optidel.models.litemedsam.model import LiteMedSAM


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
