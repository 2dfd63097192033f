"""Built-in basic effects: ``resize`` and ``adjust``.

A plugin like any other: declared by the ``basic`` entry point in dreamkit's pyproject.toml and
disabled with ``DREAMKIT_DISABLE_PLUGINS=basic``.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from dreamkit import Effect, Param, hookimpl

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


class Resize(Effect):
    """Resize by a factor, to a width and/or height, or so the longer side fits ``max_side``.

    Give exactly one of ``scale``, ``max_side``, or ``width`` and/or ``height`` (one of the two
    keeps the aspect ratio, both set the exact size).
    """

    name = "resize"
    summary = "Resize by a factor, to a width/height, or to fit a longest side."
    scale = Param(float, None, gt=0, max=16, help="factor for both sides (0.5 halves the size)")
    width = Param(int, None, min=1, max=65536, help="output width in pixels")
    height = Param(int, None, min=1, max=65536, help="output height in pixels")
    max_side = Param(int, None, min=1, max=65536, help="longest side in pixels (never enlarges)")
    interpolation = Param(str, "bicubic", choices=tuple(_INTERPOLATION), advanced=True, help="resampling filter")
    antialias = Param(bool, True, advanced=True, help="low-pass filter when shrinking (avoids aliasing)")

    def check(self) -> None:
        given = [key for key in ("scale", "width", "height", "max_side") if self.values[key] is not None]
        if not given:
            raise self.invalid("scale", "give one of scale, width/height or max_side")
        if len(given) > 1 and set(given) != {"width", "height"}:
            raise self.invalid(given[1], f"cannot be combined with {given[0]}; give one of scale, width/height or max_side")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the result for an input of ``height`` × ``width``."""
        if self.scale is not None:
            return max(1, round(height * self.scale)), max(1, round(width * self.scale))
        if self.max_side is not None:
            factor = min(1.0, self.max_side / max(height, width))
            return max(1, round(height * factor)), max(1, round(width * factor))
        if self.width is not None and self.height is not None:
            return self.height, self.width
        if self.width is not None:
            return max(1, round(height * self.width / width)), self.width
        return self.height, max(1, round(width * self.height / height))

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        size = self.output_size(image.shape[-2], image.shape[-1])
        if tuple(size) == tuple(image.shape[-2:]):
            return image
        mode = _INTERPOLATION[self.interpolation]
        out = TF.resize(image, list(size), interpolation=mode, antialias=self.antialias and mode != InterpolationMode.NEAREST_EXACT)
        return out.clamp_(0, 1)


class Adjust(Effect):
    """Brightness, contrast, saturation and gamma, as factors where 1 changes nothing."""

    name = "adjust"
    summary = "Brightness, contrast, saturation and gamma (1 = unchanged)."
    brightness = Param(float, 1.0, min=0, max=10, help="multiplies every pixel")
    contrast = Param(float, 1.0, min=0, max=10, help="scales the distance from the mean grey")
    saturation = Param(float, 1.0, min=0, max=10, help="0 is greyscale, >1 more vivid")
    gamma = Param(float, 1.0, gt=0, max=10, help="pixel ** gamma: <1 brightens shadows, >1 darkens")

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        out = image
        if self.brightness != 1:
            out = TF.adjust_brightness(out, self.brightness)
        if self.contrast != 1:
            out = TF.adjust_contrast(out, self.contrast)
        if self.saturation != 1:
            out = TF.adjust_saturation(out, self.saturation)
        if self.gamma != 1:
            out = out.clamp(0, 1).pow(self.gamma)
        return out.clamp(0, 1)


@hookimpl
def dreamkit_register_effects(register):
    register(Resize)
    register(Adjust)
