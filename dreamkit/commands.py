"""Commands that plugins add to the ``dreamkit`` command line (``dreamkit_register_commands``),
and the option checks every command shares (a plugin's command needs nothing from ``dreamkit.cli``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from .errors import DreamkitError

#: The core's own command names: no plugin may take them.
CORE_COMMANDS = ("run", "effects", "plugins", "doctor", "replay", "layers", "weights")


@dataclass(frozen=True, eq=False)
class Command:
    """A ``dreamkit NAME ...`` command a plugin adds.

    * ``name``: the command word (``index`` gives ``dreamkit index ...``).
    * ``help``: one line for ``dreamkit --help``.
    * ``configure(parser)``: adds the command's arguments (and its own subcommands) to the
      ``argparse`` parser dreamkit made for it.
    * ``run(args)``: runs it with the parsed arguments and returns the exit code. Raise
      :class:`~dreamkit.errors.DreamkitError` for a usage error or a bad input: dreamkit prints
      ``dreamkit: error: ...`` and exits 2, as for its own commands.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def require_positive(value: int | None, option: str) -> None:
    """A usage error (exit 2) unless ``value``, an option's, is None or a positive integer."""
    if value is not None and value < 1:
        raise DreamkitError(f"{option} {value} is not allowed; expected a positive integer")
