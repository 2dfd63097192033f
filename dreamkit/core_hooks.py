"""dreamkit's own hook implementations, registered on every plugin host before any plugin."""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl
from .weights_catalog import BUILTIN_WEIGHTS


@hookimpl(trylast=True)
def dreamkit_run_step(effect: Any, image: Any, context: Any) -> Any:
    """The innermost step: apply the effect. Plugins wrap this with ``wrapper=True`` hooks."""
    return effect.apply(image, context)


@hookimpl(trylast=True)
def dreamkit_run_batch_step(effect: Any, images: Any, contexts: Any) -> Any:
    """The innermost batched step: ``effect.apply_batch``. Plugins wrap it as ``dreamkit_run_step``."""
    return effect.apply_batch(images, contexts)


@hookimpl
def dreamkit_register_weights(register: Any) -> None:
    """The weights dreamkit knows by itself (see dreamkit/weights_catalog.py)."""
    for entry in BUILTIN_WEIGHTS:
        register(entry)
