"""What a plugin registers about a network: :class:`Backbone` and :class:`Detector` records, and
the backbone names torchvision reserves. Plain data with no dependency on the rest of dreamkit, so
the plugin host can check registrations without importing :mod:`dreamkit.models` (which uses the
host: that would be an import cycle). ``dreamkit.models`` re-exports both classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a registration, not a value
class Backbone:
    """A network a plugin adds by name; ``deepdream``, ``classify`` (and every effect that takes a
    ``backbone``) then use it exactly like torchvision's. Its weights are registered as usual
    (``dreamkit_register_weights``, ``WeightsEntry(backbone=name, ...)``).

    * ``build()``: the architecture as an ``nn.Module`` (initialised any way: dreamkit seeds the
      random state for ``weights="random"`` and builds it on the meta device to load real weights).
      Layers are its module paths; it must be traceable by torch.fx (no Python branches on sizes).
    * ``mean``, ``std``: the input normalisation its weights expect, for 0..1 RGB images.
    * ``resize_size``, ``crop_size``: its classification preprocessing (resize the shorter side,
      centre crop).
    * ``aliases``: friendly layer names → module paths (optional).
    * ``layers``: default layers by use, for effects given none: ``"deepdream"`` (the layers to
      amplify), ``"style"`` and ``"content"`` (style transfer's Gram and content layers); e.g.
      ``{"deepdream": ("_blocks.9",), "style": (...), "content": (...)}`` (optional).
    """

    name: str
    build: Callable[[], nn.Module]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_size: int = 256
    crop_size: int = 224
    aliases: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    layers: Mapping[str, Sequence[str]] = field(default_factory=dict)


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


def torchvision_backbone_names() -> list[str]:
    """Every classification backbone torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))
