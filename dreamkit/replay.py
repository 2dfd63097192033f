"""Replaying a PNG written by dreamkit: rerun its embedded recipe and compare the pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DreamkitError
from .io import ENCODING_KEY, load_image, open_image, read_metadata, read_recipe, tensor_to_pil, through_encoding
from .pipeline import Pipeline
from .plugins import PluginHost
from .recipe import RECIPE_FORMAT, make_recipe
from .weights import sha256_of


@dataclass
class ReplayReport:
    """The replayed image and how it compares with the original output."""

    image: torch.Tensor
    recipe: dict[str, Any]
    identical: bool
    max_difference: int
    differing_pixels: int
    version_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Thread count, CPU capability, CPU and GPU that differ from the recording: why last bits may differ.
    platform_changes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: How the pixels were compared: "PNG" (lossless), or how a JPEG/WebP output's were (through
    #: the same encoding as the output's, or, for a file that does not record it, a lossy decode).
    compared: str = "PNG"


def replay(
    png: str | Path,
    *,
    input_path: str | Path | None = None,
    device: str | None = None,
    host: PluginHost | None = None,
) -> ReplayReport:
    """Rerun the recipe embedded in ``png`` on its input and compare with ``png``'s pixels.

    The input is the recorded path unless ``input_path`` is given; either way its sha256 must match
    the recorded one, since another input cannot reproduce the image.
    """
    png = Path(png)
    recipe = read_recipe(png)
    if recipe.get("format") != RECIPE_FORMAT:
        raise DreamkitError(f"{png}: recipe format {recipe.get('format')!r} is not supported; expected {RECIPE_FORMAT}")
    source = recipe.get("input") or {}
    path = Path(input_path) if input_path is not None else Path(source.get("path", ""))
    if input_path is None and not path.is_file():
        raise DreamkitError(f"{png}: the recorded input {source.get('path')!r} is not there; pass --input PATH")
    if not path.is_file():
        raise DreamkitError(f"{path}: no such file")
    actual = sha256_of(path)
    if source.get("sha256") and actual != source["sha256"]:
        raise DreamkitError(
            f"{path} is not the input this image was made from: sha256 {actual}, recorded {source['sha256']}"
        )
    if device is None:
        device = "cuda" if recipe.get("device") == "cuda" and torch.cuda.is_available() else "cpu"
    pipeline = Pipeline.from_config(_with_recorded_files(png, recipe), host=host)
    result = _rerun(pipeline, path, source, int(recipe["seed"]), device, host)
    frame = recipe.get("frame")
    index = 0 if frame is None else int(frame)
    if index >= len(result.frames):
        raise DreamkitError(f"{png}: recipe names frame {index} but the replay produced {len(result.frames)} frames")
    replayed = result.frames[index].image

    with open_image(png) as original_image:
        fmt = original_image.format
        encoding = read_metadata(png).get(ENCODING_KEY) if fmt in ("JPEG", "WEBP") else None
        if fmt in ("JPEG", "WEBP") and encoding:
            replayed_pil = through_encoding(replayed, encoding["format"], int(encoding["quality"]))
            compared = f"{encoding['format']} at quality {encoding['quality']}, encoded the same way as the output"
        else:
            replayed_pil = tensor_to_pil(replayed)
            compared = fmt if fmt not in ("JPEG", "WEBP") else \
                f"a lossy {fmt} decode (the file does not record its encoding): expect the codec's differences"
        new = np.asarray(replayed_pil, dtype=np.int16)
        original = np.asarray(original_image.convert(replayed_pil.mode), dtype=np.int16)
    if new.shape != original.shape:
        identical, max_diff, differing = False, 255, int(np.prod(original.shape[:2]))
    else:
        diff = np.abs(new - original)
        identical = not diff.any()
        max_diff = int(diff.max()) if diff.size else 0
        differing = int(diff.reshape(diff.shape[0], diff.shape[1], -1).any(axis=2).sum())
    now = make_recipe(pipeline, int(recipe["seed"]), torch.device(device), None)
    return ReplayReport(replayed, recipe, identical, max_diff, differing, _changes(recipe, now, "versions"),
                        _changes(recipe, now, "platform"), compared)


def _with_recorded_files(png: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's pipeline config with each file parameter pointing at the file recorded for it,
    after checking that the file is there and unchanged (a clear error naming the step, the
    parameter and the file otherwise: another file cannot reproduce the image)."""
    import copy

    config = copy.deepcopy(recipe["pipeline"])
    for resource in recipe.get("resources") or []:
        where = f"effect '{resource['effect']}': parameter '{resource['param']}'"
        path = Path(resource["path"])
        if resource["kind"] in ("image", "file"):
            if not path.is_file():
                raise DreamkitError(f"{png}: {where} names {resource['name']!r}, recorded at {path}, which is not "
                                    "there any more; put it back to replay this image")
            actual = sha256_of(path)
            if actual != resource["sha256"]:
                raise DreamkitError(f"{png}: {where}: {resource['name']!r} ({path}) changed since this image was made "
                                    f"(sha256 {actual}, recorded {resource['sha256']}); the replay cannot reproduce it")
        params = config["steps"][resource["step"]]["params"]
        if resource["index"] is None:
            params[resource["param"]] = str(path)
        else:
            params[resource["param"]][resource["index"]] = str(path)
    return config


def _rerun(pipeline: Pipeline, path: Path, source: dict[str, Any], seed: int, device: str,
           host: PluginHost | None) -> Any:
    """The recorded run again, as the batch ran it: the image; or the recorded frame of a video,
    at its index, after the frames before it when the pipeline is sequential (each frame starts
    from the previous one's result, so frame N needs frames 0..N, or S..N from a recorded
    ``sequence_start`` S)."""
    frame = source.get("video_frame")
    if frame is None:
        image = load_image(path, background=source.get("background", "white"))
        return pipeline.run(image, seed=seed, device=device, host=host, source=path.name)
    from .batch.video import FrameReader
    from .io import max_pixels_from_env

    first = int(source.get("sequence_start", 0)) if pipeline.sequential else int(frame)
    sequence = pipeline.sequence(seed=seed, device=device, host=host, source=path.name, start=first)
    reader = FrameReader()
    try:
        for index in range(first, int(frame) + 1):
            result = sequence.push(reader.read(path, index, max_pixels_from_env()))
    finally:
        reader.close()
    return result


def _changes(recorded: dict[str, Any], now: dict[str, Any], section: str) -> dict[str, tuple[str, str]]:
    old, new = recorded.get(section) or {}, now.get(section) or {}
    return {key: (str(old.get(key)), str(new.get(key))) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and key in old}
