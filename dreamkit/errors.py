"""Exceptions that describe a problem with the user's input, not a bug in dreamkit.

The CLI turns every ``DreamkitError`` into a message on stderr and exit code 2; anything else is
an internal error (exit code 1, with a traceback).
"""

from __future__ import annotations

import errno


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


class EnvironmentFailure(DreamkitError):
    """The machine cannot go on: the disk is full, a quota or file-size limit is reached, the file
    system turned read-only. A batch stops scheduling work at once (exit 1); the same command run
    again once it is fixed finishes the job."""


#: errno values that say the machine, not the input, is the problem (see :class:`EnvironmentFailure`).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def environment_failure(exc: BaseException) -> EnvironmentFailure | None:
    """``exc`` as an :class:`EnvironmentFailure` when it is one (an ``OSError`` with one of
    :data:`ENVIRONMENT_ERRNOS`), else ``None``."""
    if isinstance(exc, EnvironmentFailure):
        return exc
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        where = f"writing {exc.filename}: " if exc.filename else ""
        return EnvironmentFailure(f"{where}{exc.strerror or exc}")
    return None
