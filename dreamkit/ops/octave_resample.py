"""``octave_resample``: bilinear resize with DeepDream's wrap-around jitter fused into the same pass.

``octave_resample(x, size, shift)`` equals ``jitter(F.interpolate(x, size, mode="bilinear",
align_corners=False), *shift)``: the shift is folded into the kernel's index tables, so resizing
and jittering read and write every value once. NCHW or channels_last (kept), float32/64, bf16,
fp16. Its gradient is ATen's bilinear backward of the un-rolled gradient.
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_pair, check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format
from .jitter import jitter

_OP = "dreamkit::octave_resample"


def _register() -> bool:
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, size, shift_y, shift_x):
        return x.new_empty((x.shape[0], x.shape[1], size[0], size[1])).contiguous(
            memory_format=kernel_memory_format(x)
        )

    def setup_context(ctx, inputs, output):
        x, size, shift_y, shift_x = inputs
        # Plain ints: ATen's bilinear backward rejects a symbolic input size under dynamic
        # shapes (torch.compile then specialises on the image size, as F.interpolate's does).
        ctx.input_size = [int(s) for s in x.shape]
        ctx.size = [int(s) for s in size]
        ctx.shift = (shift_y, shift_x)

    def backward(ctx, grad):
        unrolled = jitter(grad, -ctx.shift[0], -ctx.shift[1])
        grad_x = torch.ops.aten.upsample_bilinear2d_backward(
            unrolled, ctx.size, ctx.input_size, False, None, None
        )
        return grad_x, None, None, None

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_KERNELS = kernel_devices(_OP) if _register() else {}


def octave_resample(x: torch.Tensor, size: int | tuple[int, int], shift: int | tuple[int, int] = (0, 0),
                    antialias: bool = False) -> torch.Tensor:
    """Resize ``x`` (B, C, H, W) bilinearly to ``size`` (height, width), then roll the result by
    ``shift`` (rows, columns) with wrap-around.

    Matches ``F.interpolate(mode="bilinear", align_corners=False)`` within float rounding.
    ``antialias=True`` (a low-pass filter when shrinking) runs ATen's antialiased resize followed
    by :func:`jitter`: two passes, same result as the reference. Differentiable.
    """
    check_tensor("octave_resample", "x", x, dims=(4,), layout="(B, C, H, W)", floating=True)
    size = check_pair("octave_resample", "size", size, positive=True)
    shift = check_pair("octave_resample", "shift", shift)
    if min(x.shape[-2:]) < 1:
        raise ValueError(f"octave_resample: x has an empty image plane, shape {tuple(x.shape)}")
    if not antialias and _KERNELS.get(x.device.type, False):
        return torch.ops.dreamkit.octave_resample(x, list(size), shift[0], shift[1])
    return _reference.octave_resample(x, size, shift, antialias=bool(antialias))
