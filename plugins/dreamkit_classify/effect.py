"""The ``classify`` effect: top-k ImageNet labels from any torchvision classification backbone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from dreamkit import Effect, Param
from dreamkit.annotate import draw_panel
from dreamkit.errors import DreamkitError, ParameterError
from dreamkit.io import as_rgb
from dreamkit.plugins import PluginHost, get_host
from dreamkit.models import (check_backbone, classification_preprocess, load_backbone, resolve_weights_key,
                             weights_categories)


@dataclass(frozen=True)
class Prediction:
    """One of the top-k classes of an image."""

    label: str
    index: int
    probability: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probability": round(self.probability, 6)}


class Classify(Effect):
    """Label the image with a classifier's top-k classes and their probabilities.

    The image goes through the model's own preprocessing (for MobileNetV2: resize the shorter
    side to 256, centre crop 224, ImageNet normalisation). The result record holds the backbone,
    the weights and ``predictions`` (label, index, probability), best first. ``draw=true`` writes
    the top three labels in the bottom-left corner; otherwise the image is returned unchanged.
    For many images at once from Python, :meth:`predict` runs them in batches.
    """

    name = "classify"
    summary = "Top-k ImageNet labels with probabilities (any torchvision classifier)."

    backbone = Param(str, "mobilenet_v2", help="torchvision classification model (dreamkit layers --list)")
    weights = Param(str, "default", resource="file", words=("default", "random"),
                    advanced=True, help="'default', 'random', a registered name, or a weights file")
    top_k = Param(int, 5, min=1, max=1000, help="how many classes to report")
    draw = Param(bool, False, help="write the top three labels on the image (bottom-left)")

    def check(self) -> None:
        try:
            check_backbone(self.backbone)
        except DreamkitError as exc:
            raise self.invalid("backbone", str(exc)) from None

    # -- the model ------------------------------------------------------------------------------
    def model(self, device: torch.device | str = "cpu", host: PluginHost | None = None) -> "Classifier":
        """The loaded classifier with ``host``'s weights (default: the process-wide host), cached
        per host, backbone, weights and device."""
        try:
            return _classifier(host or get_host(), self.backbone, self.weights, str(device))
        except DreamkitError as exc:
            raise ParameterError(f"effect 'classify': {exc}") from None

    def predict(self, images: Sequence[torch.Tensor], *, batch_size: int = 32,
                host: PluginHost | None = None) -> list[list[Prediction]]:
        """Top-k predictions for each of ``images`` (C×H×W or 1×C×H×W, 0..1, any sizes), run
        ``batch_size`` at a time after each is preprocessed on its own."""
        if batch_size < 1:
            raise ValueError(f"classify.predict: batch_size must be >= 1, got {batch_size}")
        if not images:
            return []
        classifier = self.model(images[0].device, host)
        results: list[list[Prediction]] = []
        for start in range(0, len(images), batch_size):
            results += classifier.top_k(images[start:start + batch_size], self.top_k)
        return results

    #: Batch runs hand it several images at once: one model call for all (see :meth:`apply_batch`).
    batchable = True

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        return self.apply_batch([image], [context])[0]

    def apply_batch(self, images: list[torch.Tensor], contexts: list[Any]) -> list[torch.Tensor]:
        """Classify several images with one model call (each preprocessed on its own)."""
        classifier = self.model(contexts[0].device, contexts[0].host)
        predictions = classifier.top_k(images, self.top_k)
        return [self._finish(image, context, classifier, found)
                for image, context, found in zip(images, contexts, predictions)]

    def _finish(self, image: torch.Tensor, context: Any, classifier: "Classifier",
                predictions: list[Prediction]) -> torch.Tensor:
        context.add_result({
            "backbone": self.backbone,
            "weights": classifier.weights,
            "predictions": [p.as_dict() for p in predictions],
        })
        if not self.draw:
            return image
        return draw_panel(image, [f"{p.label} {_percent(p.probability)}" for p in predictions[:3]])


class Classifier:
    """A frozen classification model with its preprocessing and labels."""

    def __init__(self, backbone: str, weights: str, device: str, host: PluginHost) -> None:
        self.model: nn.Module = load_backbone(backbone, weights, host=host).to(device)
        self.preprocess = classification_preprocess(backbone, weights, host=host)
        self.categories = weights_categories(backbone, weights, host=host) or _torchvision_categories(backbone)
        # What was loaded, for the record: the registered key, "random", or the user's file.
        key = resolve_weights_key(backbone, weights, host=host)
        self.weights = key if weights in ("default", key) else weights

    @torch.inference_mode()
    def top_k(self, images: Sequence[torch.Tensor], k: int) -> list[list[Prediction]]:
        batch = torch.stack([self.preprocess(as_rgb(image[0] if image.dim() == 4 else image, "effect 'classify'"))
                             for image in images])
        probabilities = self.model(batch).float().softmax(dim=1)
        k = min(k, probabilities.shape[1])
        values, indices = probabilities.topk(k, dim=1)
        return [[Prediction(self.label(int(i)), int(i), float(p)) for p, i in zip(row_p, row_i)]
                for row_p, row_i in zip(values.tolist(), indices.tolist())]

    def label(self, index: int) -> str:
        if self.categories is not None and index < len(self.categories):
            return self.categories[index]
        return f"class {index}"


def _percent(probability: float) -> str:
    """72%, 4.5%, 0.1%: small probabilities keep a digit instead of all showing as 0%."""
    return f"{probability:.0%}" if probability >= 0.095 else f"{probability:.1%}"


def _torchvision_categories(backbone: str) -> Sequence[str] | None:
    """The labels torchvision's own weights for ``backbone`` use (e.g. for random weights)."""
    import torchvision

    try:
        return next(iter(torchvision.models.get_model_weights(backbone))).meta.get("categories")
    except (KeyError, ValueError, StopIteration):
        return None


def _classifier(host: PluginHost, backbone: str, weights: str, device: str) -> Classifier:
    """The host's classifier for these settings (``host.models``: loaded once, shared)."""
    return host.models.get(("classifier", backbone, str(weights), device),
                           lambda: Classifier(backbone, weights, device, host))
