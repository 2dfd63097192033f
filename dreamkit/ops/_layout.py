"""The memory format the kernels keep, mirrored for the fake (meta) implementations."""

from __future__ import annotations

import torch


def kernel_memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last input stays channels_last; anything else comes out contiguous (as csrc/'s
    ``is_channels_last``: a tensor that is both, such as 1x1 images, counts as contiguous)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
