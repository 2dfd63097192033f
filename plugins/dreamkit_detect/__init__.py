"""Built-in ``detect`` effect (a plugin like any other: entry point ``detect``).

* ``effect.py``: the :class:`Detect` effect (parameters, records, drawing).
* ``mtcnn.py``: the MTCNN face cascade, real and offline with the verified Caffe-derived weights.
* ``objects.py``: torchvision's COCO detectors with per-call thresholds.
* ``catalog.py``: the weights this plugin owns and registers (MTCNN, the COCO detectors).
"""

from __future__ import annotations

from dreamkit import hookimpl

from .catalog import COCO_WEIGHTS, MTCNN_WEIGHTS
from .effect import Detect
from .mtcnn import LANDMARKS, MTCNN, FaceDetections, MTCNNSettings
from .objects import ObjectDetections, detect_objects

__all__ = ["Detect", "FaceDetections", "LANDMARKS", "MTCNN", "MTCNNSettings", "ObjectDetections", "detect_objects"]


@hookimpl
def dreamkit_register_effects(register):
    register(Detect)


@hookimpl
def dreamkit_register_weights(register):
    for entry in (*MTCNN_WEIGHTS, *COCO_WEIGHTS):
        register(entry)
