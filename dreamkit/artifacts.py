"""Run artifacts: images an effect makes on the way (``save_every``'s intermediate steps).

An effect never writes where a parameter says: it hands an artifact to its context
(``context.save_artifact(name, image)``) and the front end decides where it goes. ``dreamkit run``
puts a job's artifacts beside its output, in ``OUTDIR/<name>.steps/``; the web page in the job's
own folder; the Python API in the folder given to ``Pipeline.run(..., artifacts=FOLDER)``, or
nowhere. A folder is made only when something is saved into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import DreamkitError


@runtime_checkable
class Artifacts(Protocol):
    """Where a run's artifacts go."""

    def save(self, name: str, image: Any) -> None:
        """Keep ``image`` (1×C×H×W, 0..1) as ``name`` (a plain file name ending in .png)."""


class FolderArtifacts:
    """Artifacts as PNG files in ``folder`` (made on the first save; a file saved again is replaced)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def save(self, name: str, image: Any) -> None:
        from .io import save_image

        if Path(name).name != name or not name.endswith(".png"):
            raise DreamkitError(f"artifact name {name!r} is not allowed; expected a plain file name ending in .png")
        self.folder.mkdir(parents=True, exist_ok=True)
        save_image(image, self.folder / name, overwrite=True)

    def __repr__(self) -> str:
        return f"FolderArtifacts({str(self.folder)!r})"


def as_artifacts(value: "Artifacts | str | Path | None") -> Artifacts | None:
    """``value`` as given, or a :class:`FolderArtifacts` for a folder path; None: artifacts are dropped."""
    if value is None or isinstance(value, Artifacts):
        return value
    return FolderArtifacts(value)


__all__ = ["Artifacts", "FolderArtifacts", "as_artifacts"]
