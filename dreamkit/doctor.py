"""What ``dreamkit doctor`` reports: versions, CUDA, compiler, extension build and op backend."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from typing import Any


def _first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in (done.stdout or done.stderr).splitlines() if line.strip()]
    return lines[-1].strip() if command[0] == "nvcc" and lines else (lines[0].strip() if lines else None)


def diagnose() -> dict[str, Any]:
    """Everything doctor prints, as a JSON-able dict."""
    import torch
    import torchvision

    from ._version import __version__
    from .ops import backend, build_info, load_error, op_kernels
    from .weights import cache_dir

    cuda_devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "dreamkit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": cuda_devices,
        "threads": torch.get_num_threads(),
        "compiler": _first_line(["c++", "--version"]),
        "nvcc": _first_line(["nvcc", "--version"]),
        "extension": build_info(),
        "extension_error": load_error(),
        "op_backend": backend(),
        "op_kernels": {op: devices or ["reference"] for op, devices in op_kernels().items()},
        "weights_cache": str(cache_dir()),
    }


def format_report(report: dict[str, Any]) -> str:
    """Aligned ``key: value`` lines; the extension's build info indented below it."""
    lines = []
    for key, value in report.items():
        if key in ("extension", "op_kernels") and isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k:<20} {', '.join(v) if isinstance(v, list) else v}" for k, v in value.items()]
        else:
            lines.append(f"{key + ':':<22}{value if value not in (None, []) else '-'}")
    return "\n".join(lines)
