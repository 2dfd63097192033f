"""``instance_norm``: instance normalisation, its per-channel scale and shift, and the ReLU after it, fused.

``instance_norm(x, weight, bias, eps, relu=True)`` equals
``F.relu(F.instance_norm(x, weight=weight, bias=bias, eps=eps))`` (without the ReLU when
``relu=False``) up to float rounding. On the CPU it is one read for the statistics and one read and
write for the result, where ATen's composition makes four passes and two writes: the
normalisation layers of a style network at 512 px are memory-bound (see bench/ops.py). float32 and
float64 on the CPU; other dtypes and devices run the composition of ATen's ops. Differentiable
(the backward is written with torch ops, so it is differentiable again).
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_number, check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format

_OP = "dreamkit::instance_norm"
_DTYPES = (torch.float32, torch.float64)


def _backward_formula(grad, x, weight, eps, relu, out):
    """Gradients of y = act(x̂·w + b), x̂ = (x - mean) / sqrt(var + eps), per (image, channel)."""
    dims = tuple(range(2, x.dim()))
    if relu:
        grad = grad * (out > 0)
    centred = x - x.mean(dims, keepdim=True)
    rstd = torch.rsqrt(centred.square().mean(dims, keepdim=True) + eps)
    normalised = centred * rstd
    shape = (1, -1) + (1,) * len(dims)
    grad_weight = (grad * normalised).sum((0, *dims)) if weight is not None else None
    grad_bias = grad.sum((0, *dims))
    g = grad * weight.reshape(shape) if weight is not None else grad
    grad_x = rstd * (g - g.mean(dims, keepdim=True) - normalised * (g * normalised).mean(dims, keepdim=True))
    return grad_x, grad_weight, grad_bias


def _register() -> bool:
    """Fake (meta) and autograd implementations of the compiled op; False without the extension."""
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, weight, bias, eps, relu):
        torch._check(x.dim() >= 3, lambda: f"dreamkit::instance_norm: x must be (N, C, ...); got {x.dim()} dims")
        return torch.empty_like(x, memory_format=kernel_memory_format(x))

    def setup_context(ctx, inputs, output):
        x, weight, bias, eps, relu = inputs
        ctx.save_for_backward(x, weight, output)
        ctx.eps, ctx.relu, ctx.has_bias = eps, relu, bias is not None

    def backward(ctx, grad):
        x, weight, out = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = _backward_formula(grad, x, weight, ctx.eps, ctx.relu, out)
        return grad_x, grad_weight, grad_bias if ctx.has_bias else None, None, None

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_KERNELS = kernel_devices(_OP) if _register() else {}


def instance_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                  eps: float = 1e-5, relu: bool = True) -> torch.Tensor:
    """Instance normalisation of ``x`` (N, C, ...) over its spatial dims, times ``weight`` plus
    ``bias`` (each (C,) or None), then ``max(·, 0)`` when ``relu``. channels_last stays
    channels_last. Falls back to ATen's ops where the compiled kernel does not apply."""
    check_tensor("instance_norm", "x", x, min_dim=3, layout="(N, C, ...)", floating=True)
    for name, parameter in (("weight", weight), ("bias", bias)):
        if parameter is None:
            continue
        check_tensor("instance_norm", name, parameter, dims=(1,), layout="(C,)", floating=True)
        if parameter.shape[0] != x.shape[1]:
            raise ValueError(f"instance_norm: {name} must have {x.shape[1]} elements (x's channels); "
                             f"got {parameter.shape[0]}")
    eps = check_number("instance_norm", "eps", eps)
    if eps <= 0:
        raise ValueError(f"instance_norm: eps must be positive; got {eps}")
    if not isinstance(relu, bool):
        raise TypeError(f"instance_norm: relu must be True or False, got {relu!r}")
    if x.shape[0] * x.shape[1] and not x[0, 0].numel():
        raise ValueError(f"instance_norm: x has no pixels to normalise over; got shape {tuple(x.shape)}")
    if (_KERNELS.get(x.device.type, False) and x.dtype in _DTYPES
            and all(p is None or p.dtype == x.dtype for p in (weight, bias))):
        return torch.ops.dreamkit.instance_norm(x, weight, bias, eps, relu)
    return _reference.instance_norm(x, weight, bias, eps, relu)

