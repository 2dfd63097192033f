"""``python -m dreamkit`` is the ``dreamkit`` command."""

from .cli import main

raise SystemExit(main())
