"""Resume: is an existing output the result of this very job?

An output written by dreamkit carries its recipe. Its *identity* is what decides the pixels: the
pipeline with every parameter, the seed, the input's sha256 (and frame, for a video), and the
background colour. Versions, device and thread count are not part of it: they can change the
last bits of a float, not what was asked for.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

from ..errors import DreamkitError
from ..io import RECIPE_KEY, RESULTS_KEY, read_metadata
from .outputs import OutputPlan


class State(enum.Enum):
    ABSENT = "absent"        #: nothing written yet
    DONE = "done"            #: complete, by this job: skip it
    INCOMPLETE = "incomplete"  #: started by this job (frames without the animation): redo it
    FOREIGN = "foreign"      #: made by another recipe, input or tool: only --overwrite replaces it


def identity(recipe: dict[str, Any]) -> str:
    """The parts of a recipe that decide the pixels, as canonical JSON."""
    source = recipe.get("input") or {}
    key = {
        "pipeline": recipe.get("pipeline"),
        "seed": recipe.get("seed"),
        "sha256": source.get("sha256"),
        "video_frame": source.get("video_frame"),
        "background": source.get("background"),
    }
    return json.dumps(key, sort_keys=True)


def existing_state(plan: OutputPlan, wanted: str) -> tuple[State, list[dict[str, Any]]]:
    """The state of ``plan``'s outputs for the job whose identity is ``wanted`` and, when it is
    done, its outputs as a record's ``frames`` (``{"output", "results"}`` read back from each)."""
    if plan.image.exists():
        metadata = _metadata(plan.image)
        if metadata is None or identity(metadata[RECIPE_KEY]) != wanted:
            return State.FOREIGN, []
        return State.DONE, [{"output": str(plan.image), "results": metadata.get(RESULTS_KEY) or []}]
    if plan.frames_dir.exists():
        frames = sorted(plan.frames_dir.glob(f"frame_*{plan.image.suffix}"))
        found = [_metadata(frame) for frame in frames]
        if not found or any(m is None or identity(m[RECIPE_KEY]) != wanted for m in found):
            return State.FOREIGN, []
        if not plan.animation.exists():
            return State.INCOMPLETE, []
        return State.DONE, [{"output": str(frame), "results": m.get(RESULTS_KEY) or []} for frame, m in zip(frames, found)]
    if plan.animation.exists():
        return State.FOREIGN, []
    return State.ABSENT, []


def _metadata(path: Path) -> dict[str, Any] | None:
    try:
        metadata = read_metadata(path)
    except DreamkitError:
        return None
    return metadata if isinstance(metadata.get(RECIPE_KEY), dict) else None
