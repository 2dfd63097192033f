"""pytest fixtures for plugin authors (loaded automatically through the ``pytest11`` entry point).

* ``dreamkit_host``: a fresh :class:`~dreamkit.PluginHost` with every installed plugin loaded,
  made the default host for the test (so ``Pipeline.from_config`` and the CLI's ``main()`` see it)
  and thrown away afterwards. Strict: a plugin that fails to load fails the test
  (``DREAMKIT_STRICT_PLUGINS=0`` relaxes this).
* ``dreamkit_bare_host``: the same, with no entry points loaded (dreamkit's core hooks only).
* ``register_plugin``: ``register_plugin(obj, name=None)`` registers a plugin object or module on
  ``dreamkit_host`` for this test only.
* ``dreamkit_image``: a deterministic 1×3×48×64 float image in 0..1 with gradients and edges.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest
import torch

from .plugins import PluginHost, set_host


def _strict() -> bool:
    return os.environ.get("DREAMKIT_STRICT_PLUGINS", "1").strip() != "0"


def _as_default(host: PluginHost) -> Iterator[PluginHost]:
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


@pytest.fixture
def dreamkit_host() -> Iterator[PluginHost]:
    """A fresh host with all installed plugins, used as the default host during the test."""
    yield from _as_default(PluginHost(strict=_strict()))


@pytest.fixture
def dreamkit_bare_host() -> Iterator[PluginHost]:
    """A fresh host with no plugins but dreamkit's core hooks, used as the default host."""
    yield from _as_default(PluginHost(load_entry_points=False, strict=_strict()))


@pytest.fixture
def register_plugin(dreamkit_host: PluginHost) -> Callable[..., Any]:
    """``register_plugin(plugin, name=None)``: register on ``dreamkit_host`` for this test."""

    def register(plugin: Any, name: str | None = None) -> Any:
        dreamkit_host.register(plugin, name=name)
        return plugin

    return register


@pytest.fixture
def dreamkit_image() -> torch.Tensor:
    """A deterministic 1×3×48×64 test image: colour gradients, a bright square and a dark bar."""
    ys = torch.linspace(0, 1, 48).view(48, 1).expand(48, 64)
    xs = torch.linspace(0, 1, 64).view(1, 64).expand(48, 64)
    image = torch.stack([xs, ys, 1 - (xs + ys) / 2])
    image[:, 10:20, 12:24] = 0.95
    image[:, 30:34, :] = 0.05
    return image.unsqueeze(0).contiguous()
