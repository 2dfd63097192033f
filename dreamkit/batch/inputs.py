"""Finding a batch run's inputs: files, folders, globs, list files, stdin and video frames.

Every input gets a *name*: the part of its path mirrored under the output folder, without the
extension. How it is found decides it:

* a file given by name: its file name (``photos/cat.jpg`` → ``cat``);
* a folder: the path inside the folder (``trip/`` with ``--recursive`` → ``day1/IMG_1``);
* a glob: the path below the pattern's fixed part (``'trip/**/*.jpg'`` → ``day1/IMG_1``);
* a list file or stdin: the path below the listed files' common folder;
* a video file: one input per frame, ``<video name>/frame_000001`` ...

Hidden files and folders (``.name``) are skipped in folders, and so is the output folder itself,
so a re-run never takes its own outputs for inputs.
"""

from __future__ import annotations

import errno
import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Sequence

from ..io import INPUT_SUFFIXES
from .video import VIDEO_SUFFIXES, FrameRange, count_frames

#: Kinds of file a folder or glob contributes; anything else is listed as ignored.
MEDIA_SUFFIXES = INPUT_SUFFIXES + VIDEO_SUFFIXES


@dataclass(frozen=True)
class InputItem:
    """One image to process: a file, or one frame of a video file.

    ``name`` is the output name below the output folder (no extension); ``long_name`` is the same
    with the source's extension kept, used when two inputs would share a name."""

    path: Path
    name: PurePosixPath
    long_name: PurePosixPath
    video_frame: int | None = None
    #: A video frame's sequence starts here (the first frame of ``--start``): what a sequential
    #: pipeline runs from.
    first_frame: int = 0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "name": str(self.name), "long_name": str(self.long_name),
                "video_frame": self.video_frame, "first_frame": self.first_frame}

    @classmethod
    def from_dict(cls, data: dict) -> "InputItem":
        return cls(Path(data["path"]), PurePosixPath(data["name"]), PurePosixPath(data["long_name"]), data["video_frame"],
                   data.get("first_frame", 0))


@dataclass(frozen=True)
class InputProblem:
    """An input that could not even be listed (missing file, empty folder, unreadable list...)."""

    source: str
    reason: str


@dataclass
class InputListing:
    """What :func:`list_inputs` found: inputs to run, names it could not list, files it ignored."""

    items: list[InputItem] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    #: Files inside folders whose names are not images or videos (README.txt, .xmp sidecars).
    ignored: list[Path] = field(default_factory=list)


def list_inputs(
    sources: Sequence[str | Path],
    *,
    recursive: bool = False,
    list_files: Sequence[str | Path] = (),
    exclude: Path | None = None,
    stdin: IO[str] | None = None,
    frames: FrameRange = FrameRange(),
) -> InputListing:
    """Every input named by ``sources`` (files, folders, globs, ``-`` for paths on stdin) and by
    the ``list_files`` (one path per line, ``#`` comments; ``-`` is stdin), in the order given,
    each folder and glob sorted, without repeats. ``frames``: the part of each video to run."""
    listing = InputListing()
    found: list[tuple[Path, PurePosixPath]] = []
    excluded = exclude.resolve() if exclude is not None else None
    for source in sources:
        text = str(source)
        if text == "-":
            found += _listed(_read_lines(stdin or sys.stdin), "stdin", listing)
            continue
        path = Path(text)
        if path.is_dir():
            files = _walk(path, recursive, excluded)
            media = [p for p in files if p.suffix.lower() in MEDIA_SUFFIXES]
            listing.ignored += [p for p in files if p.suffix.lower() not in MEDIA_SUFFIXES]
            if not media:
                listing.problems.append(InputProblem(text, f"{path}: folder holds no images ({', '.join(MEDIA_SUFFIXES)})"
                                                     + ("" if recursive else "; subfolders need --recursive")))
            found += [(p, _relative(p, path)) for p in media]
        elif glob.has_magic(text) and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            matches = [p for p in matches if not _inside(p, excluded)]
            if not matches:
                listing.problems.append(InputProblem(text, f"{text}: no files match this pattern"))
            base = glob_base(text)
            found += [(p, _relative(p, base)) for p in matches]
        elif path.exists():
            found.append((path, PurePosixPath(path.name)))
        else:
            listing.problems.append(InputProblem(text, link_problem(path) or f"{path}: no such file"))
    for list_file in list_files:
        name = str(list_file)
        if name == "-":
            found += _listed(_read_lines(stdin or sys.stdin), "stdin", listing)
            continue
        try:
            lines = _read_lines(Path(name).open(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            listing.problems.append(InputProblem(name, f"list file {name}: cannot read it: {exc}"))
            continue
        found += _listed(lines, f"list file {name}", listing)
    seen: set[Path] = set()
    for path, relative in found:
        problem = link_problem(path)
        if problem:  # a loop or a dangling link is one bad input, named (resolve() would raise)
            listing.problems.append(InputProblem(str(path), problem))
            continue
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        listing.items += _items_for(path, relative, listing, frames)
    return listing


def link_problem(path: Path) -> str | None:
    """What is wrong with ``path`` if it is a symbolic link that leads nowhere: a loop, or a
    target that does not exist; ``None`` for anything else."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symbolic link loop (it leads back to itself)"
        return f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def _items_for(path: Path, relative: PurePosixPath, listing: InputListing, frames: FrameRange) -> list[InputItem]:
    name = relative.with_suffix("") if relative.suffix else relative
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return [InputItem(path, name, relative)]
    try:
        count = count_frames(path)
        indices = frames.indices(path, count.readable)
    except Exception as exc:  # a video that cannot be opened is one bad input among many
        listing.problems.append(InputProblem(str(path), str(exc)))
        return []
    if count.truncated:  # its readable frames run (and make a shorter video); the cut is a failure
        listing.problems.append(InputProblem(str(path), f"{path}: the video is cut short (truncated or damaged): "
                                                        f"{count.readable} of the {count.declared} frames its "
                                                        f"header declares can be read; those are run"))
    return [InputItem(path, name / f"frame_{index + 1:06d}", relative / f"frame_{index + 1:06d}", index,
                      frames.sequence_start(index, indices.start))
            for index in indices]


def _read_lines(handle: IO[str]) -> list[str]:
    with handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def _listed(lines: Iterable[str], where: str, listing: InputListing) -> list[tuple[Path, PurePosixPath]]:
    """Paths from a list: mirrored below their common folder (relative paths are from the
    current folder)."""
    paths = []
    for line in lines:
        path = Path(line)
        if path.is_file():
            paths.append(path)
        else:
            listing.problems.append(InputProblem(line, f"{path}: no such file (listed in {where})"))
    if not paths:
        return []
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return [(p, _relative(p.resolve(), common)) for p in paths]


def _walk(folder: Path, recursive: bool, excluded: Path | None) -> list[Path]:
    if not recursive:  # links that lead nowhere are kept, to be named as failures
        return sorted(p for p in folder.iterdir() if (p.is_file() or link_problem(p)) and not p.name.startswith("."))
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside(Path(root, d), excluded))
        files += [Path(root, n) for n in sorted(names) if not n.startswith(".")]
    return files


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def _relative(path: Path, base: Path) -> PurePosixPath:
    return PurePosixPath(path.relative_to(base).as_posix())


def glob_base(pattern: str) -> Path:
    """The fixed folder before a pattern's first wildcard: ``trip/**/*.jpg`` → ``trip``."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")
