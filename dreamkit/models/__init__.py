"""Backbones by name, their layer names, frozen feature extractors with gradients to the input, the
classifiers' own preprocessing and labels, and the box detectors plugins register.

A backbone is any torchvision classification model, by its builder name (``mobilenet_v2``,
``vgg19``, ``resnet50``, ``googlenet``, ``inception_v3``, ...). Layers are named by torchvision
module path (``features.7``, ``layer3``, ``inception4c``); VGG also has the usual aliases
(``relu4_2``, ``conv1_1``, ``pool3``). Weights come from the plugin host's registry (verified), or
``"random"`` for tests and timing.

One module per job:

* ``backbones``: names (torchvision's and plugins' :class:`Backbone`), layers, building and
  loading backbones (frozen);
* ``loading``: what a ``weights=`` value means, and loading the verified state dict through a host;
* ``features``: :class:`FeatureExtractor` and the graph surgery behind it (cut, BatchNorm folding,
  out-of-place activations);
* ``preprocess``: a classifier's own preprocessing and labels;
* ``detectors``: box detectors that plugins register (:class:`Detector`).
"""

from __future__ import annotations

from .backbones import (IMAGENET_MEAN, IMAGENET_STD, Backbone, LayerError, LayerInfo, backbone_names, build_backbone,
                        check_backbone, declared_layers, freeze, input_normalization, layer_aliases, list_layers, load_backbone,
                        registered_backbone, resolve_layer, resolve_layers, torchvision_backbone_names)
from .detectors import Detector, detector_names, load_detector, registered_detector
from .features import (FeatureExtractor, fold_batchnorm, fold_batchnorm_in_sequentials, outplace_activations, shared_extractor,
                       trace_outputs)
from .loading import default_weights, resolve_weights_key
from .preprocess import classification_preprocess, weights_categories

__all__ = [
    "Backbone", "declared_layers", "input_normalization", "registered_backbone", "torchvision_backbone_names",
    "Detector", "detector_names", "registered_detector", "IMAGENET_MEAN", "IMAGENET_STD", "FeatureExtractor", "LayerError", "LayerInfo", "backbone_names",
    "build_backbone", "check_backbone", "classification_preprocess", "default_weights", "fold_batchnorm",
    "fold_batchnorm_in_sequentials", "freeze", "layer_aliases", "list_layers", "load_backbone", "load_detector",
    "outplace_activations", "resolve_layer", "shared_extractor", "resolve_layers", "resolve_weights_key", "trace_outputs",
    "weights_categories",
]
