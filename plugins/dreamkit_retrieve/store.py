"""The index on disk: a folder that holds the source of truth and a rebuildable search file.

::

    INDEX/
      items.sqlite      the metadata table (one row per image: key, path, video frame, size,
                        mtime, sha256, width, height, shard, row) and the index's settings
                        (descriptor, sources); SQLite commits are atomic
      shards/*.npy      the descriptors, float32, one file per write, never modified
      ann.usearch       the approximate-nearest-neighbour graph (usearch), built from the shards

A write puts a new shard file in place first, then commits the rows that point to it: a crash
before the commit leaves only an unreferenced shard, swept at the next write; after it, the new
images are in. The ANN file is written after the commit, to a temporary then renamed, and
records which commit it matches; one that is missing, stale or corrupt is ignored (search is
then exact) and rebuilt by the next ``update``. Nothing is ever pickled.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dreamkit.errors import DreamkitError

FORMAT = "dreamkit-index"
VERSION = 1
DATABASE = "items.sqlite"
SHARDS = "shards"
ANN_FILE = "ann.usearch"

_SCHEMA = """
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    key INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    video_frame INTEGER NOT NULL DEFAULT -1,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    shard TEXT NOT NULL,
    row INTEGER NOT NULL,
    blankness REAL,
    thumbnail TEXT,
    UNIQUE (path, video_frame)
);
"""
#: Columns added after version 1 was first written (added to older tables when opened for writing;
#: read as NULL, "not measured", from a table that lacks them).
_ADDED_COLUMNS = (("blankness", "REAL"), ("thumbnail", "TEXT"))


#: From this blankness (see :attr:`Item.blankness`) an image counts as low-information. Measured
#: with the default content descriptor (bench/retrieval.py --dupes): the 26 sample photos and
#: their copies score 0.02-0.58 (the highest: a colour chart and a motion-blurred photo); 298 of
#: 300 solid colours, gradients and smooth noise fields 0.6-0.98 (two gradients 0.59).
LOW_INFORMATION = 0.6


class BadIndexError(DreamkitError):
    """A missing, corrupt or incompatible index."""


@dataclass(frozen=True)
class Item:
    """One indexed image."""

    key: int
    path: str
    video_frame: int | None
    size: int
    mtime_ns: int
    sha256: str
    width: int
    height: int
    shard: str
    row: int
    #: How much its descriptor looks like those of content-free images (flat colours, gradients,
    #: smooth noise): the highest cosine similarity to them; None: not measured (older indexes).
    blankness: float | None = None
    #: Low-information images only: their 8×8 RGB thumbnail (hex), what dupes compares for them.
    thumbnail: str | None = None

    @property
    def low_information(self) -> bool:
        """Its descriptor says little: any two flat, gradient or smooth-noise images score high
        with each other by descriptor, so near-duplicate grouping compares pixels instead."""
        return self.blankness is not None and self.blankness >= LOW_INFORMATION

    def label(self) -> str:
        return self.path if self.video_frame is None else f"{self.path}#frame={self.video_frame}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": self.path, "video_frame": self.video_frame, "size": self.size,
                "sha256": self.sha256, "width": self.width, "height": self.height}


class IndexStore:
    """An index folder, opened for reading (default) or writing."""

    def __init__(self, path: Path, connection: sqlite3.Connection, settings: dict[str, Any]) -> None:
        self.path = path
        self._db = connection
        self.settings = settings
        present = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
        self._columns = ", ".join([*_BASE_COLUMNS, *(name if name in present else f"NULL AS {name}"
                                                       for name, _ in _ADDED_COLUMNS)])

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, settings: dict[str, Any]) -> "IndexStore":
        """A new, empty index at ``path`` (a folder that must not exist, or be empty)."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BadIndexError(f"{path} exists and is not an empty folder; choose another index path")
        (path / SHARDS).mkdir(parents=True, exist_ok=True)
        temporary = path / f".{DATABASE}.{uuid.uuid4().hex}.tmp"
        with closing(sqlite3.connect(temporary)) as db:
            db.executescript(_SCHEMA)
            stored = {"format": FORMAT, "version": VERSION, "generation": 0, "ann_generation": -1, **settings}
            db.executemany("INSERT INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in stored.items()])
            db.commit()
        os.replace(temporary, path / DATABASE)  # the index exists only once it is whole
        return cls.open(path, writable=True)

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> "IndexStore":
        """Open an existing index; a missing or damaged one is a clear error."""
        path = Path(path)
        database = path / DATABASE
        if not database.is_file():
            what = "does not exist" if not path.exists() else f"is not a dreamkit index (no {DATABASE})"
            raise BadIndexError(f"index {path} {what}; make one with `dreamkit index build FOLDER -o {path}`")
        uri = f"{database.resolve().as_uri()}?mode={'rw' if writable else 'ro'}"
        try:
            db = sqlite3.connect(uri, uri=True)
            rows = dict(db.execute("SELECT name, value FROM settings").fetchall())
            settings = {name: json.loads(value) for name, value in rows.items()}
            db.execute("SELECT key, path, video_frame, size, mtime_ns, sha256, width, height, shard, row "
                       "FROM items LIMIT 1").fetchall()
        except (sqlite3.Error, json.JSONDecodeError) as exc:
            raise BadIndexError(f"index {path} is damaged: {database.name} cannot be read ({exc}); "
                              "rebuild it with `dreamkit index build`") from None
        if settings.get("format") != FORMAT:
            raise BadIndexError(f"index {path} is not a dreamkit index ({database.name} has no dreamkit settings)")
        if settings.get("version") != VERSION:
            raise BadIndexError(f"index {path} has format version {settings.get('version')}; this dreamkit reads "
                              f"version {VERSION}: rebuild it with `dreamkit index build`")
        if writable:
            _add_missing_columns(db)
        store = cls(path, db, settings)
        if writable:
            store._sweep()
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Increases with every committed write (the ANN file records the one it matches)."""
        return int(self.settings["generation"])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def items(self) -> list[Item]:
        """Every item, by key."""
        return [_item(row) for row in self._db.execute(f"SELECT {self._columns} FROM items ORDER BY key")]

    def sample(self, count: int) -> list[Item]:
        """Up to ``count`` distinct items spread evenly over the keys, the same ones each time (for
        cheap checks): one indexed look-up each, never a scan of the table."""
        low, high = self._db.execute("SELECT MIN(key), MAX(key) FROM items").fetchone()
        if low is None:
            return []
        found: dict[int, Item] = {}
        for target in np.linspace(low, high, num=count).round().astype(np.int64).tolist():
            row = self._db.execute(f"SELECT {self._columns} FROM items WHERE key >= ? ORDER BY key LIMIT 1",
                                   (target,)).fetchone()
            if row is not None:
                found[row[0]] = _item(row)
        return list(found.values())

    def lookup(self, keys: Iterable[int]) -> dict[int, Item]:
        """Items by key (keys that are not there are left out)."""
        wanted = [int(k) for k in keys]
        found: dict[int, Item] = {}
        for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {self._columns} FROM items WHERE key IN ({marks})", chunk):
                found[row[0]] = _item(row)
        return found

    def vectors(self, items: Sequence[Item] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, matrix)``: the descriptors of ``items`` (default: all), rows in key order."""
        if items is None:  # only the columns that place each vector: a fraction of reading whole items
            places = self._db.execute("SELECT key, shard, row FROM items ORDER BY key").fetchall()
        else:
            places = [(item.key, item.shard, item.row) for item in items]
        dim = int(self.settings["descriptor"]["dim"])
        matrix = np.empty((len(places), dim), dtype=np.float32)
        by_shard: dict[str, tuple[list[int], list[int]]] = {}
        for index, (_, shard, row) in enumerate(places):
            positions, rows = by_shard.setdefault(shard, ([], []))
            positions.append(index)
            rows.append(row)
        for shard, (positions, rows) in by_shard.items():
            matrix[positions] = self._load_shard(shard)[rows]
        return np.array([key for key, _, _ in places], dtype=np.uint64), matrix

    def _load_shard(self, shard: str) -> np.ndarray:
        path = self.path / SHARDS / shard
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BadIndexError(f"index {self.path} is damaged: shard {shard} cannot be read ({exc}); rebuild it "
                              "with `dreamkit index build`") from None
        if data.ndim != 2 or data.dtype != np.float32 or data.shape[1] != int(self.settings["descriptor"]["dim"]):
            raise BadIndexError(f"index {self.path} is damaged: shard {shard} holds {data.dtype} {data.shape}, not "
                              f"float32 rows of {self.settings['descriptor']['dim']}")
        return data

    # -- writing ------------------------------------------------------------------------------
    def write(self, rows: Sequence[dict[str, Any]], vectors: np.ndarray, remove: Iterable[int] = ()) -> list[int]:
        """Add ``rows`` (path, video_frame, size, mtime_ns, sha256, width, height) with their
        ``vectors`` and remove the items with keys ``remove``, in one commit; return the new keys.
        A row whose (path, frame) is indexed already replaces it."""
        remove = [int(k) for k in remove]
        if len(rows) != len(vectors):
            raise ValueError(f"{len(rows)} rows but {len(vectors)} vectors")
        shard = ""
        if len(rows):
            shard = f"{self.generation + 1:08d}-{uuid.uuid4().hex[:8]}.npy"
            _write_npy(self.path / SHARDS / shard, np.ascontiguousarray(vectors, dtype=np.float32))
        generation = self.generation + 1
        with self._db:  # one transaction: all of it or none of it
            replaced = [key for row in rows for (key,) in self._db.execute(
                "SELECT key FROM items WHERE path = ? AND video_frame = ?", (row["path"], _frame(row["video_frame"])))]
            self._db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in [*remove, *replaced]])
            first = int(self.settings.get("next_key", 1))
            keys = list(range(first, first + len(rows)))
            self._db.executemany(
                "INSERT INTO items (key, path, video_frame, size, mtime_ns, sha256, width, height, shard, row, blankness, "
                "thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(key, row["path"], _frame(row["video_frame"]), row["size"], row["mtime_ns"], row["sha256"],
                  row["width"], row["height"], shard, index, row.get("blankness"), row.get("thumbnail"))
                 for index, (key, row) in enumerate(zip(keys, rows))])
            self._set({"generation": generation, "next_key": first + len(rows)})
        self.settings.update(generation=generation, next_key=first + len(rows))
        return keys

    def set_settings(self, values: dict[str, Any]) -> None:
        """Store settings (sources, ANN state) in one commit."""
        with self._db:
            self._set(values)
        self.settings.update(values)

    def _set(self, values: dict[str, Any]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in values.items()])

    def _sweep(self) -> None:
        """Delete shard files no row points to (a crash before a commit, or every row removed)
        and temporaries left by a crash."""
        used = {shard for (shard,) in self._db.execute("SELECT DISTINCT shard FROM items")}
        for path in (self.path / SHARDS).glob("*"):
            if path.name not in used:
                path.unlink(missing_ok=True)
        for path in self.path.glob(".*.tmp"):
            path.unlink(missing_ok=True)


_BASE_COLUMNS = ("key", "path", "video_frame", "size", "mtime_ns", "sha256", "width", "height", "shard", "row")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(items)")}
    with db:
        for name, kind in _ADDED_COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE items ADD COLUMN {name} {kind}")


def _item(row: Sequence[Any]) -> Item:
    key, path, frame, *rest = row
    return Item(key, path, None if frame < 0 else frame, *rest)


def _frame(video_frame: int | None) -> int:
    """SQLite's UNIQUE treats NULLs as distinct: a still image is frame -1 in the table."""
    return -1 if video_frame is None else int(video_frame)


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Write an .npy file whole or not at all (temporary, fsync, rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
