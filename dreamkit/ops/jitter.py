"""``jitter``: wrap-around roll of an image's last two dims (DeepDream's random shift).

``jitter(x, shift_y, shift_x)`` equals ``torch.roll(x, (shift_y, shift_x), dims=(-2, -1))`` but
moves every byte once (two copies per row, in parallel), for any dtype, NCHW or channels_last
(kept as it is). Its gradient is the roll by the negative shift.
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_int, check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format

_OP = "dreamkit::jitter"


def _register() -> bool:
    """Fake (meta) and autograd implementations of the compiled op; False without the extension."""
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, shift_y, shift_x):
        torch._check(x.dim() >= 2, lambda: f"dreamkit::jitter: x must have at least 2 dims; got {x.dim()}")
        return torch.empty_like(x, memory_format=kernel_memory_format(x))

    def setup_context(ctx, inputs, output):
        ctx.shift = (inputs[1], inputs[2])

    def backward(ctx, grad):
        return torch.ops.dreamkit.jitter(grad, -ctx.shift[0], -ctx.shift[1]), None, None

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_KERNELS = kernel_devices(_OP) if _register() else {}


def jitter(x: torch.Tensor, shift_y: int, shift_x: int) -> torch.Tensor:
    """Roll ``x`` (``..., H, W``) by ``shift_y`` rows and ``shift_x`` columns with wrap-around.

    Shifts may be negative or larger than the size. Differentiable. Falls back to ``torch.roll``
    where no compiled kernel exists for ``x``'s device.
    """
    check_tensor("jitter", "x", x, min_dim=2, layout="(..., H, W)")
    check_int("jitter", "shift_y", shift_y)
    check_int("jitter", "shift_x", shift_x)
    if _KERNELS.get(x.device.type, False):
        return torch.ops.dreamkit.jitter(x, shift_y, shift_x)
    return _reference.jitter(x, shift_y, shift_x)
