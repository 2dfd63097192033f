"""torchvision's COCO detectors: thresholds set on the model, detections as plain records.

The detectors do their own resizing and normalisation and map boxes back to the size of the
image they were given, so boxes come out in the input's pixel frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Where each detector family keeps its thresholds (set per call; torchvision reads them at run time).
_ATTRIBUTES = {  # family → (module holding the thresholds, score attr, nms attr, max attr)
    "fasterrcnn": ("roi_heads", "score_thresh", "nms_thresh", "detections_per_img"),
    "retinanet": ("", "score_thresh", "nms_thresh", "detections_per_img"),
    "fcos": ("", "score_thresh", "nms_thresh", "detections_per_img"),
    "ssd": ("", "score_thresh", "nms_thresh", "detections_per_img"),
}


@dataclass
class ObjectDetections:
    """Boxes (N×4, x1 y1 x2 y2 in input pixels), scores (N) and COCO class indices (N), best first."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _holder(model: nn.Module, name: str) -> tuple[nn.Module, tuple[str, str, str]]:
    family = next(key for key in _ATTRIBUTES if name.startswith(key))
    module, *attributes = _ATTRIBUTES[family]
    return (getattr(model, module) if module else model), tuple(attributes)  # type: ignore[return-value]


def default_iou(model: nn.Module, name: str) -> float:
    """The NMS IoU threshold the detector ships with."""
    holder, (_, nms_attr, _) = _holder(model, name)
    return float(getattr(holder, nms_attr))


@torch.inference_mode()
def detect_objects(model: nn.Module, name: str, image: torch.Tensor, *, score: float, iou: float,
                   limit: int) -> ObjectDetections:
    """Run ``model`` (a torchvision detector called ``name``) on one 1×3×H×W or 3×H×W 0..1 image.

    The thresholds are set on the model for this call (the model is shared between calls)."""
    holder, (score_attr, nms_attr, max_attr) = _holder(model, name)
    setattr(holder, score_attr, score)
    setattr(holder, nms_attr, iou)
    setattr(holder, max_attr, limit)
    output = model([image[0] if image.dim() == 4 else image])[0]
    order = output["scores"].argsort(descending=True)
    return ObjectDetections(output["boxes"][order], output["scores"][order], output["labels"][order])
