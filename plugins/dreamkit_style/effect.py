"""The ``style`` effect: parameters, checks, the coarse-to-fine loop, colour, masks and sequences."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dreamkit import Effect, Param
from dreamkit.errors import DreamkitError, ParameterError
from dreamkit.flow import Motion
from dreamkit.io import load_image, open_image
from dreamkit.models import LayerError, check_backbone, declared_layers, shared_extractor, torchvision_backbone_names
from dreamkit.plugins import PluginHost
from dreamkit.tiling import choose_tile_size, lazy_geometry, memory_budget, plan_tiles

from .colour import as_luminance_image, in_style_palette, match_colour, palette_axes, with_chroma
from .loss import LossParts, StyleLoss, StyleTarget, add_image_terms
from .optimize import Safeguards, optimise, smooth_steps

log = logging.getLogger("dreamkit")

#: Layers used when none are given: (style layers, content layers). MobileNetV2's block outputs
#: (strides 4, 8, 16, 16, 32); VGG's are Gatys et al.'s. MobileNetV2's content needs a shallow
#: layer beside a deep one: its stride-16 features discard the picture's layout (reconstructed from
#: noise with the content term alone, low-passed luminance correlation with the photo: features.11
#: 0.58/0.39 on chelsea/rocket, features.4 0.80/0.71, features.2 0.98/0.94), so from any start but
#: the photo itself the photo never came back (0.05 from noise; with features.2: 0.53, faces stay
#: legible from the photo too; with the smoothed noise start of :meth:`Style._initial` 0.70).

DEFAULT_LAYERS = {
    "mobilenet_v2": (["features.2", "features.4", "features.7", "features.11", "features.14"], ["features.2", "features.11"]),
    "vgg19": (["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], ["relu4_2"]),
    "vgg16": (["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], ["relu4_2"]),
}
#: Backbones with smooth, non-residual activations: plain Gatys works there, no smoothing by default.
UNSMOOTHED = ("vgg",)
SMOOTHING = 4.0  # default softmax temperature, in units of the style activations' std (Wang et al. 2021)
#: Convolutions at this stride or coarser pad by replicating their edge: zero borders on the deep,
#: coarse maps made hot spots in flat corners that the optimiser filled with noise (see
#: :func:`dreamkit.models.features.replicate_edges`; astronaut x gravel at 512 px: the top-right
#: corner's horizontal pixel differences 0.123 against 0.045 over the image; replicated 0.037).
REPLICATE_FROM_STRIDE = 16
#: ... on images whose shorter side spans at least this many cells at that stride (80 px): on the
#: 4-cell maps of a 64 px image most cells are edge cells, and replicating them let the style
#: override the layout (chelsea x hubble at 64 px, Adam: luminance correlation with the photo 0.86,
#: zero edges 0.98); at 85 px (rocket at 128 px) replicated edges already cleaned a corner blotch.
REPLICATE_MIN_CELLS = 5
TEMPERATURE_SIDE = 512  # temperatures are measured on the style images at about this size
MIN_SIDE = 64  # coarser scales than this are skipped
CHANGED = 0.03  # a pixel whose input moved more than this (0..1, any channel) is not held by the temporal term


@dataclass(frozen=True)
class Record:
    """The loss parts after one iteration at one scale (0: the coarsest)."""

    scale: int
    iteration: int
    loss: LossParts


class Style(Effect):
    """Neural style transfer (Gatys, Ecker, Bethge 2016) from one or more style images.

    The image is optimised so that its Gram matrices (the style) match the style images' and its
    deeper activations (the content) match the original's, coarse to fine. Blend weights mix
    several styles; masks give each style a region; ``color`` keeps the content's colours
    (luminance-only transfer or colour matching, Gatys et al. 2017). Images of any size are
    stylised in exact tiles; the frames of a sequence start from the previous result and a
    temporal term keeps what did not change stable.
    """

    name = "style"
    sequential = True  # a frame starts from the previous frame's result
    summary = "Neural style transfer (Gatys): blended styles, colour control, masks, exact tiles, sequences."
    #: Starting points offered by the web page and `dreamkit effects` (the same keys in each).
    presets = {
        "faithful": {"content_weight": 5.0, "style_weight": 30.0, "iterations": 100},
        "classic": {"content_weight": 1.0, "style_weight": 100.0, "iterations": 100},  # the defaults
        "painterly": {"content_weight": 0.5, "style_weight": 300.0, "iterations": 150},
    }
    style = Param(list, None, item=str, resource="image", help="style image(s)")
    style_weights = Param(list, None, item=float, per_item_of="style", help="blend weight of each style (default: equal)")
    style_scale = Param(float, None, min=0.05, max=8.0,
                        help="style image size relative to the output (longest side); default: the style at its "
                             "own size, shrunk to the output's if larger (its patterns keep their size in pixels)")
    masks = Param(list, None, item=str, resource="image",
                  help="one mask image per style (white: where that style goes); pixels no mask covers keep the content")
    backbone = Param(str, "mobilenet_v2", advanced=True, help="backbone network (its weights must be available)")
    weights = Param(str, "default", resource="file", words=("default", "random"),
                    advanced=True, help="'default', a weights key, or a file path")
    style_layers = Param(list, None, item=str, advanced=True, help="layers whose Gram matrices are matched (default: per backbone)")
    style_layer_weights = Param(list, None, item=float, advanced=True, help="one weight per style layer (default: 1 each)")
    content_layers = Param(list, None, item=str, advanced=True, help="layers whose activations are kept (default: per backbone)")
    content_layer_weights = Param(list, None, item=float, advanced=True, help="one weight per content layer (default: 1 each)")
    style_weight = Param(float, 100.0, min=0.0, help="weight of the style loss")
    content_weight = Param(float, 1.0, min=0.0, help="weight of the content loss")
    tv_weight = Param(float, 20.0, min=0.0, advanced=True, help="weight of the total-variation loss (against the pixel grid of strided networks)")
    smoothing = Param(float, None, min=0.0,
                      advanced=True, help="softmax temperature before the Gram matrices, x the style activations' std "
                           "(0: plain Gatys; default: 4, or 0 for VGG)")
    normalize = Param(bool, True, advanced=True, help="divide each layer's loss by the size of its target (layers count equally)")
    color = Param(str, "style", choices=("style", "luminance", "match"),
                  help="style: the style's colours (the photo, recoloured to the style's palette, is the start); "
                       "luminance: transfer luminance only, keep the content's "
                       "colours; match: first match the style's colours to the content's")
    init = Param(str, "content", resource="image", words=("content", "noise"),
                 advanced=True, help="start from 'content', 'noise', or an image file")
    optimizer = Param(str, "lbfgs", choices=("lbfgs", "adam"), advanced=True, help="optimiser")
    iterations = Param(int, 100, min=1, max=100000, help="iterations at each scale")
    learning_rate = Param(float, 0.02, gt=0.0, max=1.0, advanced=True, help="Adam's step size (0..1 pixel scale)")
    history = Param(int, 20, min=1, max=1000, advanced=True, help="L-BFGS history size (capped by memory_mb for large images)")
    scales = Param(int, None, min=1, max=8,
                   advanced=True, help="coarse-to-fine scales, each twice the size of the one before (default: halve while the "
                        "coarser image stays at least as large as the network's receptive field)")
    temporal_weight = Param(float, 10.0, min=0.0,
                            advanced=True, help="in a frame sequence: weight of staying close to the previous frame's result "
                                 "(moved along the motion with flow) where it is held (see flow)")
    flow = Param(bool, True, advanced=True,
                 help="in a frame sequence: follow the motion (OpenCV's optical flow): each frame "
                      "starts from the previous result moved along it; false: the result stays in place")
    long_term = Param(int, 0, min=0, max=3,
                      advanced=True, help="in a frame sequence with flow: also hold each pixel to the result of 2, 4 "
                           "and 8 frames back (the first N of them) where it was last visible, not only the previous "
                           "frame's (Ruder et al.'s long-term consistency: what something passing in front hid comes "
                           "back as it was); 0: the previous frame only")
    tile_size = Param(int, None, min=0, max=16384,
                      advanced=True, help="tile core size in pixels (0: never tile; default: tile only what exceeds memory_mb)")
    memory_mb = Param(int, None, min=64, max=1 << 20,
                      advanced=True, help="memory for one forward+backward pass, MiB (default: half of what is available when "
                           "the run starts); larger images are stylised in exact tiles")
    save_every = Param(int, 0, min=0, advanced=True, help="keep the image every N iterations, as artifacts of the run "
                                           "(dreamkit run: OUTDIR/<name>.steps/)")
    fast = Param(bool, False, advanced=True, help="bfloat16 where it is measured to pay on this machine; elsewhere fp32")

    def check(self) -> None:
        if not self.style:
            raise self.invalid("style", "give at least one style image, e.g. style=painting.jpg")
        for path in self.style:
            _check_image("style", path)
        self._check_same_length("style_weights", self.style_weights, "style image")
        if self.style_weights is not None:
            if any(w < 0 for w in self.style_weights) or not any(w > 0 for w in self.style_weights):
                raise self.invalid("style_weights", "weights must be >= 0 and at least one > 0")
        self._check_same_length("masks", self.masks, "style image")
        for path in self.masks or []:
            _check_image("masks", path)
        for name in ("style_layer_weights", "content_layer_weights"):
            values = getattr(self, name)
            if values is not None and any(w < 0 for w in values):
                raise self.invalid(name, "weights must be >= 0")
        if self.backbone in DEFAULT_LAYERS or (self.style_layers is not None and self.content_layers is not None) \
                or self.backbone in torchvision_backbone_names():
            # (a plugin's backbone declares its layers on the run's host: checked when the run starts)
            style_layers, content_layers = self.layer_names()
            self._check_same_length("style_layer_weights", self.style_layer_weights, "style layer", len(style_layers))
            self._check_same_length("content_layer_weights", self.content_layer_weights, "content layer",
                                    len(content_layers))
        if self.init not in ("content", "noise"):
            if not Path(self.init).is_file():
                raise self.invalid("init", "expected 'content', 'noise' or an existing image file")
            _check_image("init", self.init)

    def _check_same_length(self, name: str, values: list | None, what: str, count: int | None = None) -> None:
        count = len(self.style) if count is None else count
        if values is not None and len(values) != count:
            raise self.invalid(name, f"give one value per {what} ({count} {what}{'s' if count != 1 else ''})")

    def layer_names(self, host: PluginHost | None = None) -> tuple[list[str], list[str]]:
        """The style and content layers: as given, else what the backbone declares (a plugin's
        :class:`~dreamkit.models.Backbone` ``layers["style"]``/``["content"]``, looked up in
        ``host``), else dreamkit's defaults for it."""
        declared = (declared_layers(self.backbone, "style", host), declared_layers(self.backbone, "content", host)) \
            if host is not None else (None, None)
        defaults = DEFAULT_LAYERS.get(self.backbone) or (declared if None not in declared else None)
        if defaults is None and (self.style_layers is None or self.content_layers is None):
            if host is not None:
                check_backbone(self.backbone, host)  # an unknown name is the first thing to say
            raise self.invalid("backbone", "this backbone declares no default layers: give style_layers and "
                                           f"content_layers (see `dreamkit layers {self.backbone}`)")
        style = self.style_layers if self.style_layers is not None else defaults[0]
        content = self.content_layers if self.content_layers is not None else defaults[1]
        if not style:
            raise self.invalid("style_layers", "give at least one style layer")
        return list(style), list(content)

    # -- network -------------------------------------------------------------------------
    def network(self, device: torch.device, host: PluginHost, size: tuple[int, int] | None = None
                ) -> tuple[torch.nn.Module, dict[str, float], dict[str, float]]:
        """The feature extractor for images of ``size`` (H, W; None: a large one) and the style
        and content layers with their weights. Its deep convolutions replicate their edges
        (``REPLICATE_FROM_STRIDE``) unless the image is too small for it (``REPLICATE_MIN_CELLS``)."""
        style, content = self.layer_names(host)
        self._check_same_length("style_layer_weights", self.style_layer_weights, "style layer", len(style))
        self._check_same_length("content_layer_weights", self.content_layer_weights, "content layer", len(content))
        layers = tuple(dict.fromkeys(style + content))
        try:
            replicate = size is None or min(size) >= REPLICATE_FROM_STRIDE * REPLICATE_MIN_CELLS
            extractor = shared_extractor(host, self.backbone, self.weights, layers, self.fast, str(device),
                                         replicate_from_stride=REPLICATE_FROM_STRIDE if replicate else None)
        except LayerError as exc:
            bad = "style_layers" if any(layer in str(exc) for layer in style) else "content_layers"
            raise ParameterError(f"effect 'style': parameter '{bad}' = {getattr(self, bad) or style + content!r}: "
                                 f"{exc}") from None
        style_weights = self.style_layer_weights or [1.0] * len(style)
        content_weights = self.content_layer_weights or [1.0] * len(content)
        return extractor, dict(zip(style, style_weights)), dict(zip(content, content_weights))

    def smoothing_factor(self) -> float:
        if self.smoothing is not None:
            return self.smoothing
        return 0.0 if self.backbone.startswith(UNSMOOTHED) else SMOOTHING

    # -- inputs --------------------------------------------------------------------------
    def style_images(self, device: torch.device) -> list[torch.Tensor]:
        """The style images (1×3×H×W, 0..1) on ``device``."""
        return [image.to(device) for image in self._decoded("style", self.style)]

    def mask_images(self, height: int, width: int, device: torch.device) -> list[torch.Tensor | None]:
        """One 0..1 mask (H × W) per style, resized to the image if it has the image's shape."""
        if not self.masks:
            return [None] * len(self.style)
        masks = []
        for path, decoded in zip(self.masks, self._decoded("masks", self.masks)):
            mask = decoded.to(device).mean(1, keepdim=True)
            mh, mw = mask.shape[-2:]
            if (mh, mw) != (height, width):
                if abs(mh / mw - height / width) > 0.01 * height / width:
                    raise ParameterError(f"effect 'style': parameter 'masks': mask {path!r} is {mw}x{mh}, but the image "
                                         f"is {width}x{height}; a mask must have the image's size (or its shape)")
                mask = F.interpolate(mask, size=(height, width), mode="bilinear", antialias=True)
            masks.append(mask[0, 0].clamp(0, 1))
        return masks

    def _decoded(self, param: str, paths: list[str]) -> list[torch.Tensor]:
        """The images of ``param``, decoded once per effect: every frame of a sequence reuses them
        (the parameters of an effect never change)."""
        cache = self.__dict__.setdefault("_decoded_images", {})
        if param not in cache:
            images = []
            for path in paths:
                try:
                    images.append(load_image(path))
                except DreamkitError as exc:
                    raise ParameterError(f"effect 'style': parameter '{param}': cannot read {path!r}: {exc}") from None
            cache[param] = images
        return cache[param]

    # -- running -------------------------------------------------------------------------
    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        return self.stylise(image, context)[0]

    def stylise(self, image: torch.Tensor, context: Any) -> tuple[torch.Tensor, list[Record]]:
        """The stylised image and the loss of every iteration (what :meth:`apply` runs)."""
        device = image.device
        extractor, style_layers, content_layers = self.network(device, context.host)
        masks = self.mask_images(*image.shape[-2:], device)
        styles, content, loss = self._loss_for(image, extractor, style_layers, content_layers)
        geometry = lazy_geometry(extractor, list(dict.fromkeys([*style_layers, *content_layers])))
        previous = self._previous(context, image)
        count = 1 if previous else self.scales or _scales_for(max(image.shape[-2:]), geometry)  # a sequence's
        sizes = _scale_sizes(*image.shape[-2:], count)  # later frames: full size
        # With the style's colours, the photo and noise start in the style's palette (an init image
        # is taken as it is), and the steps stay on the palette's colour axes.
        def in_palette(picture: torch.Tensor) -> torch.Tensor:
            return in_style_palette(picture, styles, self._blend(), masks) if self.color == "style" else picture

        start = in_palette(content)
        if previous:
            current = _anchored_start(previous, start)
        elif self.init == "content":
            current = start
        else:
            initial = self._initial(content, context.generator)
            current = in_palette(initial) if self.init == "noise" else initial
        axes = palette_axes(styles, self._blend())
        history: list[Record] = []
        scale_records: list[dict[str, Any]] = []
        budget = memory_budget(device, self.memory_mb)
        bar = context.progress(self.iterations * len(sizes), "style")
        with bar as tick:
            for index, size in enumerate(sizes):
                current = _resize(current, size)
                target = _resize(content, size)
                loss.extractor = self.network(device, context.host, size)[0]
                core = choose_tile_size(extractor, *size, self.tile_size, budget, geometry)
                tiles = plan_tiles(*size, core, geometry)
                if len(tiles) > 1:
                    log.info("style: %dx%d in %d tiles of %d px (a pass may use %d MiB: %s)", size[1], size[0],
                             len(tiles), core, budget // 2**20,
                             "memory_mb" if self.memory_mb else "half the available memory")
                targets = [StyleTarget(self._grams(loss, s, self._style_ratio(s, image), size, geometry, budget), w,
                                       None if m is None else _resize_mask(m, size))
                           for s, w, m in zip(styles, self._blend(), masks)]
                loss.set_targets(target, targets, tiles, geometry)

                def evaluate(x: torch.Tensor) -> tuple[LossParts, torch.Tensor]:
                    parts, grad = loss.value_and_grad(x, tiles, geometry)
                    parts.image = add_image_terms(x, grad, self.tv_weight, previous, self.temporal_weight)
                    return parts, grad

                safeguards = Safeguards()
                current = optimise(current, evaluate, method=self.optimizer, iterations=self.iterations,
                                   learning_rate=self.learning_rate, history=self._history(size, budget),
                                   on_iteration=self._reporter(tick, context, index, history,
                                                               image if self.color == "luminance" else None,
                                                               len(tiles)),
                                   safeguards=safeguards, smooth=True, colour_axes=axes)
                scale_records.append(self._scale_record(size, tiles, core, safeguards, history))
        context.add_result({"scales": scale_records})
        return (with_chroma(current, image) if self.color == "luminance" else current), history

    def _loss_for(self, photo: torch.Tensor, extractor: torch.nn.Module, style_layers: dict[str, float],
                  content_layers: dict[str, float]) -> tuple[list[torch.Tensor], torch.Tensor, StyleLoss]:
        """For ``photo``: the style images as the colour mode uses them, the content target, and
        the loss (its targets not set yet)."""
        styles = self.style_images(photo.device)
        content = photo
        if self.color == "match":
            styles = [match_colour(s, photo) for s in styles]
        elif self.color == "luminance":
            styles = [as_luminance_image(s, photo) for s in styles]
            content = as_luminance_image(photo)
        loss = StyleLoss(extractor, style_layers, content_layers, style_weight=self.style_weight,
                         content_weight=self.content_weight, normalize=self.normalize,
                         temperatures=self._temperatures(extractor, styles, style_layers))
        return styles, content, loss

    def evaluate(self, image: torch.Tensor, photo: torch.Tensor, host: PluginHost) -> LossParts:
        """This effect's loss (style and content parts; no image terms) of ``image`` as a
        stylisation of ``photo``, at their size: the measure its optimiser minimises at the last
        scale, for comparing results made any other way (``bench/fast_style.py``)."""
        device = photo.device
        size = tuple(photo.shape[-2:])
        extractor, style_layers, content_layers = self.network(device, host, size)
        styles, content, loss = self._loss_for(photo, extractor, style_layers, content_layers)
        if self.color == "luminance":
            image = as_luminance_image(image)
        geometry = lazy_geometry(extractor, list(dict.fromkeys([*style_layers, *content_layers])))
        budget = memory_budget(device, self.memory_mb)
        tiles = plan_tiles(*size, choose_tile_size(extractor, *size, self.tile_size, budget, geometry), geometry)
        masks = self.mask_images(*size, device)
        loss.set_targets(content, [StyleTarget(self._grams(loss, s, self._style_ratio(s, photo), size, geometry, budget), w,
                                               None if m is None else _resize_mask(m, size))
                                   for s, w, m in zip(styles, self._blend(), masks)], tiles, geometry)
        return loss.value_and_grad(image.to(device), tiles, geometry)[0]

    def _scale_record(self, size: tuple[int, int], tiles: list, core: int, safeguards: Safeguards,
                      history: list[Record]) -> dict[str, Any]:
        """What the output's record says of one scale: its size, whether it was tiled, the loss
        before and after, and what the optimiser's safeguards did (warned when they acted: a run
        that had to be rescued says so)."""
        losses = [round_figure(r.loss.total) for r in history[-self.iterations:] if math.isfinite(r.loss.total)]
        if safeguards.restarts or safeguards.non_finite:  # a loss that blew up is worth a warning
            log.log(logging.WARNING if safeguards.non_finite else logging.INFO,
                    "style: at %dx%d the optimiser had to recover (%s); the result is the best point it evaluated",
                    size[1], size[0], ", ".join(f"{k} {v}" for k, v in safeguards.as_record().items()))
        return {"size": [size[1], size[0]], "tiles": len(tiles), "tile_size": core if len(tiles) > 1 else None,
                "loss_start": losses[0] if losses else None, "loss_end": min(losses) if losses else None,
                **safeguards.as_record()}

    def _blend(self) -> list[float]:
        return self.style_weights or [1.0] * len(self.style)

    def _temperatures(self, extractor: torch.nn.Module, styles: list[torch.Tensor], layers: dict[str, float]
                      ) -> dict[str, float]:
        """Each style layer's softmax temperature: the smoothing factor times the standard deviation
        of the style images' activations (measured once, on the styles at about 512 px)."""
        factor = self.smoothing_factor()
        if not factor:
            return {}
        stds: dict[str, list[float]] = {layer: [] for layer in layers}
        with torch.no_grad():
            for style in styles:
                scale = min(1.0, TEMPERATURE_SIDE / max(style.shape[-2:]))
                small = _resize(style, (max(MIN_SIDE, round(style.shape[-2] * scale)),
                                        max(MIN_SIDE, round(style.shape[-1] * scale))))
                features = extractor(small)
                for layer in layers:
                    stds[layer].append(float(features[layer].float().std()))
        return {layer: factor * max(sum(values) / len(values), 1e-6) for layer, values in stds.items()}

    def _style_ratio(self, style: torch.Tensor, output: torch.Tensor) -> float:
        """The style image's longest side relative to the output's: ``style_scale``, else the style
        at its own resolution, shrunk (never enlarged) to the output. Enlarging a 512 px style to a
        1024 px output doubled its patterns and faded them (mean change from the photo 0.050 at
        1024 px vs 0.078 at 384, astronaut x ihc)."""
        if self.style_scale is not None:
            return self.style_scale
        return min(1.0, max(style.shape[-2:]) / max(output.shape[-2:]))

    def _grams(self, loss: StyleLoss, style: torch.Tensor, ratio: float, size: tuple[int, int], geometry,
               budget: int) -> dict[str, torch.Tensor]:
        """The style's Gram targets at one scale: the style resized to ``ratio`` x the scale's
        longest side (so coarse scales see the same pattern size relative to the image)."""
        scale = ratio * max(size) / max(style.shape[-2:])
        style_size = (max(MIN_SIDE // 2, round(style.shape[-2] * scale)), max(MIN_SIDE // 2, round(style.shape[-1] * scale)))
        resized = _resize(style, style_size)
        tiles = plan_tiles(*style_size, choose_tile_size(loss.extractor, *style_size, self.tile_size, budget, geometry),
                           geometry)
        return loss.gram_targets(resized, tiles, geometry)

    def _history(self, size: tuple[int, int], budget: int) -> int:
        """L-BFGS keeps two image-sized vectors per history entry: at most half of the pass's
        memory ``budget`` (bytes, :func:`~dreamkit.tiling.memory_budget`)."""
        per_entry = 2 * 3 * size[0] * size[1] * 4
        return max(2, min(self.history, budget // 2 // per_entry))

    def _initial(self, content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The start given by ``init`` other than the content: noise or an image file."""
        if self.init == "noise":
            # Through the step filter: L-BFGS steps have no 2-pixel component, so none may be in the
            # start (white noise kept its own, and the photo came back half as far: 0.28 vs 0.55).
            noise = torch.rand(content.shape, generator=generator, dtype=content.dtype)
            return smooth_steps(noise - 0.5).add_(0.5).clamp_(0, 1).to(content.device)
        start = load_image(self.init).to(content.device)
        return as_luminance_image(start) if self.color == "luminance" else start

    def remembered_frames(self) -> int:
        """The previous frame, and with ``long_term`` N up to 2**N frames back."""
        return 2 ** self.long_term if self.flow else 1

    def _previous(self, context: Any, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For a frame after the first of a sequence: the previous frame's result (the start, and
        what the temporal term holds to) and the mask of the pixels it holds. With ``flow`` the
        result is moved along the optical flow first, and a pixel is held where the motion is
        trusted (not occluded, not on a motion boundary) and its input, followed along the
        motion, did not change; without, the result stays in place and a pixel is held where its
        input did not change. With ``long_term`` the results 2, 4, 8 frames back are moved and
        held the same way, each pixel to the most recent of them where it was held (Ruder et al.'s
        long-term weights: max(0, held_j - the sum of the more recent ones' held)): one target, the
        held results' weighted mean, and one mask, their weights' sum."""
        before, after = context.previous_input, context.previous_output
        if before is None or after is None or before.shape != image.shape or after.shape != image.shape:
            return None
        target, weight = self._held(before, after, image)
        earlier = context.earlier[1:] if context.earlier and context.earlier[0][0] is before else ()
        for frames_back in [2 ** k for k in range(1, self.long_term + 1)] if self.flow else []:
            if frames_back > len(earlier) + 1 or earlier[frames_back - 2][0].shape != image.shape:
                break
            result, held = self._held(*earlier[frames_back - 2], image)
            share = (held - weight).clamp_(min=0)  # pixels the more recent frames did not hold
            target = torch.where(share > 0, (target * weight + result * share) / (weight + share), target)
            weight = weight + share
        return (as_luminance_image(target) if self.color == "luminance" else target), weight

    def _held(self, before: torch.Tensor, after: torch.Tensor,
              image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An earlier frame's result as it lines up with ``image`` (moved along the motion with
        ``flow``), and where it may hold (trusted motion, the followed input unchanged)."""
        if self.flow:
            motion = Motion.between(before, image)
            after, before = motion.follow(after), motion.follow(before)
            trusted = motion.trusted.to(image)[None, None]
        else:
            trusted = torch.ones_like(image[:, :1])
        return after, ((image - before).abs().amax(1, keepdim=True) <= CHANGED).to(image.dtype) * trusted

    def _reporter(self, tick: Any, context: Any, scale: int, history: list[Record], chroma_source: torch.Tensor | None,
                  tiles: int):
        stem = Path(context.source).stem if context.source else "style"

        def shown(x: Any) -> torch.Tensor:  # the optimiser may hand a function making the image
            image = x() if callable(x) else x
            return with_chroma(image, chroma_source) if chroma_source is not None else image.clamp(0, 1)

        def report(iteration: int, x: torch.Tensor, parts: LossParts) -> None:
            history.append(Record(scale, iteration, parts))
            tick.show(style=parts.style, content=parts.content, **({"tiles": tiles} if tiles > 1 else {}))
            tick.update(1)
            tick.preview(lambda: shown(x))  # made only if the front end shows it now
            if self.save_every and (iteration + 1) % self.save_every == 0:
                context.save_artifact(f"{stem}-f{context.frame_index:04d}-s{scale + 1}-i{iteration + 1:05d}.png", shown(x))

        return report


def round_figure(value: float) -> float:
    """``value`` to 6 significant digits (a record is read by people)."""
    return float(f"{value:.6g}")


def _anchored_start(previous: tuple[torch.Tensor, torch.Tensor], content: torch.Tensor) -> torch.Tensor:
    """A sequence frame's start: the previous result where the input did not change, the new
    frame's content where it did (so what moved starts where it now is, not where it was)."""
    result, unchanged = previous
    return torch.lerp(content, result, unchanged)


def _check_image(param: str, path: str) -> None:
    """The file opens as an image (its header: cheap), or a ParameterError naming ``param``."""
    try:
        open_image(path).close()
    except DreamkitError as exc:
        raise ParameterError(f"effect 'style': parameter '{param}': {exc}") from None


#: The most scales the default chooses (a 4096 px image: 1024, 2048, 4096 with MobileNetV2).
MAX_AUTO_SCALES = 4


def _scales_for(side: int, geometry: Any) -> int:
    """The default number of scales for an output whose longest side is ``side``: halve while the
    coarser image is still at least the receptive field of the deepest layer (its diameter,
    measured once per machine: 299 px for MobileNetV2, 171 for VGG-19). Below that the network
    already sees the whole image at the finer scale, so a coarser pass adds no context, only a
    small image to go wrong (a 128 px pass under a 256 px output diverged before L-BFGS checked its
    steps); above it the coarse pass lays out what is larger than the network can see."""
    diameter = 2 * geometry.radius + 1
    count = 1
    while count < MAX_AUTO_SCALES and side / 2**count >= max(diameter, MIN_SIDE):
        count += 1
    return count


def _scale_sizes(height: int, width: int, scales: int) -> list[tuple[int, int]]:
    """Sizes from coarse to fine, halving from the full size; scales below MIN_SIDE are skipped."""
    sizes = [(height, width)]
    for k in range(1, scales):
        size = (round(height / 2**k), round(width / 2**k))
        if min(size) < MIN_SIDE:
            break
        sizes.append(size)
    return sizes[::-1]


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2]
    return F.interpolate(image, size=size, mode="bilinear", antialias=shrinking, align_corners=False).clamp(0, 1)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return mask if tuple(mask.shape) == tuple(size) else F.interpolate(mask[None, None], size=size, mode="area")[0, 0]
