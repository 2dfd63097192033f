"""Pure-PyTorch references of every op: the fallback when dreamkit._C is missing, and the
oracle the tests compare the kernels with."""

from __future__ import annotations

import torch


def jitter(x: torch.Tensor, shift_y: int, shift_x: int) -> torch.Tensor:
    """Wrap-around roll of the last two dims."""
    return torch.roll(x, shifts=(shift_y, shift_x), dims=(-2, -1))
