"""The search page's server side: the indexes a server shares (``dreamkit serve --index
NAME=PATH``), their groups of near-duplicates and their images as small pictures.

Searching itself is a job running the ``retrieve`` step on the query image (``index=folder:NAME``),
as on every other front end: this module only says what the indexes are and what the dupes view
needs. It reads indexes through the retrieve plugin's public Python API, as any plugin may. The
client names an index by its name and an image by the index's own key: never a path.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .settings import ApiError

#: Side of the pictures the page shows for indexed images (px).
PICTURE_SIDE = 160


def check_index(name: str, path: Path) -> None:
    """Raise a :class:`~dreamkit.errors.DreamkitError` naming ``--index NAME=PATH`` unless
    ``path`` is an index (what ``dreamkit serve`` checks before it starts)."""
    from dreamkit.errors import DreamkitError
    from dreamkit_retrieve import ImageIndex

    try:
        ImageIndex.open(path).close()
    except DreamkitError as exc:
        raise DreamkitError(f"--index {name}={path}: {exc}") from None


def index_summaries(indexes: dict[str, Path]) -> list[dict[str, Any]]:
    """What the page shows of each shared index: its name, what it describes (``content`` or
    ``style``), how many images, and the dupes threshold to start from (None: give one)."""
    from dreamkit_retrieve import DUPES_THRESHOLD, ImageIndex

    summaries = []
    for name, path in indexes.items():
        with ImageIndex.open(path) as index:
            by = index.spec.kind
            summaries.append({"name": name, "by": by, "images": len(index), "descriptor": index.spec.describe(),
                              "dupes_threshold": DUPES_THRESHOLD if by == "content" else None})
    return summaries


def dupe_groups(name: str, path: Path, threshold: float | None) -> dict[str, Any]:
    """The index's groups of near-duplicates (``dreamkit index dupes``), biggest first, each led
    by its likely original; each image with its key (for its picture), name, size and similarity
    to the group's first."""
    from dreamkit_retrieve import DUPES_THRESHOLD, ImageIndex

    with ImageIndex.open(path) as index:
        if threshold is None:
            if index.spec.kind != "content":
                raise ApiError(400, f"index {name!r} describes {index.spec.kind}, not content: the default "
                                    "threshold is for content indexes; give a threshold (a cosine similarity)")
            threshold = DUPES_THRESHOLD
        if not -1.0 <= threshold <= 1.0:
            raise ApiError(400, f"threshold {threshold} is not allowed; expected a cosine similarity from -1 to 1")
        groups = index.dupes(threshold)
        return {"index": name, "threshold": threshold, "images": len(index),
                "groups": [[_hit(hit) for hit in group] for group in groups]}


def item_picture(name: str, path: Path, key: int) -> bytes:
    """A PNG of the indexed image ``key`` (the index's own key), its longest side at most
    :data:`PICTURE_SIDE`."""
    from dreamkit.errors import DreamkitError
    from dreamkit.io import load_image
    from dreamkit_retrieve import ImageIndex

    from .pictures import small_picture

    with ImageIndex.open(path) as index:
        item = index.store.lookup([key]).get(key)
    if item is None:
        raise ApiError(404, f"index {name!r} has no image {key}")
    if item.video_frame is not None:
        raise ApiError(404, f"image {key} of index {name!r} is frame {item.video_frame} of a video: not shown")
    try:
        picture = small_picture(load_image(item.path), PICTURE_SIDE)
    except DreamkitError as exc:
        raise ApiError(404, f"image {key} of index {name!r} cannot be shown: {exc}") from None
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def _hit(hit: Any) -> dict[str, Any]:
    item = hit.item
    return {"key": item.key, "name": Path(item.path).name, "width": item.width, "height": item.height,
            "score": round(hit.score, 4)}
