"""``dream_update``: DeepDream's gradient-ascent step, fused into one pass over the image.

After the backward pass through a jittered image, the step is: un-roll the gradient, divide it
by its mean absolute value, add ``step_size`` times that to the image and clamp. As separate torch
ops that is five passes and four temporaries; the kernel reads the gradient twice (mean, then
update) and the image once, and can write in place. Not differentiable (it is an optimiser step).
"""

from __future__ import annotations

import torch

from . import _reference
from ._checks import check_number, check_pair, check_tensor
from ._extension import extension, kernel_devices
from ._layout import kernel_memory_format

_OP = "dreamkit::dream_update"
_OP_INPLACE = "dreamkit::dream_update_"


def _register() -> bool:
    if extension() is None:
        return False

    @torch.library.register_fake(_OP)
    def _(image, grad, shift_y, shift_x, step_size, clamp_min, clamp_max, eps):
        return torch.empty_like(image, memory_format=kernel_memory_format(image))

    @torch.library.register_fake(_OP_INPLACE)
    def _(image, grad, shift_y, shift_x, step_size, clamp_min, clamp_max, eps):
        return None

    return True


_REGISTERED = _register()
_KERNELS = kernel_devices(_OP) if _REGISTERED else {}
_INPLACE_KERNELS = kernel_devices(_OP_INPLACE) if _REGISTERED else {}


def _check_clamp(clamp) -> tuple[float | None, float | None]:
    if clamp is None:
        return None, None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise TypeError(f"dream_update: clamp must be None or a pair (low, high), either may be None; got {clamp!r}")
    low, high = (None if v is None else check_number("dream_update", "clamp", v) for v in clamp)
    if low is not None and high is not None and low > high:
        raise ValueError(f"dream_update: clamp low {low} is greater than high {high}")
    return low, high


@torch.no_grad()
def dream_update(image: torch.Tensor, grad: torch.Tensor, shift: int | tuple[int, int], step_size: float,
                 clamp: tuple[float | None, float | None] | None = None, eps: float = 1e-8,
                 inplace: bool = False) -> torch.Tensor:
    """``clamp(image + step_size * g / (mean|g| + eps))`` with ``g = jitter(grad, -shift)``.

    ``grad`` is the gradient of the objective w.r.t. the image jittered by ``shift`` (rows,
    columns); ``mean|g|`` is per sample for a 4-D image (B, C, H, W), over the whole tensor
    otherwise. ``clamp`` is ``(low, high)``, either may be ``None``. With ``inplace=True``
    ``image`` is updated and returned. Not differentiable.
    """
    check_tensor("dream_update", "image", image, min_dim=2, layout="(..., H, W)", floating=True)
    check_tensor("dream_update", "grad", grad)
    if grad.shape != image.shape or grad.dtype != image.dtype or grad.device != image.device:
        raise ValueError(
            "dream_update: grad must match image in shape, dtype and device; got "
            f"grad {tuple(grad.shape)} {grad.dtype} {grad.device}, image {tuple(image.shape)} {image.dtype} {image.device}"
        )
    shift = check_pair("dream_update", "shift", shift)
    step_size = check_number("dream_update", "step_size", step_size)
    eps = check_number("dream_update", "eps", eps)
    if eps < 0:
        raise ValueError(f"dream_update: eps must be >= 0, got {eps}")
    low, high = _check_clamp(clamp)
    args = (grad, shift[0], shift[1], step_size, low, high, eps)
    device = image.device.type
    if inplace and _INPLACE_KERNELS.get(device, False):
        torch.ops.dreamkit.dream_update_(image, *args)
        return image
    if _KERNELS.get(device, False):
        result = torch.ops.dreamkit.dream_update(image, *args)
    else:
        result = _reference.dream_update(image, grad, shift, step_size, (low, high), eps)
    return image.copy_(result) if inplace else result
