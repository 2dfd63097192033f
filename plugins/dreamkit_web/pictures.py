"""Small pictures the page shows: previews of work in progress and the gallery's thumbnails."""

from __future__ import annotations

from typing import Any

import torch


def small_picture(image: torch.Tensor, side: int) -> Any:
    """``image`` (1×3×H×W, 0..1, any device) as a PIL image whose longest side is at most ``side``
    (area-averaged: no aliasing)."""
    from dreamkit.io import tensor_to_pil

    picture = image.detach()[:1].float().cpu().clamp(0, 1)
    scale = side / max(picture.shape[-2:])
    if scale < 1:
        size = (max(1, round(picture.shape[-2] * scale)), max(1, round(picture.shape[-1] * scale)))
        picture = torch.nn.functional.interpolate(picture, size=size, mode="area")
    return tensor_to_pil(picture)
