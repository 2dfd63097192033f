"""Accelerated operations (``torch.ops.dreamkit.*``) and the state of their compiled backend.

* :func:`jitter`: wrap-around roll of the last two dims (one pass; differentiable).

:func:`backend` says whether the compiled extension is in use; :func:`build_info` gives its build
settings. Every op also has a pure-PyTorch reference (``dreamkit.ops._reference``), used when the
extension cannot load (with one warning) and as the oracle in the tests.
"""

from ._extension import backend, build_info, load_error
from .jitter import jitter

__all__ = ["backend", "build_info", "jitter", "load_error"]
