"""dreamkit's built-in web page: ``dreamkit serve`` (needs ``pip install 'dreamkit[web]'``).

A small local page to build a pipeline from every registered effect, run it with live progress,
compare before and after, and take the PNG (with its recipe) and the equivalent command home.
It registers its command like any plugin (``dreamkit_register_commands``); the server itself is
:func:`.app.create_app`.
"""

from __future__ import annotations

from typing import Any

from dreamkit import hookimpl


@hookimpl
def dreamkit_register_commands(register: Any) -> None:
    from .serve import COMMAND

    register(COMMAND)
