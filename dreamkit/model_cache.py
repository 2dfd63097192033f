"""The loaded models of a plugin host, in one cache every plugin shares.

Loading a model (reading and verifying its weights, tracing it) is worth doing once per process,
but a long-lived process (the web page's server, a Ray actor) that meets many backbones must not
keep every one of them. :class:`ModelCache` keeps models by key while their parameters and
buffers fit in a memory budget, drops the least recently used first, and is cleared with
:meth:`ModelCache.clear`. The host owns it (``host.models``): feature extractors, classifiers,
detectors and the retrieval plugin's describers all go through it.

The budget is ``DREAMKIT_MODEL_CACHE_MB`` (default 4096 MiB): VGG-19 is 548 MiB, MobileNetV2
14 MiB. The model just asked for is always returned, and kept even when it alone is over budget.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: Default budget, MiB.
DEFAULT_BUDGET_MB = 4096


def model_bytes(model: Any) -> int:
    """Bytes held by a model's tensors: an ``nn.Module``'s parameters and buffers, or those of the
    modules an object (a classifier, a describer) holds as attributes."""
    import torch

    modules = [model] if isinstance(model, torch.nn.Module) else \
        [value for value in vars(model).values() if isinstance(value, torch.nn.Module)] if hasattr(model, "__dict__") else []
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


class ModelCache:
    """Models by key, kept within ``budget_mb`` (least recently used dropped first)."""

    def __init__(self, budget_mb: int | None = None) -> None:
        if budget_mb is None:
            text = os.environ.get("DREAMKIT_MODEL_CACHE_MB", "").strip()
            if text and (not text.isdigit() or int(text) < 1):
                from .errors import DreamkitError

                raise DreamkitError(f"DREAMKIT_MODEL_CACHE_MB={text!r} is not allowed; expected a positive integer (MiB)")
            budget_mb = int(text) if text else DEFAULT_BUDGET_MB
        self.budget = budget_mb * 2**20
        self._models: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The model for ``key``, built by ``build()`` the first time (and again after it was
        dropped). Keys name everything the model depends on (kind, backbone, weights, device...)."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                self.hits += 1
                return self._models[key][0]
            self.misses += 1
            model = build()
            self._models[key] = (model, model_bytes(model))
            self._fit()
            return model

    def _fit(self) -> None:
        while len(self._models) > 1 and self.size > self.budget:
            self._models.popitem(last=False)

    @property
    def size(self) -> int:
        """Bytes held by the cached models."""
        return sum(size for _, size in self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._models

    def clear(self) -> None:
        """Drop every model (a server between jobs, a test)."""
        with self._lock:
            self._models.clear()


__all__ = ["DEFAULT_BUDGET_MB", "ModelCache", "model_bytes"]
