"""Safe image input and output.

Loading: an allowlist of formats, decompression bombs refused before decoding, EXIF orientation
applied, every pixel mode converted on purpose (see :func:`load_image`), errors that name the
file. Saving: written to a temporary file in the same folder and moved into place with
``os.replace`` (a failed save never destroys an existing file), inputs are never overwritten,
existing outputs only with ``overwrite=True``. Outputs carry the run's recipe (and the analysis
records made for them): PNGs in iTXt chunks, JPEG and WebP in the EXIF ImageDescription.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import DreamkitError, ImageLoadError, OutputError

log = logging.getLogger("dreamkit")

#: Formats we decode. Others (PSD, EPS, ...) are refused: fewer decoders, less attack surface.
INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
#: Output format by file extension.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP"}
#: Pillow's own warning threshold; above it an image is refused unless the limit is raised.
DEFAULT_MAX_PIXELS = 89_478_485
RECIPE_KEY = "dreamkit-recipe"
RESULTS_KEY = "dreamkit-results"
#: JPEG/WebP outputs: {"format", "quality"} of the encoding (PNG is lossless: nothing to record).
ENCODING_KEY = "dreamkit-encoding"
#: EXIF ImageDescription: where JPEG and WebP outputs keep {RECIPE_KEY: ..., RESULTS_KEY: ...} as JSON.
_EXIF_DESCRIPTION = 0x010E

_PIL_LIMIT_LOCK = threading.Lock()
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def parse_color(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"white"``, ``"#336699"``, ``"51,102,153"`` or an (r, g, b) tuple → (r, g, b)."""
    if not isinstance(text, str):
        values = tuple(int(v) for v in text)
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return values  # type: ignore[return-value]
        raise DreamkitError(f"background {text!r} is not allowed; expected three values 0..255")
    try:
        if "," in text:
            return parse_color([int(part) for part in text.split(",")])
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise DreamkitError(
            f"background {text!r} is not allowed; expected a colour name (white), #rrggbb or r,g,b"
        ) from None


def max_pixels_from_env() -> int:
    raw = os.environ.get("DREAMKIT_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
        if value <= 0:
            raise ValueError
        return value
    except ValueError:
        raise DreamkitError(f"DREAMKIT_MAX_PIXELS={raw!r} is not allowed; expected a positive integer") from None


def open_image(path: str | Path, *, max_pixels: int | None = None) -> Image.Image:
    """Open (header only) with the format allowlist and the pixel limit; nothing is decoded yet."""
    path = Path(path)
    limit = max_pixels or max_pixels_from_env()
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: empty file (0 bytes)")
    with _PIL_LIMIT_LOCK:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we check the size ourselves
        try:
            image = Image.open(path, formats=INPUT_FORMATS)
        except UnidentifiedImageError:
            raise ImageLoadError(
                f"{path}: not an image in an allowed format ({', '.join(INPUT_FORMATS)})"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(f"{path}: cannot read the image header: {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    width, height = image.size
    if width * height > limit:
        image.close()
        raise ImageLoadError(
            f"{path}: {width}×{height} = {width * height:,} pixels is over the limit of {limit:,} "
            "(a decompression bomb guard); if you trust this file, raise the limit with --max-pixels "
            "or DREAMKIT_MAX_PIXELS"
        )
    return image


def load_image(
    path: str | Path,
    *,
    background: str | Sequence[int] = "white",
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Load an image as a 1×3×H×W float32 tensor in 0..1.

    * EXIF orientation is applied, so the tensor is upright as a viewer shows it.
    * RGBA, LA and palette images with transparency are composited on ``background`` (colours
      hidden under fully transparent pixels do not leak through).
    * 16-bit greyscale (I;16, I) is scaled by 1/65535, keeping its precision; CMYK, 1-bit, L and
      palette images are converted to RGB.
    * Animated images (GIF, WebP, multi-page TIFF): the first frame is used and a note is logged.
    """
    path = Path(path)
    color = parse_color(background)
    image = open_image(path, max_pixels=max_pixels)
    try:
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            log.info("%s: animated image with %d frames; using the first frame", path, frames)
            image.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            upright = ImageOps.exif_transpose(image)
        return pil_to_tensor(upright, background=color)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{path}: cannot decode the image (truncated or corrupt?): {exc}") from None
    finally:
        image.close()


def pil_to_tensor(image: Image.Image, *, background: Sequence[int] = (255, 255, 255)) -> torch.Tensor:
    """Convert any PIL mode to a 1×3×H×W float32 tensor in 0..1 (see :func:`load_image`)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float32) / 65535.0
        array = np.clip(array, 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(array))[None, None].expand(1, 3, -1, -1).contiguous()
    if mode == "F":
        array = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(array))[None, None].expand(1, 3, -1, -1).contiguous()
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode in _ALPHA_MODES:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        base = Image.new("RGBA", image.size, (*background, 255))
        image = Image.alpha_composite(base, image)
    rgb = image.convert("RGB")
    array = np.asarray(rgb, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    return tensor.to(torch.float32).div_(255.0)


def as_rgb(image: torch.Tensor, user: str) -> torch.Tensor:
    """A 1×C×H×W (or C×H×W) image as three channels: greyscale is repeated, RGB passes through;
    anything else is refused, naming ``user`` (e.g. ``"effect 'detect'"``) and what it got."""
    channels = image.shape[-3] if image.dim() >= 3 else 0
    if channels == 3:
        return image
    if channels == 1:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:])
    raise ValueError(f"{user} needs an RGB or greyscale image (1 or 3 channels); got shape {tuple(image.shape)}")


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A 1×C×H×W or C×H×W float tensor (0..1, clamped) → 8-bit PIL image (L, RGB or RGBA)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected C×H×W with 1, 3 or 4 channels, got {tuple(image.shape)}")
    data = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    array = data.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGB" if array.shape[2] == 3 else "RGBA")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_write(path: Path, write: Any) -> None:
    """``write(temporary)`` fills a hidden temporary beside ``path`` (``.NAME.*.part``, which the
    next batch run sweeps if this process is killed), then it replaces ``path`` in one step: ``path``
    is never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created like any new file (0o666 less the umask), not 0600 as mkstemp's would be: the
    # temporary becomes the output.
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{path.suffix}.part")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_path(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse to write over an input (ever) or over an existing file (unless ``overwrite``)."""
    path = Path(path)
    resolved = path.resolve()
    for source in inputs:
        if Path(source).resolve() == resolved:
            raise OutputError(f"{path}: refusing to overwrite an input image")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists already; pass --overwrite (overwrite=True) to replace it")
    return path


def _checked_target(path: Path, formats: dict[str, str], what: str, overwrite: bool, inputs: Iterable[str | Path]) -> str:
    """The Pillow format for ``path``'s extension, after the overwrite checks."""
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unknown {what} extension {path.suffix!r}; use {', '.join(formats)}")
    check_output_path(path, overwrite=overwrite, inputs=inputs)
    return fmt


def save_image(
    image: torch.Tensor | Image.Image,
    path: str | Path,
    *,
    recipe: dict[str, Any] | None = None,
    results: list[dict[str, Any]] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    quality: int = 95,
) -> Path:
    """Save as PNG, JPEG or WebP (by extension), atomically.

    ``recipe`` and ``results`` (the analysis records made for this image) are embedded: in PNG
    iTXt chunks, in JPEG/WebP the EXIF ImageDescription. :func:`read_metadata` reads them back."""
    path = Path(path)
    fmt = _checked_target(path, OUTPUT_FORMATS, "output", overwrite, inputs)
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    pil, options = _encoding(pil, fmt, quality)
    metadata = {key: value for key, value in ((RECIPE_KEY, recipe), (RESULTS_KEY, results)) if value}
    if fmt == "PNG" and metadata:
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_itxt(key, json.dumps(value, sort_keys=True), zip=True)
        options["pnginfo"] = info
    elif metadata:  # JPEG/WebP: how the pixels were encoded too, so a replay can encode its own the same way
        metadata[ENCODING_KEY] = {"format": fmt, "quality": quality}
        exif = Image.Exif()
        exif[_EXIF_DESCRIPTION] = json.dumps(metadata, sort_keys=True)  # ASCII: json escapes the rest
        options["exif"] = exif.tobytes()
    atomic_write(path, lambda tmp: pil.save(tmp, format=fmt, **options))
    return path


def _encoding(pil: Image.Image, fmt: str, quality: int) -> tuple[Image.Image, dict[str, Any]]:
    """The image as ``fmt`` stores it and the encoder's options (lossy formats: ``quality``)."""
    if fmt not in ("JPEG", "WEBP"):
        return pil, {}
    return (pil.convert("RGB") if fmt == "JPEG" and pil.mode == "RGBA" else pil), {"quality": quality}


def through_encoding(image: torch.Tensor, fmt: str, quality: int) -> Image.Image:
    """``image`` encoded as :func:`save_image` encodes it for ``fmt`` and decoded again: the pixels
    a lossy output of it holds (what a replay compares with a JPEG or WebP output)."""
    pil, options = _encoding(tensor_to_pil(image), fmt, quality)
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    buffer.seek(0)
    decoded = Image.open(buffer)
    decoded.load()
    return decoded


def save_animation(
    frames: Sequence[torch.Tensor],
    path: str | Path,
    *,
    duration_ms: int = 80,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Save frames as an animated GIF or WebP (by extension), looping, atomically."""
    path = Path(path)
    fmt = _checked_target(path, ANIMATION_FORMATS, "animation", overwrite, inputs)
    images = [tensor_to_pil(frame).convert("RGB") for frame in frames]
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "duration": duration_ms, "loop": 0}
    if fmt == "WEBP":
        options["quality"] = 90
    atomic_write(path, lambda tmp: images[0].save(tmp, format=fmt, **options))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What dreamkit embedded in an output it wrote: ``{"dreamkit-recipe": ..., "dreamkit-results": ...}``
    (keys absent when not embedded; ``{}`` for any other image). Raises for text that is not JSON."""
    path = Path(path)
    image = open_image(path)
    try:
        if image.format == "PNG":
            texts = getattr(image, "text", {})
            return {key: _embedded_json(path, key, texts[key]) for key in (RECIPE_KEY, RESULTS_KEY) if key in texts}
        description = image.getexif().get(_EXIF_DESCRIPTION)  # JPEG/WebP: both keys in one JSON object
    finally:
        image.close()
    if not (isinstance(description, str) and RECIPE_KEY in description):
        return {}
    metadata = _embedded_json(path, "EXIF ImageDescription", description)
    if not isinstance(metadata, dict):
        raise DreamkitError(f"{path}: the embedded EXIF ImageDescription is not a JSON object")
    return metadata


def _embedded_json(path: Path, what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DreamkitError(f"{path}: the embedded {what} is not valid JSON: {exc}") from None


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe embedded in an image written by dreamkit (PNG, or JPEG/WebP in EXIF)."""
    path = Path(path)
    recipe = read_metadata(path).get(RECIPE_KEY)
    if recipe is None:
        raise DreamkitError(f"{path}: no dreamkit recipe in this image (only images written by dreamkit carry one)")
    if not isinstance(recipe, dict) or "pipeline" not in recipe:
        raise DreamkitError(f"{path}: the embedded recipe has no pipeline")
    return recipe
