"""Built-in ``detect`` effect (a plugin like any other: entry point ``detect``).

* ``effect.py``: the :class:`Detect` effect (parameters, records, drawing).
* ``mtcnn.py``: the MTCNN face cascade, real and offline with the verified Caffe-derived weights.
* ``objects.py``: detection with any registered detector; torchvision's COCO detectors registered
  with per-call thresholds.
* ``catalog.py``: the weights this plugin owns and registers (MTCNN, the COCO detectors).
"""

from __future__ import annotations

from dreamkit import hookimpl

from .catalog import COCO_WEIGHTS, MTCNN_WEIGHTS
from .effect import Detect
from .mtcnn import LANDMARKS, MTCNN, FaceDetections, MTCNNSettings
from .objects import TORCHVISION_DETECTOR_SPECS, TORCHVISION_DETECTORS, ObjectDetections, detect_objects

__all__ = ["Detect", "FaceDetections", "LANDMARKS", "MTCNN", "MTCNNSettings", "ObjectDetections",
           "TORCHVISION_DETECTORS", "detect_objects"]


@hookimpl
def dreamkit_register_effects(register):
    register(Detect)


@hookimpl
def dreamkit_register_detectors(register):
    for detector in TORCHVISION_DETECTOR_SPECS:
        register(detector)


@hookimpl
def dreamkit_register_weights(register):
    for entry in (*MTCNN_WEIGHTS, *COCO_WEIGHTS):
        register(entry)
