"""Small facts worth remembering between runs: JSON values in ``$DREAMKIT_HOME/memo/<table>.json``.

For measurements that depend only on an architecture and this installation (a network's memory
per pixel, its receptive field, whether bf16 pays on this CPU), so a ``dreamkit run`` does not pay
for them again at every start. Keys include the torch version; a corrupt or unwritable file only
costs a re-measurement.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

log = logging.getLogger("dreamkit.memo")

T = TypeVar("T")


def table_path(table: str) -> Path:
    from .weights import dreamkit_home

    return dreamkit_home() / "memo" / f"{table}.json"


def remembered(table: str, key: str, compute: Callable[[], T]) -> T:
    """The value stored under ``key`` in ``table``, or ``compute()`` (JSON-serialisable), stored."""
    key = f"torch={torch.__version__}|{key}"
    path = table_path(table)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    value = compute()
    known[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known, indent=1, sort_keys=True))
        os.replace(temporary, path)  # atomic: a concurrent reader sees the old or the new table
    except OSError as exc:
        log.warning("could not remember %s in %s: %s", table, path, exc)
    return value


def forget(table: str) -> None:
    """Drop a table (tests, or after changing what it measures)."""
    table_path(table).unlink(missing_ok=True)


def lookup(table: str) -> dict[str, Any]:
    """Every stored entry of ``table`` (keys with their torch version)."""
    try:
        return json.loads(table_path(table).read_text())
    except (OSError, ValueError):
        return {}
