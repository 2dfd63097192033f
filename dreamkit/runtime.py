"""Process-wide runtime tuning, in one place: thread count and keeping freed memory (and the
CPU's name, which recipes and benchmarks record beside the thread count).

glibc returns large freed blocks to the operating system, so every step of an iterative effect
page-faults its activations back in; on this project's reference CPU that alone made MobileNetV2
forward+backward at 1024 px 1.9x slower. :func:`configure` tells glibc (through ``mallopt``) to
keep freed memory for reuse instead. The price: the process's resident memory stays at its peak
until it exits, which suits a command-line run and may not suit a long-lived server.

Only on Linux with glibc; ``DREAMKIT_KEEP_FREED_MEMORY=0`` opts out. The CLI calls
:func:`configure` at start-up; Python users call it themselves if they want it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

# mallopt parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 34), (_M_TOP_PAD, 1 << 30))

_malloc_tuned = False


@dataclass
class RuntimeSettings:
    """What :func:`configure` did."""

    threads: int
    keep_freed_memory: bool
    reason: str


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows. Read once per process:
    every recipe written records it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_glibc_linux() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> tuple[bool, str]:
    """Ask glibc to keep freed memory (no mmap for large blocks, no trimming). Idempotent."""
    if os.environ.get("DREAMKIT_KEEP_FREED_MEMORY", "").strip() == "0":
        return False, "disabled by DREAMKIT_KEEP_FREED_MEMORY=0"
    if not is_glibc_linux():
        return False, "not Linux with glibc"
    global _malloc_tuned
    if _malloc_tuned:
        return True, "already applied"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _malloc_tuned = all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in _SETTINGS)
    return _malloc_tuned, "mallopt applied" if _malloc_tuned else "mallopt refused a setting"


def configure(threads: int | None = None, *, keep_memory: bool = True) -> RuntimeSettings:
    """Apply the tuning: ``threads`` (default: torch's choice, or ``DREAMKIT_THREADS``) and,
    unless ``keep_memory=False``, :func:`keep_freed_memory`."""
    import torch

    env_threads = os.environ.get("DREAMKIT_THREADS", "").strip()
    if threads is None and env_threads:
        if not env_threads.isdigit() or int(env_threads) < 1:
            from .errors import DreamkitError

            raise DreamkitError(f"DREAMKIT_THREADS={env_threads!r} is not allowed; expected a positive integer "
                                "(or leave it unset: torch's choice)")
        threads = int(env_threads)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads = {threads} is not allowed; expected a positive integer")
        torch.set_num_threads(threads)
    kept, reason = keep_freed_memory() if keep_memory else (False, "keep_memory=False")
    return RuntimeSettings(torch.get_num_threads(), kept, reason)
