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
import zlib
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
#: Links per node and candidates kept while inserting (HNSW's M and ef_construction).
CONNECTIVITY = 16
EXPANSION_ADD = 128


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

    return Index(ndim=dim, metric="cos", dtype=dtype, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                 expansion_search=EXPANSION_SEARCH)


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
    places (fewer than ``k`` items found) are key 0 with similarity -inf.

    usearch answers one query with ``Matches`` (1-d arrays, only the hits found) and several with
    ``BatchMatches`` (2-d arrays padded to ``k``, plus ``counts``): both become the 2-d form."""
    queries = np.atleast_2d(np.ascontiguousarray(queries, dtype=np.float32))
    k = min(k, len(graph))
    keys = np.zeros((len(queries), k), dtype=np.uint64)
    similarities = np.full((len(queries), k), -np.inf, dtype=np.float32)
    if not len(queries) or k < 1:
        return keys, similarities
    matches = graph.search(queries, k, threads=threads)
    if hasattr(matches, "counts"):
        found_keys, found_distances, counts = matches.keys, matches.distances, np.atleast_1d(matches.counts)
    else:
        found_keys, found_distances = matches.keys[None, :], matches.distances[None, :]
        counts = np.array([len(matches.keys)])
    for row, count in enumerate(counts):
        count = min(int(count), k)
        keys[row, :count] = found_keys[row, :count]
        similarities[row, :count] = 1.0 - found_distances[row, :count]
    return keys, similarities


def estimate_recall(graph: Any, keys: np.ndarray, matrix: np.ndarray, k: int = 10, sample: int = 200,
                    seed: int = 0) -> float:
    """recall@k of the graph against exact search, for ``sample`` stored vectors used as queries
    (the graph's own data: what a user's queries look like). Costs ``sample`` exact searches."""
    if len(keys) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(keys), size=min(sample, len(keys)), replace=False)
    queries = matrix[rows]
    k = min(k, len(keys))
    found, _ = graph_search(graph, queries, k)
    truth, _ = exact_search(matrix, keys, queries, k)
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def file_checksum(path: Path, chunk: int = 16 << 20) -> str:
    """CRC-32 of the file (about 6 GB/s here: 0.13 s for a 1M-image graph). A graph is checked
    whole before it is used: damaged links make usearch read out of bounds (a segmentation fault
    seen on a graph with 300 KB overwritten), so no search may touch an unchecked file."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc:08x}"


def graph_damage(graph: Any, count: int, keys: np.ndarray, matrix: np.ndarray) -> str | None:
    """Why the graph does not hold what the index holds (``None``: it does): its size against
    ``count``, and for a sample (``keys``, ``matrix``: a few stored items and their shard rows)
    the stored vector (f16 storage rounds each value by at most 2^-11 relative, so a cosine
    below 0.999 is damage). This catches a graph written from other data; damage to the file
    after it was written is caught by its checksum (:func:`file_checksum`)."""
    if len(graph) != count:
        return f"it holds {len(graph)} vectors, the index {count}"
    for key, vector in zip(keys.tolist(), matrix):
        stored = graph.get(key, dtype="f32")
        if stored is None:
            return f"key {key} is missing"
        stored = np.asarray(stored, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(stored))
        if not np.isfinite(norm) or norm == 0 or float(stored @ vector) / norm < 0.999:
            return f"the vector stored for key {key} differs from the index's"
    return None
