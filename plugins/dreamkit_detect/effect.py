"""The ``detect`` effect: faces (MTCNN, offline) or COCO objects (torchvision detectors)."""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from dreamkit import Effect, Param
from dreamkit.annotate import Box, draw_boxes
from dreamkit.errors import DreamkitError, ParameterError
from dreamkit.io import as_rgb
from dreamkit.models import Detector, detector_names, load_detector, registered_detector
from dreamkit.plugins import PluginHost, get_host

from .mtcnn import LANDMARKS, MTCNN, MTCNNSettings
from .objects import default_iou, detect_objects

FACE_MODELS = ("mtcnn",)
#: Default model per target, and default final score threshold per target.
DEFAULT_MODEL = {"faces": "mtcnn", "objects": "fasterrcnn_mobilenet_v3_large_fpn"}
# Faces: O-Net scores textures such as the astronaut's suit ring at 0.85 while real faces score
# above 0.99, so the last threshold is stricter than the cascade's 0.8. Objects: torchvision's 0.5.
DEFAULT_SCORE = {"faces": 0.9, "objects": 0.5}
FACE_IOU = 0.7


def _labels(categories) -> list[str]:
    """The class names a filter may use (no background, no N/A slots)."""
    return [name for name in categories if name not in ("__background__", "N/A")]


class Detect(Effect):
    """Find faces or objects; report label, score and box (and landmarks for faces).

    Boxes are ``[x1, y1, x2, y2]`` in pixels of the image this step receives (for a first step,
    the input file after EXIF orientation). ``draw=true`` outlines each detection in its class's
    colour with a caption; otherwise the image is returned unchanged.
    """

    name = "detect"
    summary = "Detect faces (MTCNN, offline) or COCO objects; boxes, scores, landmarks."

    what = Param(str, "faces", choices=("faces", "objects"), help="faces (MTCNN) or objects (COCO classes)")
    model = Param(str, "auto", advanced=True, help="auto: mtcnn for faces, fasterrcnn_mobilenet_v3_large_fpn for objects; any "
                                    "registered detector (`dreamkit plugins` lists them)")
    weights = Param(str, "default", resource="file", words=("default", "random"),
                    advanced=True, help="'default', 'random', a registered name, or a weights file (objects)")
    score_threshold = Param(float, None, min=0.0, max=1.0, help="minimum score (default 0.9 faces, 0.5 objects)")
    iou_threshold = Param(float, None, min=0.0, max=1.0, advanced=True, help="NMS overlap above which the weaker box goes (default: the model's)")
    max_detections = Param(int, 100, min=1, max=10000, advanced=True, help="keep at most this many, best first")
    classes = Param(list, [], item=str, help="only these labels (COCO names such as person, dog; 'face')")
    min_face_size = Param(float, 20.0, min=12.0, advanced=True, help="smallest face looked for, in pixels (faces)")
    draw = Param(bool, False, help="draw the boxes, captions and landmarks on the image")

    def check(self) -> None:
        model = self.model_name
        if self.what == "faces" and model not in FACE_MODELS:
            raise self.invalid("model", f"what='faces' needs a face model: {', '.join(FACE_MODELS)} (or auto)")
        names = detector_names() if self.what == "objects" else []
        if self.what == "objects" and model not in names:
            # difflib misses a family name ("retinanet") among long builder names: prefixes first
            close = [n for n in names if n.startswith(model)][:3] or difflib.get_close_matches(model, names, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise self.invalid("model", f"what='objects' needs a registered detector; {hint}"
                                        f"allowed: {', '.join(names) or 'none'} (or auto)")
        if self.what == "faces" and self.weights not in ("default", "random"):
            raise self.invalid("weights", "MTCNN uses its three registered files (mtcnn_pnet/rnet/onet.V1); "
                                          "expected 'default' or 'random'")
        known = ["face"] if self.what == "faces" else _labels(registered_detector(model).categories)
        for label in self.classes:
            if label not in known:
                close = difflib.get_close_matches(label, known, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                kind = "a face label" if self.what == "faces" else f"a label of {model}"
                raise self.invalid("classes", f"{label!r} is not {kind}; {hint}"
                                              f"allowed: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''}")

    @property
    def model_name(self) -> str:
        """The model that runs: ``model``, or the default for ``what`` when it is ``auto``."""
        return DEFAULT_MODEL[self.what] if self.model == "auto" else self.model

    @property
    def score(self) -> float:
        return DEFAULT_SCORE[self.what] if self.score_threshold is None else self.score_threshold

    def network(self, device: torch.device | str = "cpu", host: PluginHost | None = None) -> nn.Module:
        """The loaded model with ``host``'s weights (default: the process-wide host), cached per
        host, model, weights and device."""
        try:
            return _network(host or get_host(), self.model_name, self.weights, str(device))
        except DreamkitError as exc:
            raise ParameterError(f"effect 'detect': {exc}") from None

    def detect(self, image: torch.Tensor, host: PluginHost | None = None) -> list[dict[str, Any]]:
        """Detections in one 1×3×H×W (or 3×H×W) 0..1 image, best first, as JSON-able records."""
        image = as_rgb(image, "effect 'detect'")
        network = self.network(image.device, host)
        if self.what == "faces":
            records = self._faces(network, image)
        else:
            records = self._objects(network, image, registered_detector(self.model_name, host))
        if self.classes:
            records = [r for r in records if r["label"] in self.classes]
        return records[: self.max_detections]

    def _faces(self, network: nn.Module, image: torch.Tensor) -> list[dict[str, Any]]:
        iou = FACE_IOU if self.iou_threshold is None else self.iou_threshold
        defaults = MTCNNSettings()
        settings = replace(defaults, min_face_size=self.min_face_size, nms=(*defaults.nms[:2], iou))
        found = network.detect(image, settings)
        keep = found.scores >= self.score
        return [
            {"label": "face", "score": _round(score, 4), "box": [_round(v) for v in box],
             "landmarks": {name: [_round(x), _round(y)] for name, (x, y) in zip(LANDMARKS, points)}}
            for box, score, points in zip(found.boxes[keep].tolist(), found.scores[keep].tolist(),
                                          found.landmarks[keep].tolist())
        ]

    def _objects(self, network: nn.Module, image: torch.Tensor, detector: Detector) -> list[dict[str, Any]]:
        iou = default_iou(network, detector) if self.iou_threshold is None else self.iou_threshold
        limit = self.max_detections if not self.classes else max(self.max_detections, 300)  # filtered later
        found = detect_objects(network, detector, image, score=self.score, iou=iou, limit=limit)
        return [
            {"label": detector.categories[index], "index": index, "score": _round(score, 4),
             "box": [_round(v) for v in box]}
            for box, score, index in zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist())
        ]

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        detections = self.detect(image, context.host)
        context.add_result({"what": self.what, "model": self.model_name, "count": len(detections),
                            "width": int(image.shape[-1]), "height": int(image.shape[-2]),  # the boxes' frame
                            "detections": detections})
        if not self.draw or not detections:
            return image
        return draw_boxes(image, [
            Box(d["box"], d["label"], f"{d['label']} {d['score']:.2f}", list(d.get("landmarks", {}).values()))
            for d in detections
        ])


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def _network(host: PluginHost, name: str, weights: str, device: str) -> nn.Module:
    """The host's detector for these settings (``host.models``: loaded once, shared)."""
    def build() -> nn.Module:
        model = MTCNN.from_registry(weights, host) if name in FACE_MODELS else load_detector(name, weights, host=host)
        return model.to(device)

    return host.models.get(("detector", name, str(weights), device), build)
