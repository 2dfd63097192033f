"""``jitter``: wrap-around roll of an image's last two dims (DeepDream's random shift).

``jitter(x, shift_y, shift_x)`` equals ``torch.roll(x, (shift_y, shift_x), dims=(-2, -1))`` but
moves every byte once (two copies per row, in parallel), for any dtype, NCHW or channels_last
(kept as it is). Its gradient is the roll by the negative shift.
"""

from __future__ import annotations

import torch

from . import _reference
from ._extension import extension

_OP = "dreamkit::jitter"


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    # Mirrors the kernel: channels_last input stays channels_last, anything else becomes contiguous.
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _register() -> bool:
    """Fake (meta) and autograd implementations of the compiled op; False without the extension."""
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(x, shift_y, shift_x):
        torch._check(x.dim() >= 2, lambda: f"dreamkit::jitter: x must have at least 2 dims; got {x.dim()}")
        return torch.empty_like(x, memory_format=_memory_format(x))

    def setup_context(ctx, inputs, output):
        ctx.shift = (inputs[1], inputs[2])

    def backward(ctx, grad):
        return torch.ops.dreamkit.jitter(grad, -ctx.shift[0], -ctx.shift[1]), None, None

    torch.library.register_autograd(_OP, backward, setup_context=setup_context)
    return True


_COMPILED = _register()
# Device types with a compiled kernel, looked up once (a plain dict also keeps torch.compile happy).
_KERNELS = {
    device: _COMPILED and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, key)
    for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
}


def _has_kernel(x: torch.Tensor) -> bool:
    return _KERNELS.get(x.device.type, False)


def jitter(x: torch.Tensor, shift_y: int, shift_x: int) -> torch.Tensor:
    """Roll ``x`` (``..., H, W``) by ``shift_y`` rows and ``shift_x`` columns with wrap-around.

    Shifts may be negative or larger than the size. Differentiable. Falls back to ``torch.roll``
    where no compiled kernel exists for ``x``'s device.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"jitter: x must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"jitter: x must have at least 2 dims (..., H, W); got shape {tuple(x.shape)}")
    for name, value in (("shift_y", shift_y), ("shift_x", shift_x)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"jitter: {name} must be an int, got {value!r}")
    if _has_kernel(x):
        return torch.ops.dreamkit.jitter(x, shift_y, shift_x)
    return _reference.jitter(x, shift_y, shift_x)
