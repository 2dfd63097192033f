"""What a dream maximises: activations of layers (all channels or chosen ones), a match to a
guide image's features, or class logits.

Every term is a sum over activations divided by the number of activations of the whole image,
so it can be evaluated tile by tile (see ``tiles.py``): ``owned`` restricts each spatial layer to
the rows and columns a tile owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dreamkit.tiling import Features, Owned


@dataclass
class LayerTerm:
    """One layer of the objective: its weight and the channels it targets (``None``: all)."""

    layer: str
    weight: float = 1.0
    channels: list[int] | None = None


@dataclass
class Objective:
    """``terms`` in ``mode`` ("l2": mean of squared activations, "mean": mean activation), or, with
    ``guide`` features per layer, the mean over positions of the dot product with the guide's
    best-matching feature (the original DeepDream notebook's guided objective). ``classes`` adds
    the logits of those class indices from ``logits_layer``."""

    terms: list[LayerTerm]
    mode: str = "l2"
    guide: dict[str, torch.Tensor] | None = None
    classes: list[int] = field(default_factory=list)
    logits_layer: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # whole-image positions per layer

    @property
    def layers(self) -> list[str]:
        """Every layer the feature extractor must return."""
        names = [term.layer for term in self.terms]
        if self.classes and self.logits_layer and self.logits_layer not in names:
            names.append(self.logits_layer)
        return names

    def __call__(self, features: Features, owned: Owned | None = None) -> torch.Tensor:
        value = features[self.layers[0]].new_zeros(())
        for term in self.terms:
            activation = features[term.layer]
            if owned and term.layer in owned:
                rows, columns = owned[term.layer]
                activation = activation[..., rows, columns]
            if term.channels is not None:
                activation = activation[:, term.channels]
            positions = self.counts.get(term.layer) or max(activation[0, 0].numel(), 1)
            if self.guide is not None:
                value = value + term.weight * _guide_match(activation, self.guide[term.layer]) / positions
            elif self.mode == "l2":
                value = value + term.weight * activation.square().sum() / (positions * activation.shape[1])
            else:
                value = value + term.weight * activation.sum() / (positions * activation.shape[1])
        if self.classes:
            value = value + features[self.logits_layer][0, self.classes].mean()
        return value


def _guide_match(activation: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Σ over positions of x · g*, g* the guide feature (column of ``guide``, C × M) with the
    largest dot product with x. The gradient w.r.t. x is g*: each position is pulled toward
    what it already resembles most in the guide."""
    x = activation.flatten(2)[0] if activation.dim() == 4 else activation.reshape(activation.shape[1], -1)
    if x.shape[1] == 0:
        return x.sum()
    best = (x.detach().T @ guide).argmax(dim=1)
    return (x * guide[:, best]).sum()
