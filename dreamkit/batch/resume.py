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
    STALE = "stale"          #: made by this recipe from files (a style image, a guide) that changed since: redo it


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


def files_identity(recipe: dict[str, Any]) -> str:
    """The sha256 of every file the recipe's parameters name (its ``resources``), as canonical JSON."""
    files = [(r.get("step"), r.get("param"), r.get("index"), r.get("sha256")) for r in recipe.get("resources") or []]
    return json.dumps(files)


def _state_of(recipe: dict[str, Any], wanted: dict[str, Any]) -> State:
    """DONE, STALE (the same job, files changed) or FOREIGN, for an output's recipe."""
    if identity(recipe) != identity(wanted):
        return State.FOREIGN
    return State.DONE if files_identity(recipe) == files_identity(wanted) else State.STALE


def existing_state(plan: OutputPlan, wanted: dict[str, Any]) -> tuple[State, list[dict[str, Any]]]:
    """The state of ``plan``'s outputs for the job whose recipe would be ``wanted`` (its pipeline,
    seed, input and resources) and, when it is done, its outputs as a record's ``frames``
    (``{"output", "results"}`` read back from each)."""
    if plan.image.exists():
        metadata = _metadata(plan.image)
        state = State.FOREIGN if metadata is None else _state_of(metadata[RECIPE_KEY], wanted)
        if state is not State.DONE:
            return state, []
        return State.DONE, [{"output": str(plan.image), "results": metadata.get(RESULTS_KEY) or []}]
    if plan.frames_dir.exists():
        frames = sorted(plan.frames_dir.glob(f"frame_*{plan.image.suffix}"))
        found = [_metadata(frame) for frame in frames]
        states = {State.FOREIGN if m is None else _state_of(m[RECIPE_KEY], wanted) for m in found}
        if not found or State.FOREIGN in states:
            return State.FOREIGN, []
        if State.STALE in states:
            return State.STALE, []
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
