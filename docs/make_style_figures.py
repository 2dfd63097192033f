"""Make the style pictures in the README (docs/images/style-*.jpg) with the style effect itself.

    .venv/bin/python docs/make_style_figures.py [--only pairs choices colour masks small]

Every picture comes from scikit-image's sample images; each figure is a grid of labelled columns.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from dreamkit import Pipeline, load_image, save_image
from dreamkit.io import tensor_to_pil
from dreamkit.plugins import get_host
from dreamkit.runtime import configure

SAMPLES = pathlib.Path(skimage.data.__file__).parent
OUT = pathlib.Path(__file__).resolve().parent / "images"
LABEL = 18  # pixels of label above each column


def photo(name: str, side: int) -> torch.Tensor:
    image = load_image(SAMPLES / name)
    scale = side / max(image.shape[-2:])
    return F.interpolate(image, scale_factor=scale, mode="bilinear", antialias=True).clamp(0, 1)


def stylise(image: torch.Tensor, **params) -> torch.Tensor:
    return Pipeline([get_host().effect("style")(**params)]).run(image).image


def thumbnail(path: pathlib.Path, height: int) -> Image.Image:
    image = Image.open(path).convert("RGB")
    return image.resize((round(image.width * height / image.height), height), Image.LANCZOS)


def grid(rows: list[list[tuple[str, Image.Image]]], path: pathlib.Path) -> None:
    """Rows of (label, picture), each row as tall as its first picture; saved as JPEG."""
    gap = 6
    width = max(sum(p.width for _, p in row) + gap * (len(row) - 1) for row in rows)
    height = sum(LABEL + row[0][1].height + gap for row in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for row in rows:
        x = 0
        for label, picture in row:
            draw.text((x + 2, y + 3), label, fill="black")
            canvas.paste(picture, (x, y + LABEL))
            x += picture.width + gap
        y += LABEL + row[0][1].height + gap
    canvas.save(path, quality=88)
    print("wrote", path)


def pairs(side: int = 384) -> None:
    rows = []
    for content, style in [("chelsea.png", "ihc.png"), ("coffee.png", "gravel.png"), ("rocket.jpg", "brick.png")]:
        image = photo(content, side)
        result = stylise(image, style=[str(SAMPLES / style)])
        rows.append([("content: " + content, tensor_to_pil(image)), ("style: " + style, thumbnail(SAMPLES / style, image.shape[-2])),
                     (f"-e style:style={style}", tensor_to_pil(result))])
    grid(rows, OUT / "style-pairs.jpg")


def choices(side: int = 320) -> None:
    columns = [("plain Gatys", dict(smoothing=0, normalize=False, style_weight=1e6)),
               ("+ per-layer normalisation", dict(smoothing=0)),
               ("+ softmax smoothing (default)", {})]
    rows = []
    for content, style in [("chelsea.png", "ihc.png"), ("coffee.png", "gravel.png")]:
        image = photo(content, side)
        row = [("content", tensor_to_pil(image)), ("style", thumbnail(SAMPLES / style, image.shape[-2]))]
        row += [(label, tensor_to_pil(stylise(image, style=[str(SAMPLES / style)], **params))) for label, params in columns]
        rows.append(row)
    grid(rows, OUT / "style-choices.jpg")


def colour(side: int = 320) -> None:
    image = photo("coffee.png", side)
    style = str(SAMPLES / "ihc.png")
    row = [("content", tensor_to_pil(image)), ("style", thumbnail(SAMPLES / "ihc.png", image.shape[-2]))]
    row += [(f"color={mode}", tensor_to_pil(stylise(image, style=[style], color=mode)))
            for mode in ("style", "luminance", "match")]
    grid([row], OUT / "style-colour.jpg")


def masks(side: int = 320) -> None:
    image = photo("chelsea.png", side)
    height, width = image.shape[-2:]
    left = torch.zeros(1, 3, height, width)
    left[..., : width // 2] = 1
    with tempfile.TemporaryDirectory() as tmp:
        save_image(left, f"{tmp}/left.png")
        save_image(1 - left, f"{tmp}/right.png")
        styles = [str(SAMPLES / "ihc.png"), str(SAMPLES / "gravel.png")]
        both = stylise(image, style=styles, masks=[f"{tmp}/left.png", f"{tmp}/right.png"])
        one = stylise(image, style=styles[:1], masks=[f"{tmp}/left.png"])
    grid([[("content", tensor_to_pil(image)), ("left: ihc.png, right: gravel.png", tensor_to_pil(both)),
           ("left: ihc.png, right: no mask (unstyled)", tensor_to_pil(one))]], OUT / "style-masks.jpg")


def small() -> None:
    """Thumbnails and previews: 128 and 256 px outputs with the defaults, shown at 2x and 1x
    (pixels doubled, not smoothed, so what the effect made is what is seen)."""
    rows = []
    for content, style in [("rocket.jpg", "gravel.png"), ("chelsea.png", "hubble_deep_field.jpg")]:
        row = [("style: " + style, thumbnail(SAMPLES / style, 256))]
        for side in (128, 256):
            result = tensor_to_pil(stylise(photo(content, side), style=[str(SAMPLES / style)]))
            factor = 256 // result.height if result.height < 256 else 1
            shown = result.resize((result.width * factor, result.height * factor), Image.NEAREST)
            row.append((f"{content} at {side} px" + (f" (shown {factor}x)" if factor > 1 else ""), shown))
        rows.append(row)
    grid(rows, OUT / "style-small.jpg")


FIGURES = {"pairs": pairs, "choices": choices, "colour": colour, "masks": masks, "small": small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    args = parser.parse_args()
    configure()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        FIGURES[name]()


if __name__ == "__main__":
    main()
