"""The page's history: every finished run kept in a local gallery folder, newest first, within a
size cap, reopened with its pipeline.

One entry is a folder ``<time>-<job id>/`` holding ``result.<ext>`` (the download: a PNG with its
recipe, or a sequence's animation), ``input.png`` and ``thumb.png`` (small pictures of the input and
the result) and ``entry.json`` (when, the input's name, the pipeline, the seed, the command). The
server serves only these names, of entries it lists; the client never names a path.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .pictures import small_picture

#: Longest side of the pictures kept beside a result.
THUMB_SIDE = 256
#: What an entry holds, and the only names the server serves from it.
FILES = ("thumb.png", "input.png")
ENTRY = re.compile(r"\d{8}-\d{6}-[0-9a-f]{32}")


def default_folder() -> Path:
    """``$XDG_DATA_HOME/dreamkit/gallery`` (``~/.local/share/dreamkit/gallery``)."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dreamkit" / "gallery"


class Gallery:
    """The entries in ``folder``, at most ``cap_bytes`` in all (the oldest go first)."""

    def __init__(self, folder: Path, cap_bytes: int) -> None:
        self.folder = Path(folder)
        self.cap_bytes = cap_bytes

    def add(self, job: Any, input_picture: Any) -> str:
        """Keep a finished job: its download, small pictures of its input (``input_picture``, a PIL
        image) and result, and what reopens it. Returns the entry's id."""
        from dreamkit.io import load_image

        entry = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(job.created))}-{job.id}"
        staging = self.folder / f".{entry}.part"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        download = job.folder / job.result["download"]
        result_name = "result" + download.suffix
        shutil.copyfile(download, staging / result_name)
        input_picture.save(staging / "input.png")
        first = job.folder / job.result["files"][0]
        small_picture(load_image(first), THUMB_SIDE).save(staging / "thumb.png")
        from .settings import samples

        sample = job.source["name"] if Path(job.source["path"]) in set(samples().values()) else None
        record = {"id": entry, "time": job.created, "source": job.source["name"], "sample": sample, "seed": job.seed,
                  "pipeline": reopenable(job.pipeline), "command": job.result["command"], "result": result_name,
                  "width": job.result["width"], "height": job.result["height"]}
        (staging / "entry.json").write_text(json.dumps(record, indent=1))
        staging.rename(self.folder / entry)  # whole or not at all
        self.trim()
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, newest first."""
        return [record for _, record in reversed(self._records())]

    def _records(self) -> list[tuple[Path, dict[str, Any]]]:
        """(folder, entry record) of every readable entry, oldest first (by the job's start time:
        two runs in the same second keep their order)."""
        found = []
        for folder in self._folders():
            try:
                found.append((folder, json.loads((folder / "entry.json").read_text())))
            except (OSError, ValueError):
                continue  # a damaged entry is skipped, not fatal
        return sorted(found, key=lambda pair: (pair[1].get("time", 0), pair[0].name))

    def file(self, entry: str, name: str) -> Path | None:
        """The path of an entry's file, or None when either is not one the gallery lists."""
        folder = self.folder / entry
        if not ENTRY.fullmatch(entry) or not folder.is_dir():
            return None
        try:
            result = json.loads((folder / "entry.json").read_text()).get("result")
        except (OSError, ValueError):
            return None
        return folder / name if name in (*FILES, result) and (folder / name).is_file() else None

    def delete(self, entry: str) -> bool:
        folder = self.folder / entry
        if not ENTRY.fullmatch(entry) or not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True

    def trim(self) -> None:
        """Remove the oldest entries until the gallery fits its cap (the newest always stays)."""
        folders = [folder for folder, _ in self._records()]
        for damaged in set(self._folders()) - set(folders):  # no readable entry.json: nothing lists it
            shutil.rmtree(damaged, ignore_errors=True)
        sizes = {folder: sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) for folder in folders}
        total = sum(sizes.values())
        for folder in folders[:-1]:
            if total <= self.cap_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]

    def _folders(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_dir() and ENTRY.fullmatch(p.name)]


def reopenable(pipeline: Any) -> dict[str, Any]:
    """The pipeline as the page reopens it: each step's values that differ from the defaults, a
    sample file by name (``sample:NAME``); an uploaded file is left out (the user picks it again;
    its name is listed under ``files``), and no server path is ever handed back."""
    from dreamkit.resources import Resource

    from .settings import samples

    sample_names = {path: name for name, path in samples().items()}

    def value(item: Any) -> Any:
        if isinstance(item, Resource):
            return f"sample:{sample_names[Path(item.path)]}" if Path(item.path) in sample_names else None
        return item

    steps = []
    for step in pipeline.steps:
        params, files = {}, []
        for key, current in step.values.items():
            if current == step.params[key].default:
                continue
            kept = [value(v) for v in current] if isinstance(current, list) else value(current)
            if kept is None or (isinstance(kept, list) and None in kept):
                files.append(key)
                continue
            params[key] = kept
        steps.append({"effect": step.name, "params": params, **({"files": files} if files else {})})
    return {"steps": steps}
