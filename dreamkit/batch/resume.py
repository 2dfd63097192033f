"""Resume: is an existing output the result of this very job?

An output written by dreamkit carries its recipe. Its *identity* is what decides the pixels: the
pipeline with every parameter, the seed, the input's sha256 (and frame, for a video), and the
background colour. Versions, device and thread count are not part of it: they can change the
last bits of a float, not what was asked for.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DreamkitError, ImageLoadError
from ..io import RECIPE_KEY, RESULTS_KEY, open_image, read_metadata
from .outputs import OutputPlan


class State(enum.Enum):
    ABSENT = "absent"        #: nothing written yet
    DONE = "done"            #: complete, by this job: skip it
    INCOMPLETE = "incomplete"  #: started by this job (frames without the animation): redo it
    FOREIGN = "foreign"      #: made by another recipe, input or tool: only --overwrite replaces it
    STALE = "stale"          #: made by this recipe from files (a style image, a guide) that changed since: redo it
    DAMAGED = "damaged"      #: there but unreadable (empty, truncated, corrupt): a failed record; --overwrite redoes it


@dataclass(frozen=True)
class Existing:
    """What is in place of a job's outputs: its :class:`State`; for DONE the outputs as a record's
    ``frames``; for DAMAGED what is wrong (naming the file)."""

    state: State
    frames: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""
    #: for FOREIGN: the file in the way, when it is not one of the job's own targets (a video)
    blocking: Path | None = None


class _Damaged(Exception):
    """An output that cannot be read back."""


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


def existing_state(plan: OutputPlan, wanted: dict[str, Any], *, video_frames: set[int] | None = None) -> Existing:
    """The state of ``plan``'s outputs for the job whose recipe would be ``wanted`` (its pipeline,
    seed, input and resources) and, when it is done, its outputs as a record's ``frames``
    (``{"output", "results"}`` read back from each).

    A video frame whose PNG is gone is done when the video made from its folder holds it:
    ``video_frames`` are the frames of that video this run wants, and the video counts only when it
    holds them all (else they are redone and the video remade); ``None`` (``--frames``: the PNGs
    are wanted) never counts it. A video there that another recipe or tool made is FOREIGN."""
    try:
        return _existing(plan, wanted, video_frames)
    except _Damaged as exc:
        return Existing(State.DAMAGED, problem=str(exc))


def _existing(plan: OutputPlan, wanted: dict[str, Any], video_frames: set[int] | None) -> Existing:
    if plan.image.is_file():
        metadata = _metadata(plan.image)
        state = State.FOREIGN if metadata is None else _state_of(metadata[RECIPE_KEY], wanted)
        if state is not State.DONE:
            return Existing(state)
        return Existing(State.DONE, [{"output": str(plan.image), "results": metadata.get(RESULTS_KEY) or []}])
    if plan.image.exists():  # a folder where the image goes
        return Existing(State.FOREIGN)
    if plan.item.video_frame is not None:
        in_video = _in_video(plan, wanted, video_frames)
        if in_video is not None:
            return in_video
    if plan.frames_dir.is_dir():
        frames = sorted(plan.frames_dir.glob(f"frame_*{plan.image.suffix}"))
        found = [_metadata(frame) for frame in frames]
        states = {State.FOREIGN if m is None else _state_of(m[RECIPE_KEY], wanted) for m in found}
        if not found or State.FOREIGN in states:
            return Existing(State.FOREIGN)
        if State.STALE in states:
            return Existing(State.STALE)
        if not plan.animation.exists():
            return Existing(State.INCOMPLETE)
        return Existing(State.DONE, [{"output": str(frame), "results": m.get(RESULTS_KEY) or []}
                                     for frame, m in zip(frames, found)])
    if plan.frames_dir.exists() or plan.animation.exists():
        return Existing(State.FOREIGN)
    return Existing(State.ABSENT)


def _in_video(plan: OutputPlan, wanted: dict[str, Any], video_frames: set[int] | None) -> Existing | None:
    """The state of a video frame whose PNG is absent, as the video made from its folder tells it
    (``None``: no video there, so the frame's own outputs decide)."""
    from .encode import read_video_metadata, video_of

    video = video_of(plan.image.parent)
    if not video.exists():
        return None
    metadata = read_video_metadata(video)
    if metadata is None:  # not made by dreamkit (or before videos carried their recipe)
        return Existing(State.FOREIGN, blocking=video)
    recipe = metadata["recipe"]
    recipe = {**recipe, "input": {**(recipe.get("input") or {}), "video_frame": plan.item.video_frame}}
    state = _state_of(recipe, wanted)
    if state is State.FOREIGN:
        return Existing(State.FOREIGN, blocking=video)
    held = {int(index) for index in metadata["frames"]}
    if state is State.STALE or video_frames is None or not video_frames <= held:
        return Existing(State.INCOMPLETE)  # ours: redo the frame, and the video is remade from the PNGs
    return Existing(State.DONE, [{"output": str(video), "results": metadata["frames"][str(plan.item.video_frame)]}])


def _metadata(path: Path) -> dict[str, Any] | None:
    """The dreamkit metadata of an output, ``None`` for an image without a recipe; raises
    :class:`_Damaged` for a file that cannot be read back whole (empty, truncated, corrupt)."""
    try:
        metadata = read_metadata(path)
        with open_image(path) as image:
            image.verify()  # every chunk's checksum (PNG); without decoding the pixels
    except ImageLoadError as exc:  # empty, not an image, a header that does not parse
        raise _Damaged(f"{path} cannot be read back ({str(exc).removeprefix(f'{path}: ')})") from None
    except DreamkitError:
        return None  # readable, but its metadata is not dreamkit's
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's words for a truncated or corrupt file
        raise _Damaged(f"{path} cannot be read back ({exc})") from None
    return metadata if isinstance(metadata.get(RECIPE_KEY), dict) else None
