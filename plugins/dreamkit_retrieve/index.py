"""An image index: search it by example, find its near-duplicates, keep its ANN graph in step.

>>> index = ImageIndex.open("photos.index")
>>> hits = index.search_images([load_image("query.jpg")], k=10)[0]
>>> [(hit.item.path, hit.score) for hit in hits]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .ann import (ANN_MIN_ITEMS, build_graph, exact_search, graph_search, load_graph, save_graph)
from .descriptors import Describer, DescriptorSpec
from .store import ANN_FILE, BadIndexError, IndexStore, Item

log = logging.getLogger("dreamkit")

#: Default cosine similarity at or above which two images are near-duplicates. On copies made by
#: resizing, JPEG at quality 40, 10% crops, flips, ±30% brightness and 5–8° rotations of the
#: sample images, copies score 0.67 or more and different images 0.47 or less (tests/test_retrieve.py).
DUPES_THRESHOLD = 0.6


@dataclass(frozen=True)
class Hit:
    """One search result: the item and its cosine similarity to the query (1 = same descriptor)."""

    item: Item
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.item.as_dict(), "score": round(self.score, 6)}


class ImageIndex:
    """An index folder opened for searching (and, from :mod:`.indexing`, for writing)."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.spec = DescriptorSpec.from_dict(store.settings["descriptor"])
        self._graph: Any = None
        self._graph_checked = False

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> "ImageIndex":
        return cls(IndexStore.open(path, writable=writable))

    def close(self) -> None:
        self._graph = None
        self.store.close()

    def __enter__(self) -> "ImageIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def path(self) -> Path:
        return self.store.path

    # -- searching ----------------------------------------------------------------------------
    def describer(self, device: str = "cpu", host: Any = None) -> Describer:
        """A :class:`Describer` that makes descriptors exactly as this index's were made."""
        return _describer(self.spec, str(device), host)

    def search_images(self, images: Sequence[Any], k: int = 10, *, device: str = "cpu",
                      host: Any = None) -> list[list[Hit]]:
        """The ``k`` nearest images in the index to each of ``images`` (1×3×H×W, 0..1)."""
        return self.search_vectors(self.describer(device, host).embed(images), k)

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """The ``k`` nearest images to each query descriptor, best first."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.spec.dim:
            raise BadIndexError(f"query descriptors have {queries.shape[1]} values; index {self.path} holds "
                                f"{self.spec.dim} ({self.spec.describe()})")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not len(self.store):
            return [[] for _ in queries]
        graph = self.graph()
        if graph is not None:
            keys, scores = graph_search(graph, queries, k)
        else:
            all_keys, matrix = self.store.vectors()
            keys, scores = exact_search(matrix, all_keys, queries, k)
        items = self.store.lookup(int(key) for key in np.unique(keys))
        return [[Hit(items[int(key)], float(score)) for key, score in zip(row_k, row_s)
                 if np.isfinite(score) and int(key) in items] for row_k, row_s in zip(keys, scores)]

    def graph(self) -> Any:
        """The ANN graph as a memory-mapped view, or None: the index is small (exact search) or
        the graph is missing, stale or unreadable (exact search; ``update`` rebuilds it)."""
        if not self._graph_checked:
            self._graph_checked = True
            path = self.path / ANN_FILE
            if self.store.settings.get("ann_generation") == self.store.generation and path.is_file():
                self._graph = load_graph(path, view=True)
            elif len(self.store) >= self.ann_min_items:
                log.warning("index %s: its ANN graph is missing or older than the index; searching exactly "
                            "(`dreamkit index update` rebuilds it)", self.path)
        return self._graph

    @property
    def ann_min_items(self) -> int:
        return int(self.store.settings.get("ann_min_items", ANN_MIN_ITEMS))

    # -- near-duplicates ----------------------------------------------------------------------
    def dupes(self, threshold: float = DUPES_THRESHOLD, neighbours: int = 10) -> list[list[Hit]]:
        """Groups of near-duplicates: images linked by a similarity >= ``threshold`` among each
        other's ``neighbours`` nearest, joined transitively. Each group starts with its likely
        original: its largest image, and among equally large ones the most central (the highest
        mean similarity to the others: each copy is made from the original); then the rest by
        similarity to it (the scores). Biggest groups first.

        Memory stays bounded: neighbours come from the ANN graph or from exact search in blocks,
        never from an N×N matrix."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} is not allowed; expected a cosine similarity from -1 to 1")
        keys, matrix = self.store.vectors()
        if len(keys) < 2:
            return []
        parent = {int(key): int(key) for key in keys}

        def root(key: int) -> int:
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        for start, found_keys, found_scores in self._neighbours(keys, matrix, neighbours + 1):
            for offset, (row_k, row_s) in enumerate(zip(found_keys, found_scores)):
                me = int(keys[start + offset])
                for other, score in zip(row_k, row_s):
                    if int(other) != me and score >= threshold and int(other) in parent:
                        a, b = root(me), root(int(other))
                        if a != b:
                            parent[max(a, b)] = min(a, b)
        members: dict[int, list[int]] = {}
        for key in parent:
            members.setdefault(root(key), []).append(key)
        groups = [group for group in members.values() if len(group) > 1]
        items = self.store.lookup(key for group in groups for key in group)
        row_of = {int(key): row for row, key in enumerate(keys)}
        result = []
        for group in groups:
            first = _central(group, matrix[[row_of[key] for key in group]], items)
            result.append([Hit(items[key], float(matrix[row_of[key]] @ matrix[row_of[first]]))
                           for key in sorted(group, key=lambda key: (key != first, -float(matrix[row_of[key]] @
                                                                                          matrix[row_of[first]])))])
        return sorted(result, key=lambda group: (-len(group), group[0].item.path))

    def _neighbours(self, keys: np.ndarray, matrix: np.ndarray, k: int,
                    block: int = 1024) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        graph = self.graph()
        for start in range(0, len(keys), block):
            queries = matrix[start:start + block]
            if graph is not None:
                found_keys, found_scores = graph_search(graph, queries, k)
            else:
                found_keys, found_scores = exact_search(matrix, keys, queries, k)
            yield start, found_keys, found_scores

    # -- keeping the graph in step ------------------------------------------------------------
    def sync_graph(self, added: Sequence[int], removed: Sequence[int], previous_generation: int,
                   threads: int = 0) -> str:
        """Bring the ANN graph to the store's current generation after a write that added and
        removed keys; return what was done (for messages). Small indexes keep no graph."""
        path = self.path / ANN_FILE
        store = self.store
        if len(store) < self.ann_min_items:
            path.unlink(missing_ok=True)
            store.set_settings({"ann_generation": -1})
            return f"exact search ({len(store)} images < {self.ann_min_items}: no ANN graph)"
        graph = None
        if store.settings.get("ann_generation") == previous_generation and path.is_file():
            graph = load_graph(path, view=False)
        if graph is None:
            keys, matrix = store.vectors()
            build_graph(path, keys, matrix, threads)
            done = f"ANN graph built ({len(keys)} images)"
        else:
            gone = [key for key in removed if key in graph]
            if gone:
                graph.remove(np.array(gone, dtype=np.uint64))
            if added:
                keys, matrix = store.vectors(list(store.lookup(added).values()))
                graph.add(keys, matrix, threads=threads)
            save_graph(graph, path)
            done = f"ANN graph updated (+{len(added)} -{len(gone)})"
        store.set_settings({"ann_generation": store.generation})
        self._graph, self._graph_checked = None, False
        return done


#: Groups larger than this pick their first image by size alone (mean similarities need G×G).
CENTRAL_MAX = 2048


def _central(group: list[int], vectors: np.ndarray, items: dict[int, Item]) -> int:
    """The key of the group's likely original: the largest image (copies are rarely larger);
    among equally large ones (a mirrored or recoloured copy), the most central one."""
    size = [items[key].width * items[key].height for key in group]
    if len(group) > CENTRAL_MAX:
        return group[int(np.argmax(size))]
    mean = (vectors @ vectors.T).mean(axis=1)
    return group[max(range(len(group)), key=lambda i: (size[i], round(float(mean[i]), 4)))]


_DESCRIBERS: dict[tuple[Any, ...], Describer] = {}


def _describer(spec: DescriptorSpec, device: str, host: Any) -> Describer:
    """Describers are cached per process (loading the model is the slow part of a query)."""
    key = (spec, device, id(host))
    if key not in _DESCRIBERS:
        if len(_DESCRIBERS) >= 4:
            _DESCRIBERS.clear()
        _DESCRIBERS[key] = Describer(spec, device, host)
    return _DESCRIBERS[key]
