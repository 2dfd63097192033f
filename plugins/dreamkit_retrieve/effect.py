"""The ``retrieve`` effect: a pipeline step that adds an image's nearest neighbours in an index
to the run's records (``dreamkit run photos/ -e retrieve:index=photos.index,k=5 -o out/``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from dreamkit import Effect, Param
from dreamkit.errors import DreamkitError

from .index import ImageIndex


class Retrieve(Effect):
    """Search an index with the image as the query and record the ``k`` nearest images (path,
    score, size, sha256), best first; the image itself is unchanged. The descriptor is the
    index's own (content or style, its backbone and layers), so results match
    ``dreamkit index search``. An image that is itself in the index finds itself first;
    ``skip_self=true`` leaves out hits that are the image itself (same file name, similarity
    above :data:`SELF_SCORE`)."""

    name = "retrieve"
    summary = "Nearest neighbours of the image in a dreamkit index (by content or style)."

    index = Param(str, "", resource="folder", words=("",), help="the index folder (made by `dreamkit index build`)")
    k = Param(int, 5, min=1, max=1000, help="how many neighbours to record")
    skip_self = Param(bool, False, help="leave out the image itself when it is in the index")

    def check(self) -> None:
        if not self.index:
            raise self.invalid("index", "name an index folder made by `dreamkit index build`")
        try:
            _open(self.index)
        except DreamkitError as exc:
            raise self.invalid("index", str(exc)) from None

    #: Many images are described in one model call in batch runs.
    batchable = True

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        return self.apply_batch([image], [context])[0]

    def apply_batch(self, images: list[torch.Tensor], contexts: list[Any]) -> list[torch.Tensor]:
        """Describe all images at once, search, and record each one's neighbours."""
        index = _open(self.index)
        vectors = index.describer(str(contexts[0].device), contexts[0].host).embed(images)
        for context, hits in zip(contexts, index.search_vectors(vectors, self.k + int(self.skip_self))):
            kept = [hit for hit in hits if not (self.skip_self and _is_self(hit, context))][: self.k]
            context.add_result({"index": str(index.path), "by": index.spec.kind,
                                "neighbours": [hit.as_dict() for hit in kept]})
        return images


#: A hit this similar with the image's own file name is the image itself (descriptors of one
#: file differ only by float rounding: ~1e-6).
SELF_SCORE = 0.9999


def _is_self(hit: Any, context: Any) -> bool:
    return hit.score >= SELF_SCORE and context.source is not None and Path(hit.item.path).name == context.source


_OPEN: dict[tuple[str, int, int, int], ImageIndex] = {}


def _open(path: str) -> ImageIndex:
    """The index at ``path``, opened once per process and again after it changes on disk."""
    from .store import DATABASE

    database = Path(path) / DATABASE
    try:
        stat = database.stat()
    except OSError:
        return ImageIndex.open(path)  # raises the clear "does not exist" error
    # per thread too: a SQLite connection belongs to the thread that opened it (a Ray actor
    # runs jobs in another thread than the one that built the effect)
    key = (str(database.resolve()), stat.st_mtime_ns, stat.st_size, threading.get_ident())
    if key not in _OPEN:
        for old in [k for k in _OPEN if k[0] == key[0] and k[3] == key[3]]:
            _OPEN.pop(old).close()
        _OPEN[key] = ImageIndex.open(path)
    return _OPEN[key]
