"""The recipe embedded in every output: enough to replay the run, and to know on a re-run that
an output is already done (see :mod:`dreamkit.batch.resume`)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from .pipeline import Pipeline
from .resources import resources_of
from .weights import sha256_of

RECIPE_FORMAT = "dreamkit-recipe/1"


def make_recipe(pipeline: Pipeline, seed: int, device: torch.device, source: dict[str, Any] | None) -> dict[str, Any]:
    """What is embedded in every output: enough to replay the run exactly."""
    import PIL
    import torchvision

    from ._version import __version__

    return {
        "format": RECIPE_FORMAT,
        "pipeline": pipeline.to_config(),
        "seed": seed,
        "device": device.type,
        "input": source,
        "resources": resources_of(pipeline),
        "platform": platform_facts(device),
        "versions": {
            "dreamkit": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "pillow": PIL.__version__,  # its codecs encode JPEG and WebP outputs
        },
    }


def platform_facts(device: torch.device) -> dict[str, Any]:
    """What besides the recipe can change the last bits of a result: float sums are grouped by
    thread count, vector width (the CPU capability torch dispatches to) and the device's kernels."""
    from .runtime import cpu_name

    facts: dict[str, Any] = {"threads": torch.get_num_threads(),
                             "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_name()}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def describe_input(path: Path, background: tuple[int, int, int], *, video_frame: int | None = None,
                   sha256: str | None = None, first_frame: int = 0) -> dict[str, Any]:
    """The recipe's ``input``: name, absolute path, sha256, background (and frame, for a video;
    and ``sequence_start``, the frame its run started from, when that was not the first)."""
    source = {"name": path.name, "path": str(path.resolve()), "sha256": sha256 or sha256_of(path),
              "background": list(background)}
    if video_frame is not None:
        source["video_frame"] = video_frame
        if first_frame:
            source["sequence_start"] = first_frame
    return source
