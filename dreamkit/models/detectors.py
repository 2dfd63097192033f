"""Box detectors by name: what plugins register (:class:`Detector`, through
``dreamkit_register_detectors``; the built-in ``detect`` plugin registers torchvision's COCO
detectors), loaded like backbones (verified weights, frozen)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DreamkitError
from .backbones import _fixed_init, freeze
from .loading import _host, _load_registered


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a registration, not a value
class Detector:
    """A box detector a plugin adds by name, for ``detect:what=objects,model=NAME``.

    * ``build()``: the network (initialised any way; dreamkit seeds it for ``weights="random"``),
      called as torchvision's detectors are: ``model([image])`` with a 3×H×W 0..1 image returns
      ``[{"boxes": N×4 (x1, y1, x2, y2 in the image's pixels), "scores": N, "labels": N}]``.
      Its weights are registered as usual, with ``WeightsEntry(backbone=name, ...)``.
    * ``categories``: the label name of each class index.
    * ``configure(model, score, iou, limit)``: optional; pushes the thresholds into the model (as
      torchvision's detectors read them at run time). Without it dreamkit filters by score, runs
      per-class NMS at ``iou`` and keeps ``limit`` boxes itself.
    * ``default_iou``: the NMS overlap used when the user gives none (a number, or read from the
      built model).
    """

    name: str
    build: Callable[[], nn.Module]
    categories: Sequence[str]
    configure: Callable[[nn.Module, float, float, int], None] | None = None
    default_iou: float | Callable[[nn.Module], float] = 0.5
    description: str = ""


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
