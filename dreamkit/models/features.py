"""Frozen feature extractors: the FX graph cut after the deepest requested layer, BatchNorm folded,
out-of-place activations, channels_last, optional bfloat16, gradients to the input only."""

from __future__ import annotations

import gc
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import DreamkitError
from .backbones import IMAGENET_MEAN, IMAGENET_STD, freeze, input_normalization, load_backbone, resolve_layers

log = logging.getLogger("dreamkit.models")


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


def replicate_edges(model: nn.Module, from_stride: int, probe_side: int = 256) -> int:
    """Make the convolutions of ``model`` whose input is at ``from_stride`` or coarser (input
    pixels per activation) pad by replicating their edge instead of with zeros; return how many.

    On a deep, coarse map a zero border is a large share of the map and reads as a strong edge
    where the image is flat and bright: MobileNetV2's ``features.14`` answered a flat sky corner
    with activations whose style gradient was 30x the image's median (500x for that layer alone),
    and the stylisation filled the corner with noise. Replicated edges remove it; on the early,
    large maps the padding copy would cost 30-45% of a pass and they do not need it (measured in
    the style effect's tests). The strides are found by one probe pass at ``probe_side`` px."""
    sizes: dict[nn.Conv2d, int] = {}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"
             and any(p > 0 for p in (m.padding if isinstance(m.padding, tuple) else ()))]
    hooks = [c.register_forward_pre_hook(lambda module, args: sizes.__setitem__(module, args[0].shape[-1]))
             for c in convs]
    try:
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, probe_side, probe_side, dtype=parameter.dtype, device=parameter.device))
    finally:
        for hook in hooks:
            hook.remove()
    changed = 0
    for conv, size in sizes.items():
        if probe_side / size >= from_stride:
            conv.padding_mode = "replicate"
            changed += 1
    return changed


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


class FeatureExtractor(nn.Module):
    """Activations of a frozen backbone at named layers, from a 0..1 image.

    ``FeatureExtractor("mobilenet_v2", ["features.7", "features.11"])(image)`` returns
    ``{"features.7": ..., "features.11": ...}`` (keys as requested, aliases included).
    ``replicate_from_stride``: convolutions at that stride or coarser pad by replicating their
    edge (:func:`replicate_edges`); None keeps the backbone's zero padding everywhere.
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
        replicate_from_stride: int | None = None,
        host: Any = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise DreamkitError("a feature extractor needs at least one layer")
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if isinstance(backbone, str):
            model = load_backbone(backbone, weights, host=host)
            paths = resolve_layers(backbone, layers, model, host=host)
            mean, std = input_normalization(backbone, host)
        else:
            paths = list(layers)
            model = freeze(backbone)
        self.layers = list(layers)
        self.paths = dict(zip(self.layers, paths))
        #: What the architecture of this extractor depends on (for measurements kept between runs),
        #: or None for a module passed in (its architecture has no name).
        self.signature = (f"{backbone}|{','.join(paths)}|fold_bn={fold_bn}|bf16={bf16}"
                          f"{f'|replicate>={replicate_from_stride}' if replicate_from_stride else ''}"
                          if isinstance(backbone, str) else None)
        # FX drops every node the requested outputs do not depend on: no work past the deepest layer.
        self.body = freeze(trace_outputs(model, paths))
        self.folded = (fold_batchnorm_in_sequentials(self.body) + fold_batchnorm(self.body)) if fold_bn else 0
        outplace_activations(self.body)
        #: Convolutions padding by replicating their edge (see :func:`replicate_edges`).
        self.replicated = replicate_edges(self.body, replicate_from_stride) if replicate_from_stride else 0
        self.channels_last = channels_last
        self.bf16 = bf16
        self.normalize = normalize
        if channels_last:
            self.body.to(memory_format=torch.channels_last)
        if bf16:  # converted once, not recast by autocast at every call
            self.body.to(torch.bfloat16)
        if isinstance(backbone, str):
            # FX tracing leaves reference cycles that keep the whole loaded model (VGG-19's 500 MB
            # classifier) alive until the next full collection, which may come only after a run.
            del model
            gc.collect()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std if self.normalize else image
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.bf16:
            x = x.to(torch.bfloat16)
        out = self.body(x)
        return {layer: out[path].float() if self.bf16 else out[path] for layer, path in self.paths.items()}


def shared_extractor(host: Any, backbone: str, weights: str, layers: Sequence[str], fast: bool,
                     device: str | torch.device, *, replicate_from_stride: int | None = None) -> FeatureExtractor:
    """A :class:`FeatureExtractor` shared by the effects of a process (building one loads and
    verifies weights and traces the model: worth doing once), kept in ``host.models`` (each host
    its own: two hosts may resolve the same weights name to different files). ``layers``: any sequence of layer names.
    ``fast``: bfloat16 if it is measured to pay on this machine (:mod:`dreamkit.precision`), else fp32.
    ``replicate_from_stride``: see :class:`FeatureExtractor`."""
    if isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of layer names, not the string {layers!r}")
    key = ("feature-extractor", backbone, str(weights), tuple(layers), bool(fast), str(device), replicate_from_stride)
    return host.models.get(key, lambda: _build_shared_extractor(host, *key[1:]))


def _build_shared_extractor(host: Any, backbone: str, weights: str, layers: tuple[str, ...], fast: bool,
                            device: str, replicate_from_stride: int | None) -> FeatureExtractor:
    from ..precision import bf16_pays, time_extractor_pass

    def make(bf16: bool) -> FeatureExtractor:
        return FeatureExtractor(backbone, list(layers), weights, bf16=bf16, host=host,
                                replicate_from_stride=replicate_from_stride).to(device)

    bf16 = False
    if fast:
        bf16, reason = bf16_pays(torch.device(device), f"{backbone}|{weights}|{','.join(layers)}",
                                 time_extractor_pass(make, torch.device(device)))
        log.info("fast mode for %s: %s", backbone, reason)
    return make(bf16)
