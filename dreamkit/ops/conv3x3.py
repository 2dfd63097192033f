"""``conv3x3``: a 3x3 convolution (stride 1, no padding) by Winograd's F(4x4, 3x3) on the CPU.

``conv3x3(x, weight, bias)`` equals ``F.conv2d(x, weight, bias)`` for ``weight`` of shape
``(K, C, 3, 3)``, up to float rounding: the sums over channels become 36 GEMMs with 4x fewer
multiplies than direct convolution, so it pays where channels are many (about 2x oneDNN's direct
convolution at 128 channels; slower below ~32). Its rounding error is larger than a direct
convolution's (the transforms scale by up to 8 and by sixths): see ``error_bound`` in the tests.
float32 and float64 on the CPU; other dtypes and devices run ``F.conv2d`` (cuDNN already picks
Winograd where it pays). Differentiable (the backward is the ordinary convolution backward).
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format

_OP = "dreamkit::conv3x3"
_DTYPES = (torch.float32, torch.float64)


def _register() -> bool:
    """Fake (meta) and autograd implementations of the compiled op; False without the extension."""
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, weight, bias):
        torch._check(x.dim() == 4, lambda: f"dreamkit::conv3x3: x must be (N, C, H, W); got {x.dim()} dims")
        torch._check(weight.dim() == 4 and tuple(weight.shape[1:]) == (x.shape[1], 3, 3),
                     lambda: f"dreamkit::conv3x3: weight must be (K, C, 3, 3); got {tuple(weight.shape)}")
        out = x.new_empty(x.shape[0], weight.shape[0], x.shape[2] - 2, x.shape[3] - 2)
        return out.contiguous(memory_format=kernel_memory_format(x))

    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
            mask)
        return grad_x, grad_weight, grad_bias

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_KERNELS = kernel_devices(_OP) if _register() else {}


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` (stride 1, no padding) for ``x`` (N, C, H, W) and ``weight``
    (K, C, 3, 3): output (N, K, H - 2, W - 2), channels_last if ``x`` is. Falls back to
    ``F.conv2d`` where the compiled kernel does not apply (other devices or dtypes)."""
    check_tensor("conv3x3", "x", x, dims=(4,), layout="(N, C, H, W)", floating=True)
    check_tensor("conv3x3", "weight", weight, dims=(4,), layout="(K, C, 3, 3)", floating=True)
    if tuple(weight.shape[1:]) != (x.shape[1], 3, 3):
        raise ValueError(f"conv3x3: weight must be (K, {x.shape[1]}, 3, 3) for x with {x.shape[1]} channels; "
                         f"got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor("conv3x3", "bias", bias, dims=(1,), layout="(K,)", floating=True)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"conv3x3: bias must have {weight.shape[0]} elements (weight's K); got {bias.shape[0]}")
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"conv3x3: x must be at least 3x3 (no padding); got shape {tuple(x.shape)}")
    if (_KERNELS.get(x.device.type, False) and x.dtype in _DTYPES and weight.dtype == x.dtype
            and (bias is None or bias.dtype == x.dtype)):
        return torch.ops.dreamkit.conv3x3(x, weight, bias)
    return _reference.conv3x3(x, weight, bias)
