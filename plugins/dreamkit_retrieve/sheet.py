"""Contact sheets: each query and its hits in a row, with names and similarity scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageOps

from dreamkit.annotate import font

THUMB = 176
GAP = 12
CAPTION = 40
BACKGROUND = (246, 246, 244)
INK = (40, 40, 40)
QUERY_EDGE = (52, 120, 246)


def contact_sheet(rows: Sequence[tuple[Image.Image, str, Sequence[tuple[Image.Image | None, str, float]]]]) -> Image.Image:
    """A sheet with one row per query: ``(query image, query caption, [(hit image or None when it
    cannot be read, caption, score), ...])``. Thumbnails keep their aspect ratio inside a square."""
    columns = 1 + max((len(hits) for _, _, hits in rows), default=0)
    cell_w, cell_h = THUMB + GAP, THUMB + CAPTION + GAP
    sheet = Image.new("RGB", (GAP + columns * cell_w + GAP, GAP + len(rows) * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    text_font, small_font = font(15), font(13)
    for r, (query, caption, hits) in enumerate(rows):
        y = GAP + r * cell_h
        _paste(sheet, draw, query, GAP, y, edge=QUERY_EDGE)
        _caption(draw, GAP, y, ["query", caption], text_font, small_font)
        x0 = GAP + cell_w + GAP  # a wider gap after the query
        for c, (image, name, score) in enumerate(hits):
            x = x0 + c * cell_w
            _paste(sheet, draw, image, x, y)
            _caption(draw, x, y, [f"{c + 1}. {score:.3f}", name], text_font, small_font)
    return sheet


def _paste(sheet: Image.Image, draw: ImageDraw.ImageDraw, image: Image.Image | None, x: int, y: int,
           edge: tuple[int, int, int] | None = None) -> None:
    draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), fill=(225, 225, 222))
    if image is not None:
        thumb = ImageOps.contain(image.convert("RGB"), (THUMB, THUMB), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
    else:
        draw.text((x + 8, y + THUMB // 2 - 8), "(unreadable)", font=font(13), fill=INK)
    if edge is not None:
        draw.rectangle((x - 3, y - 3, x + THUMB + 2, y + THUMB + 2), outline=edge, width=3)


def _caption(draw: ImageDraw.ImageDraw, x: int, y: int, lines: Sequence[str], first: Any, rest: Any) -> None:
    top = y + THUMB + 4
    for index, line in enumerate(lines):
        used = first if index == 0 else rest
        draw.text((x, top), _fit(draw, line, used, THUMB), font=used, fill=INK)
        top += 18


def _fit(draw: ImageDraw.ImageDraw, text: str, text_font: Any, width: int) -> str:
    """``text``, shortened from the left with '…' until it fits ``width`` pixels."""
    if draw.textlength(text, font=text_font) <= width:
        return text
    while text and draw.textlength("…" + text, font=text_font) > width:
        text = text[1:]
    return "…" + text


def thumbnail_source(path: str | Path, video_frame: int | None, max_pixels: int | None = None) -> Image.Image | None:
    """The image at ``path`` (a video's frame) for a sheet, or None if it cannot be read now."""
    from dreamkit.io import load_image, tensor_to_pil

    try:
        if video_frame is not None:
            from dreamkit.batch.video import FrameReader

            reader = FrameReader()
            try:
                return tensor_to_pil(reader.read(Path(path), video_frame, max_pixels or 89_478_485))
            finally:
                reader.close()
        return tensor_to_pil(load_image(path, max_pixels=max_pixels))
    except Exception:  # noqa: BLE001 (a file moved or broken since it was indexed: shown as such)
        return None
