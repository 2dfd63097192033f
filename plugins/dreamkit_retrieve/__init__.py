"""dreamkit's built-in retrieval plugin: index images, search them by example (by content or by
style), find near-duplicates.

It registers ``dreamkit index ...`` (:mod:`.commands`) and the ``retrieve`` pipeline step
(:mod:`.effect`) exactly as a third-party plugin would. The Python API::

    from dreamkit_retrieve import ImageIndex, make_spec, create_index, run_index
    index = create_index("photos.index", make_spec("content"), ["photos/"], recursive=True)
    run_index(index, BatchSettings())            # or run_index(..., RayEngine(workers=8))
    hits = index.search_images([load_image("query.jpg")], k=10)[0]
"""

from __future__ import annotations

from typing import Any

from dreamkit import hookimpl

from .descriptors import Describer, DescriptorSpec, make_spec
from .index import DUPES_THRESHOLD, Hit, ImageIndex
from .indexing import create_index, run_index
from .store import BadIndexError, Item


@hookimpl
def dreamkit_register_effects(register: Any) -> None:
    from .effect import Retrieve

    register(Retrieve)


@hookimpl
def dreamkit_register_commands(register: Any) -> None:
    from .commands import COMMAND

    register(COMMAND)


__all__ = ["BadIndexError", "DUPES_THRESHOLD", "Describer", "DescriptorSpec", "Hit", "ImageIndex", "Item",
           "create_index", "make_spec", "run_index"]
