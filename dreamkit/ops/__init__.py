"""Accelerated operations (``torch.ops.dreamkit.*``) and the state of their compiled backend.

:func:`backend` says whether the compiled extension is in use; :func:`build_info` gives its build
settings. Every op also has a pure-PyTorch reference used when the extension cannot load.
"""

from ._extension import backend, build_info, load_error

__all__ = ["backend", "build_info", "load_error"]
