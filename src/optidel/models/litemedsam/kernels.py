"""Fused CPU kernels (oneDNN post-ops: GEMM/convolution + GELU or + residual), with plain fallbacks.

Shared by the re-arranged encoder and decoder; FLOP formulas for the fused ops are registered so
``torch.utils.flop_counter`` counts stay complete.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


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
