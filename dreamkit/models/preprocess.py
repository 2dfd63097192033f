"""A classifier's own preprocessing and labels for the weights it loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from .backbones import check_backbone, registered_backbone
from .loading import _registry, resolve_weights_key

def classification_preprocess(backbone: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """The model's own preprocessing for these weights: torchvision's ``ImageClassification``
    preset (resize, centre crop, ImageNet normalisation) of the matching weights enum, e.g.
    resize 256 / crop 224 for MobileNetV2, 342 / 299 for Inception v3; a registered backbone's own
    sizes and normalisation. Takes 0..1 float images (C×H×W or B×C×H×W)."""
    import torchvision
    from torchvision.transforms._presets import ImageClassification

    check_backbone(backbone, host)
    registered = registered_backbone(backbone, host)
    if registered is not None:
        return ImageClassification(crop_size=registered.crop_size, resize_size=registered.resize_size,
                                   mean=registered.mean, std=registered.std)
    key = resolve_weights_key(backbone, weights, host=host)
    name = _registry(host).get(key).name if key else None
    try:
        members = list(torchvision.models.get_model_weights(backbone))
    except (KeyError, ValueError):  # a builder without a weights enum
        members = []
    chosen = next((m for m in members if m.name == name), members[0] if members else None)
    return chosen.transforms() if chosen is not None else ImageClassification(crop_size=224)


def weights_categories(backbone: str, weights: str | Path = "default", *, host: Any = None) -> Sequence[str] | None:
    """The class labels of the weights a model would load; for random weights those of the
    backbone's first registered weights (``None`` when it has none)."""
    registry = _registry(host)
    key = resolve_weights_key(backbone, weights, host=host)
    if key is None:
        entries = registry.for_backbone(backbone)
        return entries[0].categories if entries else None
    return registry.get(key).categories
