"""Gatys style transfer as a competent PyTorch user writes it (the PyTorch tutorial's algorithm,
written well): the reference for bench/style.py.

Plain PyTorch and torchvision only (no dreamkit import): the backbone cut after the last layer
used (``features[:k+1]``), ``eval()``, every parameter frozen, activations collected at the chosen
layers while running the Sequential, the Gram matrix as ``F @ F.T / (C*N)`` through autograd, MSE
losses, total variation, ``torch.optim.LBFGS`` (or Adam) over the pixels, fp32. The loss is the
``style`` effect's own, term for term (its per-layer normalising constants are passed in), so both
sides do the same work and reach the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

#: Where the effect's layer names are in the plain Sequential ``features``.
VGG_INDEX = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu4_2": 22, "relu5_1": 29}


class Features(torch.nn.Module):
    """``features[:k+1]`` of a torchvision backbone, frozen, returning the activations at ``layers``."""

    def __init__(self, backbone: str, weights: str | None, layers: list[str]) -> None:
        super().__init__()
        torch.manual_seed(0)  # without a weights file: seeded random weights, the same as dreamkit's "random"
        model = getattr(torchvision.models, backbone)()
        if weights:
            model.load_state_dict(torch.load(weights, weights_only=True))
        self.index = {layer: VGG_INDEX[layer] if backbone.startswith("vgg") else int(layer.split(".")[1])
                      for layer in layers}
        self.body = model.features[:max(self.index.values()) + 1].eval().requires_grad_(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - MEAN) / STD
        wanted = {index: layer for layer, index in self.index.items()}
        out = {}
        for index, module in enumerate(self.body):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def gram(x: torch.Tensor) -> torch.Tensor:
    _, c, h, w = x.shape
    f = x.reshape(c, h * w)
    return f @ f.T / (c * h * w)


class Loss:
    """content_weight Σ w_l/m_l mse(F_l, P_l) + style_weight Σ w_l/n_l mse(G_l, T_l) + tv_weight TV."""

    def __init__(self, features: Features, content: torch.Tensor, style: torch.Tensor, style_layers: dict[str, float],
                 content_layers: dict[str, float], style_weight: float, content_weight: float, tv_weight: float) -> None:
        self.features = features
        self.style_layers, self.content_layers = style_layers, content_layers
        self.style_weight, self.content_weight, self.tv_weight = style_weight, content_weight, tv_weight
        with torch.no_grad():
            self.targets = {layer: gram(a) for layer, a in features(style).items() if layer in style_layers}
            self.content = {layer: a for layer, a in features(content).items() if layer in content_layers}
        self.style_scale = {layer: t.square().mean().item() for layer, t in self.targets.items()}
        self.content_scale = {layer: p.square().mean().item() for layer, p in self.content.items()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        loss = x.new_zeros(())
        for layer, weight in self.style_layers.items():
            loss = loss + self.style_weight * weight / self.style_scale[layer] * F.mse_loss(gram(out[layer]), self.targets[layer])
        for layer, weight in self.content_layers.items():
            loss = loss + self.content_weight * weight / self.content_scale[layer] * F.mse_loss(out[layer], self.content[layer])
        if self.tv_weight:
            loss = loss + self.tv_weight * ((x[..., 1:, :] - x[..., :-1, :]).square().mean()
                                            + (x[..., :, 1:] - x[..., :, :-1]).square().mean())
        return loss


def stylise(loss: Loss, content: torch.Tensor, iterations: int, optimizer: str = "lbfgs", history: int = 20,
            learning_rate: float = 0.02, on_iteration=None) -> torch.Tensor:
    """Optimise the pixels from the content image."""
    x = content.clone().requires_grad_(True)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=history, tolerance_grad=-1, tolerance_change=-1)
    else:
        opt = torch.optim.Adam([x], lr=learning_rate)
    for iteration in range(iterations):
        def closure():
            opt.zero_grad()
            value = loss(x)
            value.backward()
            closure.value = value.item()
            return value

        opt.step(closure)
        if optimizer != "lbfgs":
            with torch.no_grad():
                x.clamp_(0, 1)
        if on_iteration is not None:
            on_iteration(iteration, closure.value)
    return x.detach().clamp(0, 1)
