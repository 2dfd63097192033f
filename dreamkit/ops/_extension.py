"""Loading the compiled extension ``dreamkit._C``, never silently failing.

If the extension is missing or fails to load, ops fall back to their pure-PyTorch references and
one warning says so (with the reason); ``dreamkit doctor`` shows which backend is active.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from types import ModuleType
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _try_load() -> tuple[ModuleType | None, str | None]:
    import torch  # the extension links against torch's libraries: load them first

    try:
        module = importlib.import_module("dreamkit._C")
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    mismatch = torch_mismatch(module.build_info().get("torch_version"), torch.__version__)
    return (None, mismatch) if mismatch else (module, None)


def torch_mismatch(built_with: str | None, running: str) -> str | None:
    """Why an extension built against torch ``built_with`` must not run under ``running``, or None.

    torch's C++ ABI changes between releases: a mismatched extension can crash or compute garbage
    instead of failing to import, so it is refused (the ops then use their references)."""
    if built_with and built_with != running.split("+")[0]:
        return (f"dreamkit._C was built against torch {built_with} but torch {running} is running; "
                f"install torch=={built_with} or rebuild the extension")
    return None


def extension(warn: bool = True) -> ModuleType | None:
    """The loaded ``dreamkit._C`` module, or ``None`` (with one warning) when it cannot load."""
    with _lock:
        if "module" not in _state:
            _state["module"], _state["error"] = _try_load()
        if _state["module"] is None and warn and not _state.get("warned"):
            _state["warned"] = True
            warnings.warn(
                "the compiled extension dreamkit._C could not be loaded "
                f"({_state['error']}); ops use the slower pure-PyTorch reference. "
                "Rebuild with `pip install -e . --no-build-isolation` (see `dreamkit doctor`).",
                RuntimeWarning,
                stacklevel=3,
            )
        return _state["module"]


def load_error() -> str | None:
    """Why the extension did not load, or ``None`` if it did."""
    extension(warn=False)
    return _state.get("error")


def backend() -> str:
    """``"compiled"`` when ``dreamkit._C`` is loaded, else ``"reference"`` (pure PyTorch)."""
    return "compiled" if extension(warn=False) is not None else "reference"


def build_info() -> dict[str, Any] | None:
    """The extension's build settings (torch version, compiler, CUDA), or ``None`` if not loaded."""
    module = extension(warn=False)
    if module is None:
        return None
    info = dict(module.build_info())
    info["file"] = getattr(module, "__file__", None)
    if info.get("compiled_with_cuda"):
        info["cuda_runtime_version"] = module.cuda_runtime_version()
        info["cuda_driver_version"] = module.cuda_driver_version()
    return info


def kernel_devices(op: str) -> dict[str, bool]:
    """Which device types have a compiled kernel for ``op`` (e.g. ``"dreamkit::jitter"``).

    Looked up once per op at import: a plain dict keeps the per-call check cheap and
    ``torch.compile`` happy. All ``False`` without the extension.
    """
    loaded = extension(warn=False) is not None
    import torch

    return {
        device: loaded and torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
    }


def registered_ops() -> list[str]:
    """Every op in the ``dreamkit`` namespace, read from torch's dispatcher (the schemas in
    csrc/registration.cpp, and any registered from Python): no hand-kept list to forget."""
    import torch

    extension(warn=False)
    return sorted({name.split("::", 1)[1].split(".", 1)[0] for name in torch._C._dispatch_get_all_op_names()
                   if name.startswith("dreamkit::")})


def op_kernels() -> dict[str, list[str]]:
    """For each op of ``torch.ops.dreamkit``, the devices with a compiled kernel (empty: the
    pure-PyTorch reference runs)."""
    return {op: [d for d, has in kernel_devices(f"dreamkit::{op}").items() if has] for op in registered_ops()}
