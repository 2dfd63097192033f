"""Box detection with any registered :class:`~dreamkit.models.Detector`, and torchvision's COCO
detectors registered as such (thresholds set on the model per call).

torchvision's detectors do their own resizing and normalisation and map boxes back to the size
of the image they were given, so boxes come out in the input's pixel frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torchvision.ops import batched_nms

from dreamkit.models import Detector

from .catalog import COCO_CATEGORIES

#: torchvision's COCO box detectors (their weights: catalog.py).
TORCHVISION_DETECTORS = (
    "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large", "ssd300_vgg16",
)

#: Where each detector family keeps its thresholds (set per call; torchvision reads them at run time).
_ATTRIBUTES = {  # family → (module holding the thresholds, score attr, nms attr, max attr)
    "fasterrcnn": ("roi_heads", "score_thresh", "nms_thresh", "detections_per_img"),
    "retinanet": ("", "score_thresh", "nms_thresh", "detections_per_img"),
    "fcos": ("", "score_thresh", "nms_thresh", "detections_per_img"),
    "ssd": ("", "score_thresh", "nms_thresh", "detections_per_img"),
}


@dataclass
class ObjectDetections:
    """Boxes (N×4, x1 y1 x2 y2 in input pixels), scores (N) and class indices (N), best first."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _holder(model: nn.Module, name: str) -> tuple[nn.Module, tuple[str, str, str]]:
    family = next(key for key in _ATTRIBUTES if name.startswith(key))
    module, *attributes = _ATTRIBUTES[family]
    return (getattr(model, module) if module else model), tuple(attributes)  # type: ignore[return-value]


def _torchvision_iou(name: str, model: nn.Module) -> float:
    """The NMS IoU threshold a torchvision detector ships with, read where it lives."""
    holder, (_, nms_attr, _) = _holder(model, name)
    return float(getattr(holder, nms_attr))


def _torchvision_configure(name: str, model: nn.Module, score: float, iou: float, limit: int) -> None:
    holder, (score_attr, nms_attr, max_attr) = _holder(model, name)
    setattr(holder, score_attr, score)
    setattr(holder, nms_attr, iou)
    setattr(holder, max_attr, limit)


def _torchvision_build(name: str) -> nn.Module:
    import torchvision

    # No backbone download either: every weight comes from the (verified) state dict or is random.
    return torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=91)


TORCHVISION_DETECTOR_SPECS = tuple(
    Detector(name, partial(_torchvision_build, name), COCO_CATEGORIES, configure=partial(_torchvision_configure, name),
             default_iou=partial(_torchvision_iou, name), description=f"torchvision {name} (COCO)")
    for name in TORCHVISION_DETECTORS
)


def default_iou(model: nn.Module, detector: Detector) -> float:
    """The NMS IoU threshold used when the user gives none."""
    return float(detector.default_iou(model) if callable(detector.default_iou) else detector.default_iou)


@torch.inference_mode()
def detect_objects(model: nn.Module, detector: Detector, image: torch.Tensor, *, score: float, iou: float,
                   limit: int) -> ObjectDetections:
    """Run ``model`` (built from ``detector``) on one 1×3×H×W or 3×H×W 0..1 image; at most ``limit``
    boxes scoring at least ``score``, overlapping boxes of a class above ``iou`` suppressed.

    A detector with ``configure`` gets the thresholds set on the model for this call (the model is
    shared between calls); the others are filtered here."""
    if detector.configure is not None:
        detector.configure(model, score, iou, limit)
    output = model([image[0] if image.dim() == 4 else image])[0]
    boxes, scores, labels = output["boxes"], output["scores"], output["labels"]
    keep = scores >= score
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if detector.configure is None:
        kept = batched_nms(boxes.float(), scores.float(), labels, iou)
        boxes, scores, labels = boxes[kept], scores[kept], labels[kept]
    order = scores.argsort(descending=True)[:limit]
    return ObjectDetections(boxes[order], scores[order], labels[order])
