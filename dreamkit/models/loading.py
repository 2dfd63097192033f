"""What a ``weights=`` value means for a model, and loading its verified state dict, through the
run's plugin host (``host``; the process-wide host only for direct calls without one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import WeightsError

_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def _host(host: Any) -> Any:
    """``host``, or the process-wide host. Effects always pass their run's host (``context.host``);
    only a direct Python call without one gets the process-wide host. The one fallback in models."""
    if host is None:
        from ..plugins import get_host

        host = get_host()
    return host


def _registry(host: Any) -> Any:
    """The weights registry of ``host`` (see :func:`_host`)."""
    return _host(host).weights


def default_weights(backbone: str, host: Any = None) -> str:
    """The key of the first weights registered for ``backbone`` in ``host``'s registry."""
    entries = _registry(host).for_backbone(backbone)
    if not entries:
        raise WeightsError(
            f"no weights are registered for backbone '{backbone}'; a plugin can register them "
            "(dreamkit_register_weights), or use weights='random' for tests and timing"
        )
    return entries[0].key


def resolve_weights_key(backbone: str, weights: str | Path = "default", *, host: Any = None) -> str | None:
    """The registered key that ``weights`` means for ``backbone``: the default's for ``"default"``
    and for a file path (the file is checked against it), the key itself, or ``None`` for random."""
    text = str(weights)
    if text == "random":
        return None
    registry = _registry(host)
    return text if text in registry.entries else default_weights(backbone, host)


def _load_registered(model: nn.Module, name: str, weights: str | Path, host: Any, *, assign: bool = False) -> None:
    """Load the verified state dict that ``weights`` (not "random") means for ``name``."""
    key = resolve_weights_key(name, weights, host=host)
    path = None if str(weights) in ("default", key) else Path(weights)
    if path is not None and not path.is_file():  # a misspelt key is not a missing file
        raise WeightsError(f"weights '{weights}' for '{name}' {_registry(host).not_a_name(str(weights), name)}")
    state = _registry(host).load_state_dict(key, path=path)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(_AUX_PREFIXES)}, assign=assign)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # assign=True on a meta-built model: everything must have come from the file
        raise WeightsError(f"weights '{key}' do not set {len(left)} tensors of {name}, e.g. {left[0]}")
