"""dreamkit: plugin-based image effects on PyTorch.

The public API:

* :class:`Pipeline`, :class:`Effect`, :class:`Param` and the run context :class:`RunContext`
* :data:`hookimpl` to implement hooks in a plugin, :func:`get_host` / :class:`PluginHost`
* :func:`load_image`, :func:`save_image`, :func:`read_recipe`
* :mod:`dreamkit.ops` (accelerated ops), :mod:`dreamkit.weights` (verified model weights)
"""

from ._version import __version__
from .context import RunContext
from .effect import Effect, Param
from .errors import (ConfigError, DreamkitError, ImageLoadError, OutputError, ParameterError, PluginError,
                     UnknownEffectError, WeightsError)
from .hookspecs import hookimpl
from .io import load_image, read_recipe, save_image
from .pipeline import Frame, Pipeline, RunResult
from .plugins import PluginHost, get_host

__all__ = [
    "__version__", "ConfigError", "DreamkitError", "Effect", "Frame", "ImageLoadError", "OutputError",
    "Param", "ParameterError", "Pipeline", "PluginError", "PluginHost", "RunContext", "RunResult",
    "UnknownEffectError", "WeightsError", "get_host", "hookimpl", "load_image", "read_recipe", "save_image",
]
