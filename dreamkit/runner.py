"""Running a pipeline over files: inputs, output names, recipes, frames and animations.

Everything that can be checked before the first image is processed is checked first (inputs
exist and decode as images of an allowed format and size, outputs do not clash or exist already),
so a bad input never leaves half a batch behind and never costs the work done before it. Inputs
are decoded twice for that (once to check, once to process; never all held in memory at once):
milliseconds per photo, next to effects that take seconds. A frame sequence is written into a
hidden temporary folder and moved into place only when complete.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .context import resolve_device
from .errors import ImageLoadError, OutputError
from .io import (INPUT_SUFFIXES, OUTPUT_FORMATS, check_output_path, load_image, parse_color,
                 save_animation, save_image)
from .pipeline import Pipeline, RunResult
from .plugins import PluginHost
from .weights import sha256_of

RECIPE_FORMAT = "dreamkit-recipe/1"


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, image files directly inside folders, and glob patterns; sorted, no repeats."""
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
            if not matches:
                raise ImageLoadError(f"{path}: folder holds no images ({', '.join(INPUT_SUFFIXES)})")
            found += matches
        elif glob.has_magic(text) and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise ImageLoadError(f"{text}: no files match this pattern")
            found += matches
        elif path.exists():
            found.append(path)
        else:
            raise ImageLoadError(f"{path}: no such file")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


@dataclass
class OutputPlan:
    """Where one input's results go: ``OUT/stem.ext``, or for a sequence ``OUT/stem/frame_0001.ext``
    plus ``OUT/stem.gif``."""

    input: Path
    image: Path
    frames_dir: Path
    animation: Path

    def existing(self) -> list[Path]:
        return [p for p in (self.image, self.frames_dir, self.animation) if p.exists()]


def plan_outputs(inputs: Sequence[Path], outdir: Path, fmt: str, overwrite: bool) -> list[OutputPlan]:
    """Name every output and refuse clashes, inputs as outputs, and existing files (unless overwrite)."""
    suffix = "." + fmt.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise OutputError(f"output format {fmt!r} is not allowed; expected one of {', '.join(s[1:] for s in OUTPUT_FORMATS)}")
    plans, stems = [], {}
    for path in inputs:
        if path.stem in stems:
            raise OutputError(f"{path} and {stems[path.stem]} would both be written as {outdir / path.stem}{suffix}; rename one")
        stems[path.stem] = path
        plans.append(OutputPlan(path, outdir / f"{path.stem}{suffix}", outdir / path.stem, outdir / f"{path.stem}.gif"))
    for plan in plans:
        for target in (plan.image, plan.frames_dir, plan.animation):
            check_output_path(target, overwrite=overwrite, inputs=inputs)
    return plans


def make_recipe(pipeline: Pipeline, seed: int, device: torch.device, source: dict[str, Any] | None) -> dict[str, Any]:
    """What is embedded in every PNG: enough to replay the run exactly."""
    import torchvision

    from . import __version__

    return {
        "format": RECIPE_FORMAT,
        "pipeline": pipeline.to_config(),
        "seed": seed,
        "device": device.type,
        "input": source,
        "platform": platform_facts(device),
        "versions": {
            "dreamkit": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
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


def describe_input(path: Path, background: tuple[int, int, int]) -> dict[str, Any]:
    return {"name": path.name, "path": str(path.resolve()), "sha256": sha256_of(path), "background": list(background)}


def run_files(
    pipeline: Pipeline,
    inputs: Sequence[str | Path],
    outdir: str | Path,
    *,
    seed: int = 0,
    device: str = "auto",
    fmt: str = "png",
    overwrite: bool = False,
    background: str | Sequence[int] = "white",
    max_pixels: int | None = None,
    progress: bool | None = None,
    host: PluginHost | None = None,
    frame_duration_ms: int = 80,
) -> Iterator[dict[str, Any]]:
    """Run ``pipeline`` on every input and write the outputs; yield one JSON-able record per input.

    All checks run before the first image is processed (see the module docstring).
    """
    outdir = Path(outdir)
    target = resolve_device(device)
    color = parse_color(background)
    paths = expand_inputs(inputs)
    plans = plan_outputs(paths, outdir, fmt, overwrite)
    for path in paths:  # decode every input once before any work: truncation shows only when decoding
        load_image(path, background=color, max_pixels=max_pixels)
    for plan in plans:
        image = load_image(plan.input, background=color, max_pixels=max_pixels)
        source = describe_input(plan.input, color)
        result = pipeline.run(image, seed=seed, device=target, progress=progress, source=plan.input.name, host=host)
        recipe = make_recipe(pipeline, seed, target, source)
        yield write_result(result, plan, recipe, overwrite=overwrite, inputs=paths, frame_duration_ms=frame_duration_ms)


def write_result(
    result: RunResult,
    plan: OutputPlan,
    recipe: dict[str, Any],
    *,
    overwrite: bool,
    inputs: Sequence[Path],
    frame_duration_ms: int = 80,
) -> dict[str, Any]:
    """Write one input's frames (and animation) and return its JSON record."""
    record: dict[str, Any] = {"input": str(plan.input), "seed": recipe["seed"], "animation": None}
    frames = result.frames
    if len(frames) == 1:
        save_image(frames[0].image, plan.image, recipe={**recipe, "frame": None}, overwrite=overwrite, inputs=inputs)
        outputs = [plan.image]
    else:
        outputs = _write_frames(frames, plan, recipe, overwrite)
        save_animation([f.image for f in frames], plan.animation, duration_ms=frame_duration_ms, overwrite=overwrite, inputs=inputs)
        record["animation"] = str(plan.animation)
    record["frames"] = [{"output": str(out), "results": frame.results} for out, frame in zip(outputs, frames)]
    record["results"] = [
        {**r, "frame": index} for index, frame in enumerate(frames) for r in frame.results
    ]
    return record


def _write_frames(frames: list, plan: OutputPlan, recipe: dict[str, Any], overwrite: bool) -> list[Path]:
    plan.frames_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=plan.frames_dir.parent, prefix=f".{plan.frames_dir.name}."))
    suffix = plan.image.suffix
    try:
        names = []
        for index, frame in enumerate(frames):
            name = f"frame_{index + 1:04d}{suffix}"
            save_image(frame.image, staging / name, recipe={**recipe, "frame": index})
            names.append(name)
        if plan.frames_dir.exists():
            if not overwrite:
                raise OutputError(f"{plan.frames_dir} exists already; pass --overwrite to replace it")
            shutil.rmtree(plan.frames_dir)
        os.replace(staging, plan.frames_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [plan.frames_dir / name for name in names]
