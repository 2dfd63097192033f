"""Nearest neighbours by cosine similarity: exact (a matrix product) or approximate (usearch).

Descriptors are L2-normalised, so cosine similarity is their dot product. usearch's HNSW graph
is one file, opened as a memory-mapped view (the vectors and graph are paged in as a search
touches them, not loaded whole), and supports adding and removing keys. Below
``ann_min_items`` images an index keeps no graph: an exact search over every vector is as fast
(see bench/retrieval.py) and has no recall to lose.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("dreamkit")

#: An index with fewer images searches exactly (measured crossover, bench/retrieval.py).
ANN_MIN_ITEMS = 20_000
#: How the graph stores vectors: f16 is half of f32's size and keeps recall; i8 lost 10% of recall@10
#: at 100k (bench/retrieval.py).
ANN_DTYPE = "f16"
#: Candidates a search keeps (HNSW's ef): usearch's default 64 gave recall@10 0.94 at 1M
#: descriptors, 128 gives 0.95+ (bench/retrieval.py prints both).
EXPANSION_SEARCH = 128


def exact_search(matrix: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int,
                 block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best keys and similarities for each query, best first: a matrix product,
    ``block`` rows of the collection at a time (memory stays bounded for any collection)."""
    k = min(k, len(keys))
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    best_s = torch.full((len(q), 0), -np.inf)
    best_i = torch.empty((len(q), 0), dtype=torch.long)
    for start in range(0, len(keys), block):
        part = torch.from_numpy(np.ascontiguousarray(matrix[start:start + block], dtype=np.float32))
        scores = q @ part.T
        s, i = scores.topk(min(k, scores.shape[1]), dim=1)
        best_s, order = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + start], 1).gather(1, order)
    return keys[best_i.numpy()], best_s.numpy()


def new_graph(dim: int, dtype: str = ANN_DTYPE) -> Any:
    from usearch.index import Index

    return Index(ndim=dim, metric="cos", dtype=dtype, expansion_search=EXPANSION_SEARCH)


def build_graph(path: Path, keys: np.ndarray, matrix: np.ndarray, threads: int = 0) -> None:
    """Write a new graph of ``keys``/``matrix`` to ``path`` (a temporary, then renamed)."""
    graph = new_graph(matrix.shape[1])
    if len(keys):
        graph.add(keys, matrix, threads=threads)
    save_graph(graph, path)


def save_graph(graph: Any, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    graph.save(str(temporary))
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_graph(path: Path, *, view: bool) -> Any | None:
    """The graph at ``path`` (``view``: memory-mapped, read-only), or None if it cannot be read."""
    from usearch.index import Index

    try:
        graph = Index.restore(str(path), view=view)
    except Exception as exc:  # noqa: BLE001 (usearch raises plain RuntimeErrors; a rebuildable file)
        log.warning("%s cannot be read (%s); searching exactly; `dreamkit index update` rebuilds it", path, exc)
        return None
    if graph is None:  # usearch returns None for a file that is not an index
        log.warning("%s is not a usearch index; searching exactly; `dreamkit index update` rebuilds it", path)
        return None
    graph.expansion_search = EXPANSION_SEARCH  # not stored in the file
    return graph


def graph_search(graph: Any, queries: np.ndarray, k: int, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best keys and cosine similarities per query from the graph, best first; missing
    places (fewer than ``k`` items) are key 0 with similarity -inf."""
    matches = graph.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(graph)), threads=threads)
    keys = np.atleast_2d(matches.keys).astype(np.uint64)
    distances = np.atleast_2d(matches.distances).astype(np.float32)
    similarities = 1.0 - distances
    counts = np.atleast_1d(matches.counts)
    for row, count in enumerate(counts):
        similarities[row, count:] = -np.inf
    return keys, similarities
