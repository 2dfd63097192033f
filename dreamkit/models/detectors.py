"""torchvision's COCO box detectors, loaded like backbones (verified weights, frozen)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DreamkitError
from .backbones import _fixed_init, freeze
from .loading import _load_registered

#: torchvision's COCO box detectors (the detect plugin registers their weights: dreamkit_detect/catalog.py).
DETECTORS = (
    "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large", "ssd300_vgg16",
)


def load_detector(name: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """A torchvision COCO detector (``DETECTORS``) with verified weights, like :func:`load_backbone`:
    ``"default"``, ``"random"``, a registered key, or a file checked against the default's sha256.
    Frozen, eval mode, on the CPU. Its output boxes are in the input image's pixel frame."""
    import torchvision

    if name not in DETECTORS:
        close = difflib.get_close_matches(name, DETECTORS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DreamkitError(f"unknown detector '{name}'{hint}; known detectors: {', '.join(DETECTORS)}")
    # No backbone download either: every weight comes from the (verified) state dict or is random.
    with _fixed_init():
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=91)
    if str(weights) != "random":
        _load_registered(model, name, weights, host)
    return freeze(model)
