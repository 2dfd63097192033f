"""The ``deepdream`` effect: parameters, checks, models, and the frame sequence."""

from __future__ import annotations

import difflib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamkit import Effect, Param
from dreamkit.errors import ParameterError
from dreamkit.flow import Motion
from dreamkit.io import load_image
from dreamkit.models import (LayerError, build_backbone, check_backbone, declared_layers, default_weights,
                             shared_extractor)
from dreamkit.plugins import PluginHost, get_host
from dreamkit.tiling import LazyGeometry, feature_shapes, lazy_geometry

from .dream import Settings, dream, zoom
from .objective import LayerTerm, Objective

GUIDE_MAX_SIDE = 512  # the guide's features are taken once, at about this size
#: Layers amplified when none are given, for torchvision backbones (a plugin's Backbone declares its own).
DEFAULT_LAYERS = {"mobilenet_v2": ["features.12"]}


class DeepDream(Effect):
    """Amplify what a network sees in the image (Mordvintsev et al., 2015), octave by octave.

    The objective is one or more layers (each with a weight), optionally narrowed to channels,
    or a match to a guide image's features, or ImageNet classes. Large images are dreamed in
    tiles with an exact halo (no seams, bounded memory); ``frames`` > 1 makes a zoom sequence.
    In a video each frame starts from the previous frame's dream moved along the optical flow
    (``carry``), so the hallucinations stick to surfaces instead of flickering.
    """

    name = "deepdream"
    summary = "DeepDream: octaves, jitter, layer/channel/class objectives, guide image, tiles, zoom, video."
    sequential = True  # a video frame starts from the previous frame's dream moved along the motion
    #: Starting points offered by the web page and `dreamkit effects` (the same keys in each, so
    #: switching presets replaces what the last one set).
    presets = {
        "subtle": {"octaves": 3, "steps": 5, "step_size": 0.003},
        "classic": {"octaves": 4, "steps": 10, "step_size": 0.005},  # the defaults
        "deep": {"octaves": 5, "steps": 20, "step_size": 0.008},
    }
    backbone = Param(str, "mobilenet_v2", help="torchvision backbone (its weights must be available)")
    weights = Param(str, "default", resource="file", words=("default", "random"),
                    advanced=True, help="'default', a weights key, or a file path")
    layers = Param(list, None, item=str, min_items=1,
                   advanced=True, help="layers to amplify (`dreamkit layers BACKBONE`; default: the backbone's, features.12 for "
                        "mobilenet_v2)")
    layer_weights = Param(list, None, item=float, advanced=True, help="one weight per layer (default: 1 each)")
    mode = Param(str, "l2", choices=("l2", "mean"), advanced=True, help="per-layer objective: mean squared or mean activation")
    channels = Param(list, None, item=str,
                     advanced=True, help="channels to target: 'N' (every layer) or 'LAYER:N'; default all")
    classes = Param(list, None, item=str, advanced=True, help="ImageNet class names whose logits to amplify")
    guide = Param(str, None, resource="image", help="guide image: dream toward its features instead")
    octaves = Param(int, 4, min=1, max=16, help="number of scales")
    octave_scale = Param(float, 1.4, gt=1.0, max=4.0, advanced=True, help="size ratio between octaves")
    steps = Param(int, 10, min=1, max=10000, help="gradient steps per octave")
    step_size = Param(float, 0.005, gt=0.0, max=1.0, help="mean change per pixel and step (0..1 scale)")
    jitter = Param(int, 32, min=0, max=4096, advanced=True, help="largest random shift per step, pixels")
    blur = Param(float, 0.0, min=0.0, max=20.0, advanced=True, help="Gaussian blur of the gradient (sigma, pixels)")
    tile_size = Param(int, None, min=0, max=16384,
                      advanced=True, help="tile core size in pixels (0: never tile; default: tile only what exceeds memory_mb)")
    memory_mb = Param(int, None, min=64, max=1 << 20,
                      advanced=True, help="memory for one forward+backward pass, MiB (default: half of what is available when "
                           "the run starts); larger images are dreamed in exact tiles")
    carry = Param(float, 0.8, min=0.0, max=1.0,
                  help="in a frame sequence (a video): how much of the previous frame's dream, moved along the "
                       "optical flow, the next frame starts from; such a frame dreams (1 - carry) x steps, so the "
                       "dream keeps its strength and changes less; 0: every frame dreams afresh")
    frames = Param(int, 1, min=1, max=10000, help="frames of a zoom sequence (1: a single image)")
    zoom = Param(float, 1.05, min=1.0, max=4.0, help="zoom factor between frames")
    save_every = Param(int, 0, min=0, advanced=True, help="keep the image every N steps, as artifacts of the run "
                                           "(dreamkit run: OUTDIR/<name>.steps/)")
    fast = Param(bool, False, advanced=True, help="bfloat16 where it is measured to pay on this machine (slightly different "
                                    "result); elsewhere the same as fp32")

    def check(self) -> None:
        # (a plugin's backbone declares its default layers on the run's host: checked when the run starts)
        self._check_layer_weights(self.layers or DEFAULT_LAYERS.get(self.backbone))
        if self.guide is not None and self.classes:
            raise self.invalid("guide", "a guided dream cannot also target classes")
        if self.guide is not None and not Path(self.guide).is_file():
            raise self.invalid("guide", "no such file")

    # -- model and objective -------------------------------------------------------------

    def build_objective(self, device: torch.device, host: PluginHost | None = None
                        ) -> tuple[Objective, nn.Module, LazyGeometry]:
        """The objective, the feature extractor and its geometry for these parameters, with the
        weights of ``host`` (a run passes its own; default: the process-wide host)."""
        host = host or get_host()
        layers = self.dream_layers(host)
        self._check_layer_weights(layers)
        weights = self.layer_weights or [1.0] * len(layers)
        class_indices, logits_layer = self._classes(host)
        terms = [LayerTerm(layer, weight) for layer, weight in zip(layers, weights)]
        objective = Objective(terms, self.mode, classes=class_indices, logits_layer=logits_layer)
        try:
            extractor = shared_extractor(host, self.backbone, self.weights, tuple(objective.layers), self.fast,
                                   str(device))
        except LayerError as exc:
            raise ParameterError(f"effect 'deepdream': parameter 'layers' = {layers!r}: {exc}") from None
        if self.channels:
            paths = [extractor.paths[layer] for layer in layers]
            self._apply_channels(terms, feature_shapes(extractor, 64, 64), paths, layers)
        if self.guide is not None:
            objective.guide = self._guide_features(extractor, terms, device)
        layers = tuple(objective.layers)
        return objective, extractor, lazy_geometry(extractor, layers)

    def _check_layer_weights(self, layers: list[str] | None) -> None:
        if self.layer_weights is not None and layers is not None and len(self.layer_weights) != len(layers):
            raise self.invalid("layer_weights", f"give one weight per layer ({len(layers)} layers)")

    def dream_layers(self, host: PluginHost) -> list[str]:
        """The layers to amplify: as given, else what the backbone declares (a plugin's
        :class:`~dreamkit.models.Backbone` ``layers["deepdream"]``), else dreamkit's default for it."""
        if self.layers is not None:
            return list(self.layers)
        layers = declared_layers(self.backbone, "deepdream", host) or DEFAULT_LAYERS.get(self.backbone)
        if not layers:
            check_backbone(self.backbone, host)  # an unknown name is the first thing to say
            raise self.invalid("layers", f"backbone '{self.backbone}' has no default layers to amplify: give layers=[...] "
                                         f"(see `dreamkit layers {self.backbone}`)")
        return list(layers)

    def _classes(self, host: PluginHost) -> tuple[list[int], str | None]:
        if not self.classes:
            return [], None
        entry = host.weights.get(default_weights(self.backbone, host))
        categories = list(entry.categories or [])
        if not categories:
            raise self.invalid("classes", f"the weights of '{self.backbone}' have no class names")
        lookup = {name.lower(): index for index, name in enumerate(categories)}
        indices = []
        for name in self.classes:
            if name.lower() not in lookup:
                close = difflib.get_close_matches(name.lower(), list(lookup), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise self.invalid("classes", f"'{name}' is not one of the {len(categories)} class names{hint}")
            indices.append(lookup[name.lower()])
        return indices, _logits_layer(self.backbone, len(categories), host)

    def _apply_channels(self, terms: list[LayerTerm], shapes: dict[str, torch.Size], paths: list[str],
                        layers: list[str]) -> None:
        if not self.channels:
            return
        by_name = {**{t.layer: t for t in terms}, **{p: t for p, t in zip(paths, terms)}}
        for spec in self.channels:
            layer, _, number = spec.rpartition(":")
            targets = [by_name[layer]] if layer in by_name else terms if not layer else None
            if targets is None:
                raise self.invalid("channels", f"'{spec}' names layer '{layer}', which is not in layers {layers}")
            try:
                channel = int(number)
            except ValueError:
                raise self.invalid("channels", f"'{spec}' is not N or LAYER:N (N a channel number)") from None
            for term in targets:
                count = shapes[term.layer][1]
                if not 0 <= channel < count:
                    raise self.invalid("channels", f"channel {channel} is out of range for layer '{term.layer}' "
                                                   f"({count} channels: 0..{count - 1})")
                term.channels = sorted(set(term.channels or []) | {channel})

    def _guide_features(self, extractor: nn.Module, terms: list[LayerTerm], device: torch.device) -> dict[str, torch.Tensor]:
        guide = load_image(self.guide).to(device)
        scale = min(1.0, GUIDE_MAX_SIDE / max(guide.shape[-2:]))
        if scale < 1.0:
            size = (max(32, round(guide.shape[-2] * scale)), max(32, round(guide.shape[-1] * scale)))
            guide = torch.nn.functional.interpolate(guide, size=size, mode="bilinear", antialias=True)
        with torch.no_grad():
            features = extractor(guide)
        result = {}
        for term in terms:
            activation = features[term.layer]
            if term.channels is not None:
                activation = activation[:, term.channels]
            result[term.layer] = activation.flatten(2)[0] if activation.dim() == 4 else activation.reshape(-1, 1)
        return result

    # -- running -------------------------------------------------------------------------

    def settings(self) -> Settings:
        return Settings(octaves=self.octaves, octave_scale=self.octave_scale, steps=self.steps,
                        step_size=self.step_size, jitter=self.jitter, blur=self.blur, tile_size=self.tile_size,
                        memory_mb=self.memory_mb)

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor | list[torch.Tensor]:
        objective, extractor, geometry = self.build_objective(image.device, context.host)
        settings = self.settings()
        frames = []
        current, carried = self._carried(image, context)
        if carried:  # most of the dream is in the start already: add back only the part that faded
            settings = replace(settings, steps=max(1, math.ceil(self.steps * (1 - self.carry))))
        for frame in range(self.frames):
            if frame > 0:
                settings = self.settings()
                current = zoom(current, self.zoom)
            on_step = self._saver(context, frame) if self.save_every else None
            current, _ = dream(current, extractor, objective, geometry, settings, context.generator,
                               progress=context.progress, on_step=on_step)
            frames.append(current)
        return frames if self.frames > 1 else frames[0]

    def _carried(self, image: torch.Tensor, context: Any) -> tuple[torch.Tensor, bool]:
        """A sequence frame's start, and whether it carries a dream: the frame plus ``carry`` x what
        the dream added to the previous frame, moved along the optical flow, where the motion is
        trusted (so the hallucinations stay on their surfaces and move with them; what the motion
        uncovers starts fresh and fills in over the next frames)."""
        before, after = context.previous_input, context.previous_output
        if not self.carry or before is None or after is None or not before.shape == after.shape == image.shape:
            return image, False
        motion = Motion.between(before, image)
        added = motion.follow(after - before) * motion.trusted.to(image)[None, None]
        return (image + self.carry * added).clamp(0, 1), True

    def _saver(self, context: Any, frame: int):
        stem = Path(context.source).stem if context.source else "dream"
        counter = {"steps": 0}

        def save(image: torch.Tensor, record) -> None:
            counter["steps"] += 1
            if counter["steps"] % self.save_every == 0:
                context.save_artifact(f"{stem}-f{frame:04d}-o{record.octave + 1}-s{record.step + 1:04d}.png", image)

        return save


def _logits_layer(backbone: str, classes: int, host: PluginHost) -> str:
    """The module whose output is the class logits: the last Linear with one output per class."""
    model = build_backbone(backbone, device="meta", host=host)
    candidates = [path for path, module in model.named_modules()
                  if isinstance(module, nn.Linear) and module.out_features == classes]
    if not candidates:
        raise ParameterError(f"effect 'deepdream': backbone '{backbone}' has no layer of {classes} class logits")
    return candidates[-1]
