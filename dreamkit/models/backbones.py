"""Backbones by name: torchvision's classification builders, their layer names (and VGG's aliases),
building (random or on the meta device) and loading with verified weights, frozen."""

from __future__ import annotations

import difflib
import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..errors import DreamkitError
from .loading import _load_registered

# Auxiliary heads are for training only. transform_input=True is how torchvision runs these two
# with their ImageNet weights (trained on Google's own input scaling): it rescales our normalised input.
_BUILD_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
    "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": True},
}


_VGG_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def _vgg_aliases(blocks: Sequence[int]) -> dict[str, str]:
    """conv1_1, relu1_1, ..., pool1, ... → features.N, in the order VGG's ``features`` has them."""
    aliases, index = {}, 0
    for block, convs in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            aliases[f"conv{block}_{conv}"] = f"features.{index}"
            aliases[f"relu{block}_{conv}"] = f"features.{index + 1}"
            index += 2
        aliases[f"pool{block}"] = f"features.{index}"
        index += 1
    return aliases


def backbone_names() -> list[str]:
    """Every classification backbone torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def layer_aliases(backbone: str) -> dict[str, str]:
    """Friendly layer names → module paths (VGG's conv/relu/pool names; empty for others)."""
    blocks = _VGG_BLOCKS.get(backbone)  # the _bn variants interleave BatchNorm: other indices
    return _vgg_aliases(blocks) if blocks else {}


def check_backbone(name: str) -> None:
    """Raise a DreamkitError naming close matches unless torchvision can build ``name``."""
    names = backbone_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DreamkitError(f"unknown backbone '{name}'{hint}; see `dreamkit layers --list` for all {len(names)}")


def build_backbone(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """The torchvision architecture with uninitialised-but-valid random weights, in eval mode."""
    import torchvision

    check_backbone(name)
    with torch.device(device), _fixed_init():
        return torchvision.models.get_model(name, weights=None, **_BUILD_KWARGS.get(name, {})).eval()


@contextmanager
def _fixed_init() -> Iterator[None]:
    """Random initial weights that are the same in every run ("random" weights replay exactly),
    without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@dataclass(frozen=True)
class LayerInfo:
    """One named layer of a backbone."""

    path: str
    alias: str | None
    kind: str


def list_layers(backbone: str) -> list[LayerInfo]:
    """Every module of ``backbone`` by path, with its alias and type (built on the meta device)."""
    return list(_layers_of(backbone))


@functools.lru_cache(maxsize=32)
def _layers_of(backbone: str) -> tuple[LayerInfo, ...]:
    # The architecture of a builder name never changes within a process; building it (even on
    # the meta device) costs ~0.13 s, paid once instead of at every name check.
    model = build_backbone(backbone, device="meta")
    alias_of = {path: alias for alias, path in layer_aliases(backbone).items()}
    return tuple(LayerInfo(path, alias_of.get(path), type(module).__name__)
                 for path, module in model.named_modules() if path)


class LayerError(DreamkitError):
    """A backbone has no layer of that name."""


def resolve_layers(backbone: str, layers: Sequence[str], model: nn.Module | None = None) -> list[str]:
    """Layer names or aliases → module paths; unknown names list close matches. The layers are
    read from ``model`` (the built backbone) when given, else from a meta-device build."""
    aliases = layer_aliases(backbone)
    if model is not None:
        paths = [path for path, _ in model.named_modules() if path]
    else:
        paths = [info.path for info in list_layers(backbone)]
    known = set(paths)
    resolved = []
    for layer in layers:
        if layer in aliases:
            resolved.append(aliases[layer])
        elif layer in known:
            resolved.append(layer)
        else:
            close = difflib.get_close_matches(layer, list(aliases) + paths, n=4)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise LayerError(
                f"backbone '{backbone}' has no layer '{layer}'{hint}; list them with `dreamkit layers {backbone}`"
            )
    return resolved


def resolve_layer(backbone: str, layer: str) -> str:
    """A layer name or alias → module path; unknown names list close matches."""
    return resolve_layers(backbone, [layer])[0]


def load_backbone(name: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """Build ``name`` and load weights: ``"default"``, ``"random"``, a key (``vgg19.IMAGENET1K_V1``)
    or a file path verified against the default key's sha256. Frozen, eval mode, on the CPU."""
    if str(weights) == "random":
        return freeze(build_backbone(name))
    # Built on the meta device and given the loaded tensors (assign=True): no random initialisation
    # that the weights would overwrite anyway (~0.07 s for MobileNetV2, seconds for VGG).
    model = build_backbone(name, device="meta")
    _load_registered(model, name, weights, host, assign=True)
    return freeze(model)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, and no parameter takes a gradient (only the input will)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
