"""One run at a time per output folder: an advisory lock, ``OUTDIR/.dreamkit.lock``.

Two runs writing one folder would both plan the same work and trip over each other's outputs. The
lock is ``flock`` on a hidden file holding the holder's pid, host and start time (shown to whoever
finds the folder busy). The kernel releases it when its holder dies, however it dies, so a killed
run never leaves a stale lock; the file is removed on a clean exit (and a run that finds a file
nobody holds simply takes it). Works on local file systems and on NFS (Linux maps ``flock`` to
NFS byte-range locks).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError

LOCK_NAME = ".dreamkit.lock"


class FolderLock:
    """Hold ``folder``'s lock while a run writes there (a context manager). ``wait``: wait for a
    busy folder instead of refusing it. Creates the folder if needed (and removes it again if the
    run leaves it empty)."""

    def __init__(self, folder: str | Path, *, wait: bool = False, notify: IO[str] | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.wait = wait
        self.notify = notify or sys.stderr
        self._file: IO[str] | None = None
        self._created: list[Path] = []

    def __enter__(self) -> "FolderLock":
        self._make_folder()
        while True:
            handle = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(handle)
                if not self.wait:
                    handle.close()
                    self._remove_created()
                    raise OutputError(f"output folder {self.folder} is busy: another dreamkit run ({holder}) is writing "
                                      "it; wait for it to finish, pass --wait, or choose another output folder") from None
                print(f"dreamkit: output folder {self.folder} is busy ({holder}); waiting for it", file=self.notify,
                      flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _same_file(handle, self.path):  # not removed by its last holder while we waited
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees it went and retries
        self._file.close()
        self._file = None
        self._remove_created()

    def _make_folder(self) -> None:
        missing = []
        folder = self.folder
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"output folder {self.folder} cannot be written: {exc.strerror or exc}") from None
        self._created = missing  # innermost first

    def _open(self) -> IO[str]:
        try:
            return open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            self._remove_created()
            raise OutputError(f"output folder {self.folder} cannot be written: {exc.strerror or exc}") from None

    def _remove_created(self) -> None:
        """Folders this lock made that nothing else was written into."""
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []


def _describe(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder["started"])))
        return f"pid {holder['pid']} on {holder['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "starting"


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
