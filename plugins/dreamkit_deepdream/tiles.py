"""The jittered gradient of a dream objective, in one piece or in exact tiles (``dreamkit.tiling``)."""

from __future__ import annotations

from typing import Callable

import torch

from dreamkit import ops
from dreamkit.tiling import Features, Geometry, Owned, Tile, owned_regions

ObjectiveFn = Callable[[Features, "Owned | None"], torch.Tensor]


def jittered_gradient(extractor: torch.nn.Module, objective: ObjectiveFn, image: torch.Tensor,
                      shift: tuple[int, int], tiles: list[Tile], geometry: Geometry) -> tuple[torch.Tensor, float]:
    """The gradient of ``objective`` w.r.t. ``jitter(image, *shift)`` (so still rolled: the
    fused ``dream_update`` un-rolls it) and its value.

    With several tiles the rolled image is never materialised: each crop is gathered from
    ``image`` through wrapped row and column indices, which saves a full-size copy.
    """
    height, width = image.shape[-2:]
    if len(tiles) == 1:
        crop = ops.jitter(image, *shift).requires_grad_()
        value = objective(extractor(crop), None)
        (grad,) = torch.autograd.grad(value, crop)
        return grad, float(value.detach())
    grad = torch.zeros_like(image)
    total = 0.0
    for tile in tiles:
        (y0, y1), (x0, x1) = tile.crop
        rows = (torch.arange(y0, y1, device=image.device) - shift[0]) % height
        columns = (torch.arange(x0, x1, device=image.device) - shift[1]) % width
        crop = image.index_select(-2, rows).index_select(-1, columns).requires_grad_()
        features = extractor(crop)
        value = objective(features, owned_regions(tile, features, geometry, height, width))
        (tile_grad,) = torch.autograd.grad(value, crop)
        grad[..., y0:y1, x0:x1] += tile_grad
        total += float(value.detach())
    return grad, total
