"""Output names for a batch, and writing one input's results.

The naming rule (documented in the README):

1. An input's output is ``OUTDIR/<name>.<format>``, with ``<name>`` from :mod:`.inputs`
   (``cat.jpg`` → ``cat.png``; ``trip/day1/IMG_1.JPG`` with ``-r`` → ``day1/IMG_1.png``).
2. When two inputs would get the same output name (compared ignoring case, for case-insensitive
   file systems), each of them keeps its source extension: ``cut.png`` → ``cut.png.png`` and
   ``cut.jpg`` → ``cut.jpg.png``.
3. If that still clashes (the same file name from two folders given separately), the second and
   later ones, in input order, get ``-2``, ``-3``...: ``cat.jpg-2.png``.

A pipeline that makes a frame sequence writes ``OUTDIR/<name>/frame_0001.png ...`` and
``OUTDIR/<name>.gif`` instead; those names take part in the clash check too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from ..errors import OutputError
from ..io import OUTPUT_FORMATS, save_animation, save_image
from .inputs import InputItem


@dataclass(frozen=True)
class OutputPlan:
    """Where one input's results go: ``image``, or for a sequence ``frames_dir`` + ``animation``."""

    item: InputItem
    image: Path
    frames_dir: Path
    animation: Path

    def targets(self) -> tuple[Path, Path, Path]:
        return self.image, self.frames_dir, self.animation

    @property
    def artifacts(self) -> Path:
        """Where the job's artifacts (``save_every``'s steps) go: ``OUTDIR/<name>.steps/``."""
        return self.image.with_name(self.frames_dir.name + ".steps")

    def existing(self) -> list[Path]:
        return [p for p in self.targets() if p.exists()]

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.to_dict(), "image": str(self.image), "frames_dir": str(self.frames_dir),
                "animation": str(self.animation)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OutputPlan":
        return cls(InputItem.from_dict(data["item"]), Path(data["image"]), Path(data["frames_dir"]), Path(data["animation"]))


def output_suffix(fmt: str) -> str:
    suffix = "." + fmt.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise OutputError(f"output format {fmt!r} is not allowed; expected one of {', '.join(s[1:] for s in OUTPUT_FORMATS)}")
    return suffix


def assign_outputs(items: Sequence[InputItem], outdir: Path, fmt: str) -> list[OutputPlan]:
    """Name every input's outputs by the rule in the module docstring; refuse writing over an input."""
    suffix = output_suffix(fmt)
    names = [item.name for item in items]
    for index in _clashing(names, suffix):
        names[index] = items[index].long_name
    counts: dict[str, int] = defaultdict(int)
    for index in sorted(_clashing(names, suffix)):
        key = _key(names[index])
        counts[key] += 1
        if counts[key] > 1:
            names[index] = names[index].with_name(f"{names[index].name}-{counts[key]}")
    plans = [_plan(item, name, outdir, suffix) for item, name in zip(items, names)]
    inputs = {item.path.resolve() for item in items}
    for plan in plans:
        for target in plan.targets():
            if target.resolve() in inputs:
                raise OutputError(f"{target}: refusing to overwrite an input image; choose another output folder")
    return plans


def _plan(item: InputItem, name: PurePosixPath, outdir: Path, suffix: str) -> OutputPlan:
    base = outdir.joinpath(*name.parts)
    return OutputPlan(item, base.with_name(base.name + suffix), base, base.with_name(base.name + ".gif"))


def _key(name: PurePosixPath) -> str:
    return str(name).casefold()


def _clashing(names: Sequence[PurePosixPath], suffix: str) -> set[int]:
    """Indices of names whose outputs (image, frames folder or animation, and the folders they
    are in: ``x.png`` the file and ``x.png/inner.png``'s folder) meet another's."""
    owners: dict[str, set[int]] = defaultdict(set)
    for index, name in enumerate(names):
        folders = [_key(parent) for parent in name.parents if parent != PurePosixPath(".")]
        for claimed in (f"{_key(name)}{suffix}", _key(name), f"{_key(name)}.gif", *folders):
            owners[claimed].add(index)
    # a folder shared by many outputs is no clash; a folder that is also another output's file is
    folder_only = {key for key in owners if all(key in [_key(p) for p in names[i].parents] for i in owners[key])}
    return {index for key, group in owners.items() if len(group) > 1 and key not in folder_only for index in group}


def check_writable(outdir: Path) -> None:
    """Prove, before any work, that ``outdir`` can be written (or created), creating nothing."""
    existing = outdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"output folder {outdir} cannot be written: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {outdir} cannot be written: no permission in {existing}")
    if existing == outdir:  # permissions do not tell all (a read-only mount): write and remove a file
        try:
            with tempfile.NamedTemporaryFile(dir=outdir, prefix=".dreamkit-write-test-"):
                pass
        except OSError as exc:
            raise OutputError(f"output folder {outdir} cannot be written: {exc.strerror or exc}") from None


def write_result(result: Any, plan: OutputPlan, recipe: dict[str, Any], *, overwrite: bool,
                 frame_duration_ms: int = 80) -> dict[str, Any]:
    """Write one input's frames (and animation); return the ``frames``/``animation`` record fields."""
    inputs = [plan.item.path]
    frames = result.frames
    if len(frames) == 1:
        save_image(frames[0].image, plan.image, recipe={**recipe, "frame": None}, results=frames[0].results,
                   overwrite=overwrite, inputs=inputs)
        return {"frames": [{"output": str(plan.image), "results": frames[0].results}], "animation": None}
    outputs = _write_frames(frames, plan, recipe, overwrite)
    save_animation([f.image for f in frames], plan.animation, duration_ms=frame_duration_ms, overwrite=overwrite,
                   inputs=inputs)
    return {"frames": [{"output": str(out), "results": frame.results} for out, frame in zip(outputs, frames)],
            "animation": str(plan.animation)}


def _write_frames(frames: list, plan: OutputPlan, recipe: dict[str, Any], overwrite: bool) -> list[Path]:
    """Frames go to a hidden staging folder, moved into place only when all are written."""
    plan.frames_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=plan.frames_dir.parent, prefix=f".{plan.frames_dir.name}."))
    suffix = plan.image.suffix
    try:
        names = []
        for index, frame in enumerate(frames):
            name = f"frame_{index + 1:04d}{suffix}"
            save_image(frame.image, staging / name, recipe={**recipe, "frame": index}, results=frame.results)
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


def remove_stale_temporaries(plans: Sequence[OutputPlan]) -> int:
    """Remove the hidden temporary files (``.NAME.*.part``, frame staging folders) a killed run can
    leave beside planned outputs (atomic writes clean up after any exception, but not after
    SIGKILL); return how many were removed. Only while no other run writes there (the folder's
    lock, :mod:`.lock`, or the Ray engine's own actors, stopped)."""
    removed = 0
    for folder, names in _by_folder(plans).items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(".") and any(entry.name.startswith(f".{n}.") for n in names):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed += 1
    return removed


def _by_folder(plans: Sequence[OutputPlan]) -> dict[Path, set[str]]:
    folders: dict[Path, set[str]] = defaultdict(set)
    for plan in plans:
        for target in plan.targets():
            folders[target.parent].add(target.name)
    return folders
