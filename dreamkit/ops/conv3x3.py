"""``conv3x3``: a 3x3 convolution (stride 1) by Winograd's F(4x4, 3x3) on the CPU.

``conv3x3(x, weight, bias)`` equals ``F.conv2d(x, weight, bias)`` for ``weight`` of shape
``(K, C, 3, 3)``, up to float rounding; with ``reflect_pad=p`` it equals
``F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, bias)`` without making the padded
copy. The sums over channels become 36 GEMMs with 4x fewer multiplies than direct convolution,
so it pays where channels are many (about 2x oneDNN's direct convolution at 128 channels,
1.2-1.5x at 32 in a style network's last layer). Its rounding error is larger than a direct
convolution's (the transforms scale by up to 8 and by sixths): see ``error_bound`` in the tests.
float32 and float64 on the CPU; other dtypes and devices run ``F.conv2d`` (cuDNN already picks
Winograd where it pays). Differentiable (the backward is the ordinary convolution backward).

:func:`winograd_weight` is the weight transform (G g Gᵀ per filter, in float64, rounded once); a
caller that applies the same weights many times (a network in inference) keeps it and passes it
as ``transformed_weight``, which must then be ``winograd_weight(weight)``: the forward uses it,
gradients go to ``weight``.
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_int, check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format

_OP = "dreamkit::conv3x3"
_WEIGHT_OP = "dreamkit::winograd_weight"
_DTYPES = (torch.float32, torch.float64)


def _output_size(size, pad):
    return size + 2 * pad - 2


def _register() -> bool:
    """Fake (meta) and autograd implementations of the compiled ops; False without the extension."""
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, weight, bias, reflect_pad=0, transformed_weight=None):
        torch._check(x.dim() == 4, lambda: f"dreamkit::conv3x3: x must be (N, C, H, W); got {x.dim()} dims")
        torch._check(weight.dim() == 4 and tuple(weight.shape[1:]) == (x.shape[1], 3, 3),
                     lambda: f"dreamkit::conv3x3: weight must be (K, C, 3, 3); got {tuple(weight.shape)}")
        out = x.new_empty(x.shape[0], weight.shape[0], _output_size(x.shape[2], reflect_pad),
                          _output_size(x.shape[3], reflect_pad))
        return out.contiguous(memory_format=kernel_memory_format(x))

    @torch.library.register_fake(_WEIGHT_OP)
    def _(weight):
        torch._check(weight.dim() == 4, lambda: "dreamkit::winograd_weight: weight must be (K, C, 3, 3)")
        return weight.new_empty(36, weight.shape[0], weight.shape[1])

    def setup_context(ctx, inputs, output):
        x, weight, bias, reflect_pad, _ = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.pad = bias is not None, reflect_pad

    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        pad = ctx.pad
        padded = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect") if pad else x
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad, padded, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [0, 0], [1, 1], False, [0, 0],
            1, mask)
        if pad and grad_x is not None:
            grad_x = torch.ops.aten.reflection_pad2d_backward(grad_x, x, [pad] * 4)
        return grad_x, grad_weight, grad_bias, None, None

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_KERNELS = kernel_devices(_OP) if _register() else {}


def _compiled(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    return bool(_KERNELS.get(x.device.type, False)) and x.dtype in _DTYPES and all(
        t is None or t.dtype == x.dtype for t in others)


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """conv3x3's transform of ``weight`` (K, C, 3, 3): (36, K, C), the 6x6 Winograd-domain filter
    G g Gᵀ of each (made in float64, rounded once to weight's dtype). Not differentiable."""
    check_tensor("winograd_weight", "weight", weight, dims=(4,), layout="(K, C, 3, 3)", floating=True)
    if tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_weight: weight must be (K, C, 3, 3); got shape {tuple(weight.shape)}")
    with torch.no_grad():
        if _compiled(weight):
            return torch.ops.dreamkit.winograd_weight(weight)
        return _reference.winograd_weight(weight)


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, reflect_pad: int = 0,
            transformed_weight: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` (stride 1) for ``x`` (N, C, H, W) and ``weight`` (K, C, 3, 3),
    of ``x`` padded by reflection by ``reflect_pad`` pixels first (0: no padding): output
    (N, K, H + 2p - 2, W + 2p - 2), channels_last if ``x`` is. ``transformed_weight``:
    :func:`winograd_weight` of ``weight``, kept by the caller. Falls back to ``F.conv2d`` where the
    compiled kernel does not apply (other devices or dtypes)."""
    check_tensor("conv3x3", "x", x, dims=(4,), layout="(N, C, H, W)", floating=True)
    check_tensor("conv3x3", "weight", weight, dims=(4,), layout="(K, C, 3, 3)", floating=True)
    if tuple(weight.shape[1:]) != (x.shape[1], 3, 3):
        raise ValueError(f"conv3x3: weight must be (K, {x.shape[1]}, 3, 3) for x with {x.shape[1]} channels; "
                         f"got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("conv3x3", "bias", bias, dims=(1,), layout="(K,)", floating=True)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"conv3x3: bias must have {weight.shape[0]} elements (weight's K); got {bias.shape[0]}")
    check_int("conv3x3", "reflect_pad", reflect_pad)
    if reflect_pad < 0 or (reflect_pad and reflect_pad >= min(x.shape[-2:])):
        raise ValueError(f"conv3x3: reflect_pad must be 0 or more and smaller than x's height and width "
                         f"(reflection); got {reflect_pad} for x of shape {tuple(x.shape)}")
    if min(x.shape[-2:]) + 2 * reflect_pad < 3:
        raise ValueError(f"conv3x3: x must be at least 3x3 once padded; got shape {tuple(x.shape)} with "
                         f"reflect_pad={reflect_pad}")
    if transformed_weight is not None:
        check_tensor("conv3x3", "transformed_weight", transformed_weight, dims=(3,), layout="(36, K, C)",
                     floating=True)
        if tuple(transformed_weight.shape) != (36, *weight.shape[:2]):
            raise ValueError(f"conv3x3: transformed_weight must be winograd_weight(weight), of shape "
                             f"(36, {weight.shape[0]}, {weight.shape[1]}); got {tuple(transformed_weight.shape)}")
    if _compiled(x, weight, bias, transformed_weight):
        return torch.ops.dreamkit.conv3x3(x, weight, bias, reflect_pad, transformed_weight)
    return _reference.conv3x3(x, weight, bias, reflect_pad)
