"""Drawing analysis results on images: labelled boxes, points and text panels, readable at any size.

Annotations are drawn with Pillow onto a transparent RGBA layer the size of the image and then
composited onto the float image, so the pixels outside the annotations keep their full precision
(no 8-bit round trip) and the image stays on its device. Line widths and text scale with the
image's shorter side. Each label gets the same colour in every image and every run (the colour
is derived from the label's text, not from the order of the detections).
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]


def label_colour(label: str) -> Colour:
    """A bright colour fixed by the label's text: the same class is drawn the same way everywhere."""
    digest = hashlib.sha256(label.encode()).digest()
    hue = int.from_bytes(digest[:2], "little") / 65536.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return round(red * 255), round(green * 255), round(blue * 255)


def scale_for(width: int, height: int) -> float:
    """Base size of annotations in pixels: about 1/32 of the shorter side, never below 12 px text."""
    return max(12.0, min(width, height) / 32.0)


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at ``size`` pixels (no font file needed)."""
    return ImageFont.load_default(size=size)


@dataclass
class Box:
    """One labelled box (x1, y1, x2, y2 in pixels) with optional points (e.g. face landmarks)."""

    box: Sequence[float]
    label: str
    caption: str = ""
    points: Sequence[Sequence[float]] = field(default_factory=list)

    @property
    def colour(self) -> Colour:
        return label_colour(self.label)


def draw_boxes(image: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
    """``image`` (1×3×H×W, 0..1) with each box outlined in its label's colour, a caption tab
    (``caption`` or the label) and its points as dots. Returns a new tensor."""
    height, width = image.shape[-2:]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    base = scale_for(width, height)
    line = max(2, round(base / 6))
    text_font = font(round(base))
    for item in boxes:
        x1, y1, x2, y2 = (float(v) for v in item.box)
        draw.rectangle([x1, y1, x2, y2], outline=(*item.colour, 255), width=line)
        radius = max(2.0, base / 5)
        for x, y in item.points:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(*item.colour, 255),
                         outline=(0, 0, 0, 255), width=max(1, line // 2))
        _tab(draw, item.caption or item.label, (x1, y1), item.colour, text_font, width, height)
    return composite(image, layer)


def draw_panel(image: torch.Tensor, lines: Sequence[str], corner: str = "bottom-left") -> torch.Tensor:
    """``image`` with ``lines`` of text on a translucent dark panel in a corner: ``bottom-left``
    (default: out of the way of faces and of box captions, which sit above boxes) or ``top-left``."""
    if corner not in ("bottom-left", "top-left"):
        raise ValueError(f"draw_panel: corner {corner!r} is not allowed; expected 'bottom-left' or 'top-left'")
    height, width = image.shape[-2:]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    base = scale_for(width, height)
    text_font = font(round(base))
    pad = round(base / 2)
    boxes = [draw.textbbox((0, 0), text, font=text_font) for text in lines]
    line_height = max((b[3] - b[1] for b in boxes), default=0) + pad // 2
    panel_width = max((b[2] - b[0] for b in boxes), default=0) + 2 * pad
    panel_height = line_height * len(lines) + 2 * pad - pad // 2
    top = 0 if corner == "top-left" else max(0, height - panel_height)
    draw.rectangle([0, top, panel_width, top + panel_height], fill=(0, 0, 0, 160))
    for index, text in enumerate(lines):
        draw.text((pad, top + pad + index * line_height - boxes[index][1]), text, font=text_font,
                  fill=(255, 255, 255, 255))
    return composite(image, layer)


def _tab(draw: ImageDraw.ImageDraw, text: str, corner: tuple[float, float], colour: Colour,
         text_font: ImageFont.ImageFont, width: int, height: int) -> None:
    """A filled caption tab above the box's top-left corner (inside the box when there is no room)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    pad = max(2, (bottom - top) // 4)
    tab_w, tab_h = right - left + 2 * pad, bottom - top + 2 * pad
    x = min(max(0.0, corner[0]), max(0.0, width - tab_w))
    y = corner[1] - tab_h if corner[1] - tab_h >= 0 else max(0.0, corner[1])
    draw.rectangle([x, y, x + tab_w, y + tab_h], fill=(*colour, 255))
    ink = (0, 0, 0, 255) if sum(c * w for c, w in zip(colour, (0.299, 0.587, 0.114))) > 140 else (255, 255, 255, 255)
    draw.text((x + pad - left, y + pad - top), text, font=text_font, fill=ink)


def composite(image: torch.Tensor, layer: Image.Image) -> torch.Tensor:
    """Alpha-blend an RGBA Pillow layer onto a 1×3×H×W float image (same size); new tensor."""
    data = torch.from_numpy(np.array(layer, dtype=np.uint8))
    rgba = data.permute(2, 0, 1)[None].to(device=image.device, dtype=image.dtype) / 255.0
    alpha = rgba[:, 3:4]
    return image * (1 - alpha) + rgba[:, :3] * alpha


__all__ = ["Box", "composite", "draw_boxes", "draw_panel", "font", "label_colour", "scale_for"]
