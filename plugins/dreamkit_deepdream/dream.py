"""The DeepDream loop: octaves with detail transfer, jittered normalised gradient ascent, zoom.

Like the original notebook: the image is shrunk into a pyramid of octaves; the dream starts on
the smallest, and at each finer octave only the *detail* dreamed so far (dream minus its base)
is enlarged and added to that octave's base, so the photo's own detail is never blurred by the
round trips. Each step rolls the image by a random shift (jitter, from the run's seeded
generator), takes the gradient of the objective (tiled for large images), optionally blurs it,
and lets ``dreamkit.ops.dream_update`` un-roll it, normalise it by its mean absolute value, step
and clamp to 0..1 in one pass.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torchvision.transforms.v2.functional as TF

from dreamkit import ops
from dreamkit.tiling import Geometry, LazyGeometry, activation_counts, choose_tile_size, memory_budget, plan_tiles

from .objective import Objective
from .tiles import jittered_gradient

log = logging.getLogger("dreamkit.deepdream")


@dataclass
class Settings:
    """The numbers of a dream (see the effect's parameters for their meaning)."""

    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10
    step_size: float = 0.005
    jitter: int = 32
    blur: float = 0.0
    tile_size: int | None = None  # None: tile only when a pass would need more than the memory budget
    memory_mb: int | None = None  # the pass's budget (None: half the available memory, tiling.memory_budget)
    min_side: int = 32


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int) -> list[tuple[int, int]]:
    """Sizes from the full one down, dividing by ``scale``; octaves whose shorter side would fall
    below ``min_side`` are dropped (with a note in the log), but the full size is always kept."""
    sizes = [(height, width)]
    for index in range(1, octaves):
        size = (round(height / scale**index), round(width / scale**index))
        if min(size) < min_side:
            log.info("deepdream: %d octave(s) instead of %d: the next would be %dx%d, below the %d px the "
                     "network needs", len(sizes), octaves, size[1], size[0], min_side)
            break
        sizes.append(size)
    return sizes


@dataclass
class StepRecord:
    octave: int
    step: int
    objective: float


def dream(image: torch.Tensor, extractor: torch.nn.Module, objective: Objective, geometry: Geometry | LazyGeometry,
          settings: Settings, generator: torch.Generator, *, progress: Callable[[int, str], Any] | None = None,
          on_step: Callable[[torch.Tensor, StepRecord], None] | None = None) -> tuple[torch.Tensor, list[StepRecord]]:
    """Dream ``image`` (1, 3, H, W, 0..1); returns the result and the objective of every step."""
    height, width = image.shape[-2:]
    sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale, settings.min_side)
    bases = [image] + [ops.octave_resample(image, size, antialias=True) for size in sizes[1:]]
    history: list[StepRecord] = []
    budget = memory_budget(image.device, settings.memory_mb)
    detail = torch.zeros_like(bases[-1])
    for octave, size in enumerate(reversed(sizes)):
        base = bases.pop()  # a coarser base is not needed again: free it before the finer octaves
        if octave > 0:
            detail = ops.octave_resample(detail, size)
        current = detail.add_(base).clamp_(0, 1)  # reuses the detail's memory: large images are large
        del detail
        core = choose_tile_size(extractor, *size, settings.tile_size, budget, geometry)
        tiles = plan_tiles(*size, core, geometry)
        if len(tiles) > 1:
            log.info("deepdream: %dx%d in %d tiles of %d px (a pass may use %d MiB: %s)", size[1], size[0], len(tiles),
                     core, budget // 2**20, "memory_mb" if settings.memory_mb else "half the available memory")
        # Tiles need the whole image's activation counts; one piece counts its own activations.
        objective.counts = activation_counts(extractor, *size) if len(tiles) > 1 else {}
        shown = f"octave {octave + 1}/{len(sizes)} {size[1]}x{size[0]}" + (f" in {len(tiles)} tiles" if len(tiles) > 1 else "")
        bar = progress(settings.steps, shown) if progress else nullcontext()
        with bar as tick:  # tick: a dreamkit.progress.ProgressBar, or None without progress
            for step in range(settings.steps):
                shift = _random_shift(settings.jitter, size, generator)
                grad, value = jittered_gradient(extractor, objective, current, shift, tiles, geometry)
                if settings.blur > 0:
                    grad = _blur(grad, settings.blur)
                ops.dream_update(current, grad, shift, settings.step_size, clamp=(0.0, 1.0), inplace=True)
                del grad
                record = StepRecord(octave, step, value)
                history.append(record)
                if tick is not None:
                    tick.update(1)
                    tick.show(objective=value)
                    tick.preview(current)  # the dream so far: the front end decides if and when to show it
                if on_step is not None:
                    on_step(current, record)
        if octave < len(sizes) - 1:
            detail = current - base
    return current, history


def _random_shift(jitter: int, size: tuple[int, int], generator: torch.Generator) -> tuple[int, int]:
    if jitter <= 0:
        return 0, 0
    limits = [min(jitter, side - 1) for side in size]
    return tuple(int(torch.randint(-lim, lim + 1, (1,), generator=generator)) if lim > 0 else 0 for lim in limits)


def _blur(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = max(3, 2 * math.ceil(3 * sigma) + 1)
    kernel = min(kernel, 2 * (min(grad.shape[-2:]) // 2) - 1) if min(grad.shape[-2:]) > 2 else 1
    return TF.gaussian_blur(grad, [kernel, kernel], [sigma, sigma]) if kernel >= 3 else grad


def zoom(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Enlarge the centre of ``image`` by ``factor`` to the same size (the next frame's start)."""
    height, width = image.shape[-2:]
    crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return ops.octave_resample(image[..., top:top + crop_h, left:left + crop_w].contiguous(), (height, width))
