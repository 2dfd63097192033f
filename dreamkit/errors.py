"""Exceptions that describe a problem with the user's input, not a bug in dreamkit.

The CLI turns every ``DreamkitError`` into a message on stderr and exit code 2; anything else is
an internal error (exit code 1, with a traceback).
"""

from __future__ import annotations


class DreamkitError(Exception):
    """Base class: the user can fix this (a bad parameter, file, recipe, plugin or weight file)."""


class ParameterError(DreamkitError, ValueError):
    """An effect parameter is unknown or has a value outside what is allowed."""


class UnknownEffectError(DreamkitError, LookupError):
    """No plugin registered an effect of that name."""


class ConfigError(DreamkitError, ValueError):
    """A pipeline config (dict, JSON or TOML recipe) is malformed."""


class ImageLoadError(DreamkitError):
    """An input image cannot be read safely (missing, not an image, truncated, too large...)."""


class OutputError(DreamkitError):
    """An output cannot be written (exists already, would overwrite an input, name clash...)."""


class PluginError(DreamkitError):
    """A plugin failed to load or register (raised only in strict mode)."""


class WeightsError(DreamkitError):
    """Model weights are unknown, unavailable or fail verification."""
