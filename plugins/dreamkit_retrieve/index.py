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

from .ann import (ANN_MIN_ITEMS, build_graph, estimate_recall, exact_search, file_checksum, graph_damage, graph_search,
                  load_graph, save_graph)
from .descriptors import Describer, DescriptorSpec
from .store import ANN_FILE, BadIndexError, IndexStore, Item

log = logging.getLogger("dreamkit")

#: Default cosine similarity at or above which two images are near-duplicates. On copies made by
#: resizing, JPEG at quality 40, 10% crops, flips, ±30% brightness and 5–8° rotations of the
#: sample images, copies score 0.67 or more and different images 0.47 or less (tests/test_retrieve.py).
DUPES_THRESHOLD = 0.6
#: Two members of a group (besides the first, which every member scores >= the threshold with)
#: must score at least this fraction of the threshold with each other: copies of one original
#: resemble each other somewhat less than they resemble it (a crop and a rotation: 0.45-0.6), and
#: strangers that both resemble an image far less. Measured on the labelled collection
#: (bench/retrieval.py --dupes): pairwise precision/recall 0.968/0.974 without this check
#: (groups centred on a representative), 0.991/0.962 with the full threshold (complete linkage),
#: 0.990/0.991 at 3/4.
MEMBER_LINK = 0.75
#: Low-information images (:attr:`Item.low_information`) are near-duplicates when their 8×8
#: thumbnails (0..1) differ by at most this on average (as they are, or one mirrored): resizing and
#: re-encoding move them by about 0.005, another flat colour or gradient by far more.
THUMBNAIL_TOLERANCE = 0.03
#: `index info` and `update` warn when the graph's estimated recall@10 is below this.
RECALL_FLOOR = 0.9
#: Stored items a graph is checked against when it is opened (cheap: a few look-ups).
GRAPH_CHECK_SAMPLE = 32


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
        self._graph_problem: str | None = None
        self._vectors: tuple[int, np.ndarray, np.ndarray] | None = None  # (generation, keys, matrix)

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
        keys, scores = self._nearest(queries, k)
        items = self.store.lookup(int(key) for key in np.unique(keys))
        return [[Hit(items[int(key)], float(score)) for key, score in zip(row_k, row_s)
                 if np.isfinite(score) and int(key) in items] for row_k, row_s in zip(keys, scores)]

    def _nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest keys and scores per query: through the graph when there is one in
        use, else exactly."""
        graph = self.graph()
        if graph is not None:
            return graph_search(graph, queries, k)
        keys, matrix = self.vectors()
        return exact_search(matrix, keys, queries, k)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, matrix)`` of every item, read once per generation of the index (exact search
        and dupes reuse them: reading rows and shards costs far more than the product)."""
        generation = self.store.generation
        if self._vectors is None or self._vectors[0] != generation:
            keys, matrix = self.store.vectors()
            self._vectors = (generation, keys, matrix)
        return self._vectors[1], self._vectors[2]

    def graph(self, *, quiet: bool = False) -> Any:
        """The ANN graph as a memory-mapped view, or None: the index is small (exact search) or
        the graph is missing, stale, unreadable or damaged (exact search with a warning, unless
        ``quiet``; ``update`` rebuilds it). :attr:`graph_problem` says which."""
        if not self._graph_checked:
            self._graph_checked = True
            self._graph, self._graph_problem = self._open_graph()
            if self._graph_problem and not quiet:
                log.warning("index %s: its ANN graph %s; searching exactly (`dreamkit index update` rebuilds it)",
                            self.path, self._graph_problem)
        return self._graph

    @property
    def graph_problem(self) -> str | None:
        """Why an index that should have a graph searches exactly (None: it does not, or all is well)."""
        self.graph(quiet=True)
        return self._graph_problem

    def _open_graph(self) -> tuple[Any, str | None]:
        path = self.path / ANN_FILE
        settings = self.store.settings
        if settings.get("ann_generation") != self.store.generation or not path.is_file():
            if len(self.store) >= self.ann_min_items:
                return None, "is missing or older than the index"
            return None, None
        problem = _file_problem(path, settings)
        if problem:
            return None, problem
        graph = load_graph(path, view=True)
        if graph is None:
            return None, "cannot be read"
        sample = self.store.sample(GRAPH_CHECK_SAMPLE)
        keys, matrix = self.store.vectors(sample)
        problem = graph_damage(graph, len(self.store), keys, matrix)
        if problem:
            return None, f"is damaged ({problem})"
        return graph, None

    def estimate_recall(self, k: int = 10, sample: int = 200) -> float | None:
        """The graph's recall@``k`` against exact search, on ``sample`` stored vectors as queries
        (None: no graph in use)."""
        graph = self.graph(quiet=True)
        if graph is None:
            return None
        keys, matrix = self.vectors()
        return estimate_recall(graph, keys, matrix, k, sample)

    @property
    def ann_min_items(self) -> int:
        return int(self.store.settings.get("ann_min_items", ANN_MIN_ITEMS))

    # -- near-duplicates ----------------------------------------------------------------------
    def dupes(self, threshold: float = DUPES_THRESHOLD, neighbours: int = 10) -> list[list[Hit]]:
        """Groups of near-duplicates, each centred on its likely original: every member scores at
        least ``threshold`` with the group's first image (the scores) and at least
        :data:`MEMBER_LINK` × ``threshold`` with every other member, so a group never chains
        strangers through a series of copies. The likely original is the largest image;
        among equally large ones, the one most linked to the others (the sum of its similarities
        at or above the threshold: each copy is made from the original), then the oldest file (a
        mirrored copy has its original's descriptor: only its date tells them apart), then the
        largest file.
        Representatives are taken in that order; each takes, most similar first, the images above
        the threshold not yet in a group that are close to every member taken so far. Biggest
        groups first.

        Low-information images (:attr:`Item.low_information`: flat colours, gradients, smooth
        noise, whose descriptors all look alike) group only with low-information images of nearly
        the same pixels (their thumbnails, :data:`THUMBNAIL_TOLERANCE`). ``neighbours`` is how many nearest images are read per
        image at first; a representative with more above the threshold reads further.

        Memory stays bounded: neighbours come from the ANN graph or from exact search in blocks,
        never from an N×N matrix."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold} is not allowed; expected a cosine similarity from -1 to 1")
        keys, matrix = self.vectors()
        if len(keys) < 2:
            return []
        items = self.store.lookup(keys.tolist())
        info = [items[int(key)] for key in keys]
        flat = np.array([item.low_information for item in info])
        row_of = {int(key): row for row, key in enumerate(keys)}
        links: dict[int, list[tuple[int, float]]] = {}
        saturated: set[int] = set()
        for start, found_keys, found_scores in self._neighbours(matrix, neighbours + 1):
            for offset, (row_k, row_s) in enumerate(zip(found_keys, found_scores)):
                me = start + offset
                if flat[me]:
                    continue
                above = [(row_of[int(key)], float(score)) for key, score in zip(row_k, row_s)
                         if score >= threshold and int(key) in row_of]
                if len(above) == len(row_k) and len(row_k) < len(keys):
                    saturated.add(me)
                above = [(row, score) for row, score in above if row != me and not flat[row]]
                if above:
                    links[me] = above
        strength = {row: sum(score for _, score in found) for row, found in links.items()}
        order = sorted(links, key=lambda row: (-info[row].width * info[row].height, -round(strength[row], 3),
                                               info[row].mtime_ns, -info[row].size, info[row].path))
        taken = np.zeros(len(keys), dtype=bool)
        groups: list[list[tuple[int, float]]] = []
        for row in order:
            if taken[row]:
                continue
            found = self._within(row, matrix, keys, row_of, threshold) if row in saturated else links[row]
            candidates = sorted({other: score for other, score in found
                                 if other != row and not taken[other] and not flat[other]}.items(),
                                key=lambda pair: -pair[1])
            members: list[tuple[int, float]] = []
            for other, score in candidates:  # and close to every member taken so far
                if all(float(matrix[other] @ matrix[m]) >= threshold * MEMBER_LINK for m, _ in members):
                    members.append((other, score))
            if members:
                groups.append([(row, 1.0), *members])
                taken[row] = True
                taken[[other for other, _ in members]] = True
        result = [[Hit(info[row], float(matrix[row] @ matrix[group[0][0]]) if index else 1.0)
                   for index, (row, _) in enumerate(group)] for group in groups]
        result += [[Hit(info[row], score) for row, score in group] for group in _flat_groups(np.flatnonzero(flat), info)]
        return sorted(result, key=lambda group: (-len(group), group[0].item.path))

    def _within(self, row: int, matrix: np.ndarray, keys: np.ndarray, row_of: dict[int, int],
                threshold: float) -> list[tuple[int, float]]:
        """Every image scoring at least ``threshold`` with image ``row``: nearest neighbours read
        in counts four times larger each time until one falls below the threshold."""
        k = 32
        while True:
            k = min(k, len(keys))
            found_keys, found_scores = self._nearest(matrix[row:row + 1], k)
            scores = found_scores[0]
            if k == len(keys) or not np.isfinite(scores[-1]) or scores[-1] < threshold:
                return [(row_of[int(key)], float(score)) for key, score in zip(found_keys[0], scores)
                        if score >= threshold and int(key) in row_of]
            k *= 4

    def _neighbours(self, matrix: np.ndarray, k: int,
                    block: int = 1024) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """The ``k`` nearest of every stored vector, ``block`` queries at a time."""
        for start in range(0, len(matrix), block):
            yield start, *self._nearest(matrix[start:start + block], k)

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
        if store.settings.get("ann_generation") == previous_generation and path.is_file() and \
                not _file_problem(path, store.settings):
            graph = load_graph(path, view=False)
            if graph is not None:  # items that were there before this write must be in it, whole
                new = set(added)
                kept = [item for item in store.sample(GRAPH_CHECK_SAMPLE) if item.key not in new]
                if graph_damage(graph, len(graph), *store.vectors(kept)):
                    graph = None  # damaged: rebuilt below
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
        store.set_settings({"ann_generation": store.generation, "ann_bytes": path.stat().st_size,
                            "ann_checksum": file_checksum(path)})
        self._graph, self._graph_checked, self._graph_problem = None, False, None
        return done + recall_words(self.estimate_recall())


def _flat_groups(rows: np.ndarray, info: list[Item]) -> list[list[tuple[int, float]]]:
    """Low-information images grouped by pixels: the largest first takes every other whose thumbnail
    (or its mirror) is within :data:`THUMBNAIL_TOLERANCE`. Scores are 1 minus that difference."""
    from .descriptors import thumbnail_array

    measured = [row for row in rows.tolist() if info[row].thumbnail]
    if len(measured) < 2:
        return []
    thumbnails = np.stack([thumbnail_array(info[row].thumbnail) for row in measured]).reshape(len(measured), -1)
    mirrored = np.stack([thumbnail_array(info[row].thumbnail)[..., ::-1] for row in measured]).reshape(len(measured), -1)
    order = sorted(range(len(measured)), key=lambda i: (-info[measured[i]].width * info[measured[i]].height,
                                                        info[measured[i]].mtime_ns, info[measured[i]].path))
    taken = np.zeros(len(measured), dtype=bool)
    groups = []
    for i in order:
        if taken[i]:
            continue
        distance = np.minimum(np.abs(thumbnails - thumbnails[i]).mean(axis=1), np.abs(mirrored - thumbnails[i]).mean(axis=1))
        close = [j for j in np.flatnonzero((distance <= THUMBNAIL_TOLERANCE) & ~taken).tolist() if j != i]
        if close:
            taken[[i, *close]] = True
            groups.append([(measured[i], 1.0)] + sorted(((measured[j], 1.0 - float(distance[j])) for j in close),
                                                        key=lambda pair: -pair[1]))
    return groups


#: What a low recall estimate means for the user, and what helps.
RECALL_WARNING = ("the graph misses some true neighbours: descriptors this uniform are hard for it; search "
                  "exactly with a larger --ann-min, or use a layer that separates these images better")


def _file_problem(path: Path, settings: dict[str, Any]) -> str | None:
    """Why the graph file is not the one written at the last commit (None: it is, or an older
    index recorded nothing to compare with)."""
    size = path.stat().st_size
    if settings.get("ann_bytes") not in (None, size):
        return f"is damaged (its file has {size:,} bytes, {settings['ann_bytes']:,} when written)"
    if settings.get("ann_checksum") not in (None, file_checksum(path)):
        return "is damaged (its checksum differs from the one recorded when it was written)"
    return None


def recall_words(recall: float | None) -> str:
    """``"; estimated recall@10 0.987"`` for messages, with a warning below :data:`RECALL_FLOOR`."""
    if recall is None:
        return ""
    low = f" (below {RECALL_FLOOR}: {RECALL_WARNING})" if recall < RECALL_FLOOR else ""
    return f"; estimated recall@10 {recall:.3f}{low}"


def _describer(spec: DescriptorSpec, device: str, host: Any) -> Describer:
    """The host's describer for ``spec`` (``host.models``: loading the model is the slow part of a
    query; the process-wide host for a direct call without one)."""
    if host is None:
        from dreamkit.plugins import get_host

        host = get_host()
    return host.models.get(("describer", spec, device), lambda: Describer(spec, device, host))
