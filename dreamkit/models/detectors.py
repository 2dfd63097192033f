"""Box detectors by name: what plugins register (:class:`Detector`, through
``dreamkit_register_detectors``; the built-in ``detect`` plugin registers torchvision's COCO
detectors), loaded like backbones (verified weights, frozen)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DreamkitError
from ..networks import Detector
from .backbones import _fixed_init, freeze
from .loading import _host, _load_registered


def detector_names(host: Any = None) -> list[str]:
    """Every detector ``host``'s plugins registered."""
    return sorted(_host(host).detectors)


def registered_detector(name: str, host: Any = None) -> Detector:
    """The :class:`Detector` registered as ``name``; unknown names list close matches."""
    detectors = _host(host).detectors
    if name not in detectors:
        close = difflib.get_close_matches(name, list(detectors), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        known = ", ".join(sorted(detectors)) or "none (is the detect plugin disabled?)"
        raise DreamkitError(f"unknown detector '{name}'{hint}; known detectors: {known}")
    return detectors[name]


def load_detector(name: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """A registered detector with verified weights, like :func:`load_backbone`: ``"default"``,
    ``"random"``, a registered key, or a file checked against the default's sha256. Frozen, eval
    mode, on the CPU. Its output boxes are in the input image's pixel frame."""
    detector = registered_detector(name, host)
    with _fixed_init():
        model = detector.build()
    if str(weights) != "random":
        _load_registered(model, name, weights, host)
    return freeze(model)
