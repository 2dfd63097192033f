"""Backbones by name, their layer names, and frozen feature extractors with gradients to the input.

A backbone is any torchvision classification model, by its builder name (``mobilenet_v2``,
``vgg19``, ``resnet50``, ``googlenet``, ``inception_v3``, ...). Layers are named by torchvision
module path (``features.7``, ``layer3``, ``inception4c``); VGG also has the usual aliases
(``relu4_2``, ``conv1_1``, ``pool3``). Weights come from :mod:`dreamkit.weights` (verified), or
``"random"`` for tests and timing.

:class:`FeatureExtractor` returns the activations at the requested layers and computes nothing
after the deepest one (the FX graph is cut there); it is frozen (eval mode, no weight gradients),
folds BatchNorm into the preceding convolution, normalises 0..1 input with the ImageNet mean and
std itself, and runs channels_last (optionally in bfloat16, its weights converted once).
"""

from __future__ import annotations

import difflib
import functools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .errors import DreamkitError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Auxiliary heads are for training only. transform_input=True is how torchvision runs these two
# with their ImageNet weights (trained on Google's own input scaling): it rescales our normalised input.
_BUILD_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
    "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": True},
}
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")
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


def _registry(host: Any) -> Any:
    """The weights registry of ``host``. Effects always pass their run's host (``context.host``);
    only a direct Python call without one gets the process-wide host."""
    if host is None:
        from .plugins import get_host

        host = get_host()
    return host.weights


def default_weights(backbone: str, host: Any = None) -> str:
    """The key of the first weights registered for ``backbone`` in ``host``'s registry."""
    entries = _registry(host).for_backbone(backbone)
    if not entries:
        raise WeightsError(
            f"no weights are registered for backbone '{backbone}'; a plugin can register them "
            "(dreamkit_register_weights), or use weights='random' for tests and timing"
        )
    return entries[0].key


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


def fold_batchnorm_in_sequentials(model: nn.Module) -> int:
    """Fold BatchNorm into the Conv2d just before it inside every ``nn.Sequential`` (the BN
    becomes an Identity); return how many. torchvision's tracer keeps blocks such as
    ``Conv2dNormActivation`` whole, so their insides never appear in the FX graph."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


def fold_batchnorm(graph_module: torch.fx.GraphModule) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into it; return how many.

    A folded conv computes ``bn(conv(x))`` with one op, so a frozen extractor skips a full pass
    over every activation it normalises.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(graph_module.named_modules())
    folded = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module"
                and isinstance(modules.get(source.target), nn.Conv2d) and len(source.users) == 1):
            continue
        conv, bn = modules[source.target], modules[node.target]
        fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
        _set_submodule(graph_module, source.target, fused)
        modules[source.target] = fused
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        folded += 1
    graph_module.graph.lint()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    return folded


def trace_outputs(model: nn.Module, paths: Sequence[str]) -> torch.fx.GraphModule:
    """An FX GraphModule of ``model`` in eval mode that returns ``{path: activation}`` for the
    module ``paths`` and computes nothing the outputs do not depend on.

    The same node naming and leaf modules as torchvision's ``create_feature_extractor``, with one
    eval-mode trace instead of its train and eval traces (the train graph is never used here and
    cost ~0.2 s per extractor)."""
    from torchvision.models import feature_extraction

    tracer = feature_extraction.NodePathTracer(**feature_extraction._set_default_tracer_kwargs(None))
    graph = tracer.trace(model.eval())
    module = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    for node in [n for n in module.graph.nodes if n.op == "output"]:
        module.graph.erase_node(node)
    nodes = list(module.graph.nodes)
    outputs: dict[str, torch.fx.Node] = {}
    for path in dict.fromkeys(paths):  # the last node inside the module at ``path`` is its output
        pattern = re.compile(rf"^{re.escape(path)}(\.|$)")
        found = [n for n in nodes if pattern.match(tracer.node_to_qualname.get(n, ""))]
        if not found:
            raise DreamkitError(f"layer '{path}' is not a node of the traced {type(model).__name__}")
        outputs[path] = found[-1]
    with module.graph.inserting_after(nodes[-1]):
        module.graph.output(outputs)
    module.graph.eliminate_dead_code()
    module.recompile()
    module.delete_all_unused_submodules()
    return module


def outplace_activations(model: nn.Module) -> int:
    """Make in-place activations (``ReLU6(inplace=True)``, ...) out-of-place; return how many.

    In-place clamps are out-of-place kernels plus a copy back; with frozen weights nothing else
    keeps the pre-activation alive, so out-of-place costs no memory and one pass less per
    activation (MobileNetV2 to ``features.12`` at 1024 px: forward+backward about 8% faster)."""
    changed = 0
    for module in model.modules():
        if getattr(module, "inplace", False) is True and isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU,
                                                                             nn.Hardswish, nn.LeakyReLU, nn.ELU)):
            module.inplace = False
            changed += 1
    return changed


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


class FeatureExtractor(nn.Module):
    """Activations of a frozen backbone at named layers, from a 0..1 image.

    ``FeatureExtractor("mobilenet_v2", ["features.7", "features.11"])(image)`` returns
    ``{"features.7": ..., "features.11": ...}`` (keys as requested, aliases included).
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        layers: Sequence[str],
        weights: str | Path = "default",
        *,
        fold_bn: bool = True,
        channels_last: bool = True,
        bf16: bool = False,
        normalize: bool = True,
        host: Any = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise DreamkitError("a feature extractor needs at least one layer")
        if isinstance(backbone, str):
            model = load_backbone(backbone, weights, host=host)
            paths = resolve_layers(backbone, layers, model)
        else:
            paths = list(layers)
            model = freeze(backbone)
        self.layers = list(layers)
        self.paths = dict(zip(self.layers, paths))
        #: What the architecture of this extractor depends on (for measurements kept between runs),
        #: or None for a module passed in (its architecture has no name).
        self.signature = (f"{backbone}|{','.join(paths)}|fold_bn={fold_bn}|bf16={bf16}"
                          if isinstance(backbone, str) else None)
        # FX drops every node the requested outputs do not depend on: no work past the deepest layer.
        self.body = freeze(trace_outputs(model, paths))
        self.folded = (fold_batchnorm_in_sequentials(self.body) + fold_batchnorm(self.body)) if fold_bn else 0
        outplace_activations(self.body)
        self.channels_last = channels_last
        self.bf16 = bf16
        self.normalize = normalize
        if channels_last:
            self.body.to(memory_format=torch.channels_last)
        if bf16:  # converted once, not recast by autocast at every call
            self.body.to(torch.bfloat16)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std if self.normalize else image
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.bf16:
            x = x.to(torch.bfloat16)
        out = self.body(x)
        return {layer: out[path].float() if self.bf16 else out[path] for layer, path in self.paths.items()}


# -- classification and detection models ------------------------------------------------------
def classification_preprocess(backbone: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """The model's own preprocessing for these weights: torchvision's ``ImageClassification``
    preset (resize, centre crop, ImageNet normalisation) of the matching weights enum, e.g.
    resize 256 / crop 224 for MobileNetV2, 342 / 299 for Inception v3. Takes 0..1 float images
    (C×H×W or B×C×H×W)."""
    import torchvision
    from torchvision.transforms._presets import ImageClassification

    check_backbone(backbone)
    key = resolve_weights_key(backbone, weights, host=host)
    name = _registry(host).get(key).name if key else None
    try:
        members = list(torchvision.models.get_model_weights(backbone))
    except (KeyError, ValueError):  # a builder without a weights enum
        members = []
    chosen = next((m for m in members if m.name == name), members[0] if members else None)
    return chosen.transforms() if chosen is not None else ImageClassification(crop_size=224)


def resolve_weights_key(backbone: str, weights: str | Path = "default", *, host: Any = None) -> str | None:
    """The registered key that ``weights`` means for ``backbone``: the default's for ``"default"``
    and for a file path (the file is checked against it), the key itself, or ``None`` for random."""
    text = str(weights)
    if text == "random":
        return None
    registry = _registry(host)
    return text if text in registry.entries else default_weights(backbone, host)


def weights_categories(backbone: str, weights: str | Path = "default", *, host: Any = None) -> Sequence[str] | None:
    """The class labels of the weights a model would load; for random weights those of the
    backbone's first registered weights (``None`` when it has none)."""
    registry = _registry(host)
    key = resolve_weights_key(backbone, weights, host=host)
    if key is None:
        entries = registry.for_backbone(backbone)
        return entries[0].categories if entries else None
    return registry.get(key).categories


#: torchvision's COCO box detectors (the detect plugin registers their weights: dreamkit_detect/catalog.py).
DETECTORS = (
    "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large", "ssd300_vgg16",
)


def load_detector(name: str, weights: str | Path = "default", *, host: Any = None) -> nn.Module:
    """A torchvision COCO detector (``DETECTORS``) with verified weights, like :func:`load_backbone`:
    ``"default"``, ``"random"``, a registered key, or a file checked against the default's sha256.
    Frozen, eval mode, on the CPU. Its output boxes are in the input image's pixel frame."""
    import torchvision

    if name not in DETECTORS:
        close = difflib.get_close_matches(name, DETECTORS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DreamkitError(f"unknown detector '{name}'{hint}; known detectors: {', '.join(DETECTORS)}")
    # No backbone download either: every weight comes from the (verified) state dict or is random.
    with _fixed_init():
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=91)
    if str(weights) != "random":
        _load_registered(model, name, weights, host)
    return freeze(model)


def _load_registered(model: nn.Module, name: str, weights: str | Path, host: Any, *, assign: bool = False) -> None:
    """Load the verified state dict that ``weights`` (not "random") means for ``name``."""
    key = resolve_weights_key(name, weights, host=host)
    path = None if str(weights) in ("default", key) else Path(weights)
    state = _registry(host).load_state_dict(key, path=path)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(_AUX_PREFIXES)}, assign=assign)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # assign=True on a meta-built model: everything must have come from the file
        raise WeightsError(f"weights '{key}' do not set {len(left)} tensors of {name}, e.g. {left[0]}")
