"""Built-in ``classify`` effect (a plugin like any other: entry point ``classify``).

Top-k labels from any torchvision classification backbone with the model's own preprocessing;
the default, MobileNetV2 with torchvision's ImageNet weights, works offline.
"""

from __future__ import annotations

from dreamkit import hookimpl

from .effect import Classifier, Classify, Prediction

__all__ = ["Classifier", "Classify", "Prediction"]


@hookimpl
def dreamkit_register_effects(register):
    register(Classify)
