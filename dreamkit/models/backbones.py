"""Backbones by name: torchvision's classification builders and those plugins register
(:class:`Backbone`, through ``dreamkit_register_backbones``), their layer names (and aliases),
building (random or on the meta device) and loading with verified weights, frozen.

Functions that take ``host`` look a name up in that plugin host's backbones first; without one
they use the process-wide host (direct Python calls; effects pass their run's host).
"""

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
from ..networks import IMAGENET_MEAN, IMAGENET_STD, Backbone, torchvision_backbone_names
from .loading import _host, _load_registered


def declared_layers(backbone: str, use: str, host: Any = None) -> list[str] | None:
    """The default layers a plugin's :class:`Backbone` declares for ``use`` (``"deepdream"``,
    ``"style"``, ``"content"``), or None (torchvision's backbones, or none declared)."""
    registered = registered_backbone(backbone, host)
    if registered is None or use not in registered.layers:
        return None
    return list(registered.layers[use])


def registered_backbone(name: str, host: Any = None) -> Backbone | None:
    """The :class:`Backbone` a plugin of ``host`` registered as ``name``, or None (torchvision's)."""
    return _host(host).backbones.get(name)

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


def backbone_names(host: Any = None) -> list[str]:
    """Every backbone by name: torchvision's and those ``host``'s plugins registered."""
    return sorted({*torchvision_backbone_names(), *_host(host).backbones})


def layer_aliases(backbone: str, host: Any = None) -> dict[str, str]:
    """Friendly layer names → module paths (VGG's conv/relu/pool names, a registered backbone's
    own; empty for others)."""
    registered = registered_backbone(backbone, host)
    if registered is not None:
        return dict(registered.aliases)
    blocks = _VGG_BLOCKS.get(backbone)  # the _bn variants interleave BatchNorm: other indices
    return _vgg_aliases(blocks) if blocks else {}


def input_normalization(backbone: str, host: Any = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a backbone's weights expect on 0..1 RGB input (ImageNet's for torchvision's)."""
    registered = registered_backbone(backbone, host)
    return (registered.mean, registered.std) if registered is not None else (IMAGENET_MEAN, IMAGENET_STD)


def check_backbone(name: str, host: Any = None) -> None:
    """Raise a DreamkitError naming close matches unless ``name`` is torchvision's or registered."""
    names = backbone_names(host)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DreamkitError(f"unknown backbone '{name}'{hint}; see `dreamkit layers --list` for all {len(names)}")


def build_backbone(name: str, *, device: str | torch.device = "cpu", host: Any = None) -> nn.Module:
    """The architecture with seeded random weights (the same in every run), in eval mode."""
    import torchvision

    check_backbone(name, host)
    registered = registered_backbone(name, host)
    with torch.device(device), _fixed_init():
        if registered is not None:
            return registered.build().eval()
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


def list_layers(backbone: str, host: Any = None) -> list[LayerInfo]:
    """Every module of ``backbone`` by path, with its alias and type (built on the meta device)."""
    check_backbone(backbone, host)
    return list(_layers_of(backbone, registered_backbone(backbone, host), _host(host)))


@functools.lru_cache(maxsize=32)
def _layers_of(backbone: str, registered: Backbone | None, host: Any) -> tuple[LayerInfo, ...]:
    # An architecture never changes within a process (keyed by the registration, if any); building
    # it, even on the meta device, costs ~0.1 s, paid once instead of at every name check.
    model = build_backbone(backbone, device="meta", host=host)
    alias_of = {path: alias for alias, path in layer_aliases(backbone, host).items()}
    return tuple(LayerInfo(path, alias_of.get(path), type(module).__name__)
                 for path, module in model.named_modules() if path)


class LayerError(DreamkitError):
    """A backbone has no layer of that name."""


def resolve_layers(backbone: str, layers: Sequence[str], model: nn.Module | None = None,
                   host: Any = None) -> list[str]:
    """Layer names or aliases → module paths; unknown names list close matches. The layers are
    read from ``model`` (the built backbone) when given, else from a meta-device build."""
    aliases = layer_aliases(backbone, host)
    if model is not None:
        paths = [path for path, _ in model.named_modules() if path]
    else:
        paths = [info.path for info in list_layers(backbone, host)]
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


def resolve_layer(backbone: str, layer: str, host: Any = None) -> str:
    """A layer name or alias → module path; unknown names list close matches."""
    return resolve_layers(backbone, [layer], host=host)[0]


def load_backbone(name: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """Build ``name`` and load weights: ``"default"``, ``"random"``, a key (``vgg19.IMAGENET1K_V1``)
    or a file path verified against the default key's sha256. Frozen, eval mode, on the CPU."""
    if str(weights) == "random":
        return freeze(build_backbone(name, host=host))
    # Built on the meta device and given the loaded tensors (assign=True): no random initialisation
    # that the weights would overwrite anyway (~0.07 s for MobileNetV2, seconds for VGG).
    model = build_backbone(name, device="meta", host=host)
    _load_registered(model, name, weights, host, assign=True)
    return freeze(model)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode, and no parameter takes a gradient (only the input will)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
