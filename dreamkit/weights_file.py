"""dreamkit weights files: trained networks saved safely, with what made them inside.

A weights file is a `safetensors <https://github.com/huggingface/safetensors>`_ file (tensors and
a JSON header, no pickle: loading it cannot run code) whose header metadata says what it is:

* ``dreamkit.kind``: which kind of model (``fast_style`` for a trained style network); a plugin
  loads only its own kind and names the kind it found otherwise;
* ``dreamkit.meta``: JSON, whatever the kind records (architecture, losses, training settings);
  ``dreamkit.version``: the dreamkit that wrote it;
* ``dreamkit.digest``: the sha256 of the tensors (names, dtypes, shapes, bytes) and the metadata
  above. A file whose contents do not match it (changed after saving, damaged) is refused.

safetensors is Hugging Face's format for exactly this (a library kept by many users, not ours):
zero-copy, bounds-checked, and readable by other tools. Files sit anywhere; the ones in the models
folder (``$DREAMKIT_HOME/models``, :func:`models_dir`) are listed by ``dreamkit weights list`` and
can be named by their file name alone in effect parameters.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import DreamkitError
from .weights import dreamkit_home

SUFFIXES = (".dkstyle",)  # the file names the models folder lists (one per kind so far)
_MAX_HEADER = 100 * 2**20


class WeightsFileError(DreamkitError):
    """A file that is not a dreamkit weights file of the kind wanted, or whose contents changed."""


@dataclass
class WeightsFile:
    """What a weights file holds: its kind, tensors and metadata, and the sha256 of its bytes."""

    kind: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    version: str
    sha256: str
    path: Path | None = None


def models_dir() -> Path:
    """The models folder: ``$DREAMKIT_HOME/models`` (``~/.cache/dreamkit/models``)."""
    return dreamkit_home() / "models"


def _digest(kind: str, meta_json: str, version: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for text in (kind, meta_json, version):
        digest.update(text.encode() + b"\0")
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode() + b"\0")
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_weights_file(path: str | Path, kind: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write a weights file atomically (no partial file is ever visible) and return its sha256."""
    from safetensors.torch import save

    from ._version import __version__
    from .io import atomic_write_bytes
    from .weights import sha256_of

    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    meta_json = json.dumps(meta, sort_keys=True)
    header = {"dreamkit.kind": kind, "dreamkit.meta": meta_json, "dreamkit.version": __version__,
              "dreamkit.digest": _digest(kind, meta_json, __version__, tensors)}
    data = save(tensors, metadata=header)
    atomic_write_bytes(path, data)
    return sha256_of(data)


def read_header(data: bytes, name: str) -> dict[str, Any]:
    """The JSON header of safetensors ``data`` (its metadata under ``__metadata__``)."""
    if len(data) < 8:
        raise WeightsFileError(f"{name}: not a dreamkit weights file (too short to be a safetensors file)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_HEADER, len(data) - 8):
        raise WeightsFileError(f"{name}: not a dreamkit weights file (no safetensors header)")
    try:
        header = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, ValueError):
        raise WeightsFileError(f"{name}: not a dreamkit weights file (no safetensors header)") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{name}: not a dreamkit weights file (no safetensors header)")
    return header


def load_weights_file(path: str | Path, kind: str | None = None) -> WeightsFile:
    """Read and verify a weights file. ``kind``: the kind the caller wants (another kind is an
    error naming both). Raises :class:`WeightsFileError` for anything else, or a file whose
    contents do not match the digest written with it."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from .weights import sha256_of

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    meta = read_header(data, str(path)).get("__metadata__") or {}
    found = meta.get("dreamkit.kind")
    if found is None:
        raise WeightsFileError(f"{path}: not a dreamkit weights file (a safetensors file without dreamkit's metadata)")
    if kind is not None and found != kind:
        raise WeightsFileError(f"{path}: a dreamkit '{found}' weights file, not a '{kind}' one")
    try:
        tensors = load(data)
        fields = json.loads(meta["dreamkit.meta"])
        version, written = meta["dreamkit.version"], meta["dreamkit.digest"]
    except (SafetensorError, KeyError, ValueError) as exc:
        raise WeightsFileError(f"{path}: damaged dreamkit weights file ({exc})") from None
    if _digest(found, meta["dreamkit.meta"], version, tensors) != written:
        raise WeightsFileError(f"{path}: refused: its contents do not match the digest written when it was saved "
                               "(the file was changed or damaged)")
    return WeightsFile(found, tensors, fields, version, sha256_of(data), path)


def list_models(folder: Path | None = None) -> list[dict[str, Any]]:
    """The weights files in the models folder: name, kind, sha256, size, summary; a file that
    does not load is listed with its problem (``error``), never skipped silently."""
    folder = models_dir() if folder is None else folder
    rows = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        row: dict[str, Any] = {"name": path.name, "path": str(path), "size": path.stat().st_size}
        try:
            loaded = load_weights_file(path)
        except WeightsFileError as exc:
            row["error"] = str(exc)
        else:
            row.update(kind=loaded.kind, sha256=loaded.sha256, version=loaded.version,
                       summary=loaded.meta.get("summary", ""))
        rows.append(row)
    return rows


__all__ = ["SUFFIXES", "WeightsFile", "WeightsFileError", "list_models", "load_weights_file", "models_dir",
           "read_header", "save_weights_file"]
