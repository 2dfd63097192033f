"""The Gatys loss and its exact gradient, in one piece or in tiles of any image size.

loss = style_weight · Σ_styles b_s Σ_layers w_l · mean((G_ls − T_ls)²) / n_ls
     + content_weight · Σ_layers w_l · mean((F_l − P_l)²) / m_l
     + image terms (total variation, temporal: :func:`image_terms`)

G_ls is the Gram matrix of layer l's activations over style s's region (its mask; the whole
image without masks), T_ls the style image's, b_s the blend weight; F_l and P_l are the image's
and the content's activations. With ``normalize`` each layer is divided by the size of its target
(n = mean(T²), m = mean(P²)), so every layer counts about equally whatever its activation scale.
With a ``temperature`` per layer the activations are first smoothed by a softmax over channels
(Wang et al., CVPR 2021): residual networks have peaky activations whose Gram matrices a few
channels dominate.

**Tiling is exact.** The content term is a sum over activations, like a dream's objective. The
Gram matrix is global, but it is a sum over activations too: pass 1 (no gradients) adds up each
tile's owned activations into G; then D = ∂loss/∂G is fixed and pass 2 back-propagates, tile by
tile, the linear surrogate Σ D ⊙ G_tile, whose gradient is exactly the tile's share of the whole
image's gradient. Summed over tiles it is the whole image's gradient (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dreamkit import ops
from dreamkit.tiling import Features, Geometry, LazyGeometry, Owned, Tile, feature_shapes, owned_regions

TEMPORAL_UNIT = 0.03  # the change (0..1 pixel scale) the temporal term is measured in


@dataclass
class StyleTarget:
    """One style: the Gram matrix of each style layer, the blend weight and the region (a mask at
    image size, 0..1, or ``None`` for the whole image)."""

    grams: dict[str, torch.Tensor]
    weight: float = 1.0
    mask: torch.Tensor | None = None


@dataclass
class LossParts:
    """The value of each part of the loss (already multiplied by its weight)."""

    style: float = 0.0
    content: float = 0.0
    image: float = 0.0

    @property
    def total(self) -> float:
        return self.style + self.content + self.image


@dataclass
class _Group:
    """Styles that share a region: one Gram matrix per layer, compared with the blended target."""

    target: dict[str, torch.Tensor]
    weight: float
    mask: torch.Tensor | None
    scale: dict[str, float] = field(default_factory=dict)  # per layer: mean(target²), or 1 without normalize
    layer_masks: dict[str, torch.Tensor] = field(default_factory=dict)  # per-activation weights, whole image
    mask_sums: dict[str, float] = field(default_factory=dict)


class StyleLoss:
    """The network part of the loss for one image size: content and style targets are set, then
    :meth:`value_and_grad` gives the loss and its gradient for any image of that size.

    ``style_layers`` and ``content_layers`` map layer names to weights; ``temperatures`` maps style
    layers to their softmax temperature (empty: no smoothing).
    """

    def __init__(self, extractor: torch.nn.Module, style_layers: dict[str, float], content_layers: dict[str, float],
                 *, style_weight: float, content_weight: float, temperatures: dict[str, float] | None = None,
                 normalize: bool = True) -> None:
        self.extractor = extractor
        self.style_layers = dict(style_layers)
        self.content_layers = dict(content_layers)
        self.style_weight = style_weight
        self.content_weight = content_weight
        self.temperatures = dict(temperatures or {})
        self.normalize = normalize
        self.groups: list[_Group] = []
        self.content: dict[str, torch.Tensor] = {}
        self._content_scale: dict[str, float] = {}
        self._shapes: dict[str, torch.Size] = {}

    # -- features ------------------------------------------------------------------------
    def style_features(self, layer: str, activation: torch.Tensor) -> torch.Tensor:
        """What the Gram matrix of ``layer`` is taken of: the activation, softmax-smoothed over
        channels when the layer has a temperature (a per-position map, so tiles stay exact)."""
        temperature = self.temperatures.get(layer)
        return torch.softmax(activation / temperature, dim=1) if temperature else activation

    def gram_targets(self, image: torch.Tensor, tiles: list[Tile], geometry: Geometry | LazyGeometry
                     ) -> dict[str, torch.Tensor]:
        """The style layers' Gram matrices of ``image`` (a style image), tile by tile if needed."""
        (sums,) = self._gram_sums(image, tiles, geometry, [None])
        shapes = feature_shapes(self.extractor, *image.shape[-2:])
        return {layer: sums[layer] / (shapes[layer][1] * max(shapes[layer][-2] * shapes[layer][-1], 1))
                for layer in self.style_layers}

    # -- targets -------------------------------------------------------------------------
    def set_targets(self, content: torch.Tensor, styles: list[StyleTarget], tiles: list[Tile],
                    geometry: Geometry | LazyGeometry) -> None:
        """Take the content's activations (whole image, assembled from tiles) and group the
        styles: unmasked styles share one region and blend into one target (the same gradient as
        summing their losses); each masked style has its own region."""
        height, width = content.shape[-2:]
        self._shapes = feature_shapes(self.extractor, height, width)
        self.content = {layer: content.new_zeros(self._shapes[layer]) for layer in self.content_layers}
        with torch.no_grad():
            for tile, features in _tile_features(self.extractor, content, tiles):
                owned = _owned(tile, features, geometry, height, width, len(tiles))
                for layer in self.content_layers:
                    region = owned.get(layer)
                    self.content[layer][(..., *_whole_region(tile, region, geometry, layer))] = _crop(features[layer], region)
        self._content_scale = {layer: mean_square(p) if self.normalize else 1.0 for layer, p in self.content.items()}
        self.groups = []
        unmasked = [s for s in styles if s.mask is None]
        total = sum(s.weight for s in styles) or 1.0
        if unmasked:
            weight = sum(s.weight for s in unmasked)
            blended = {layer: sum(s.weight * s.grams[layer] for s in unmasked) / (weight or 1.0)
                       for layer in self.style_layers}
            self.groups.append(_Group(blended, weight / total, None))
        for style in styles:
            if style.mask is not None:
                self.groups.append(_Group(style.grams, style.weight / total, style.mask))
        for group in self.groups:
            group.scale = {layer: mean_square(group.target[layer]) if self.normalize else 1.0
                           for layer in self.style_layers}
            if group.mask is None:
                continue
            for layer in self.style_layers:
                shape = self._shapes[layer]
                layer_mask = F.interpolate(group.mask[None, None], size=tuple(shape[-2:]), mode="area")[0, 0]
                group.layer_masks[layer] = layer_mask.to(content.dtype)
                group.mask_sums[layer] = float(layer_mask.sum())

    # -- loss and gradient ---------------------------------------------------------------
    def value_and_grad(self, image: torch.Tensor, tiles: list[Tile], geometry: Geometry | LazyGeometry
                       ) -> tuple[LossParts, torch.Tensor]:
        """The loss parts and the gradient with respect to ``image`` (exact, tiled or not)."""
        if len(tiles) > 1:
            return self._tiled(image, tiles, geometry)
        x = image.detach().requires_grad_()
        features = self.extractor(x)
        style = self._style_direct(features)
        content = self._content(features, {}, tiles[0], geometry)
        (grad,) = torch.autograd.grad(style + content, x)
        return LossParts(float(style.detach()), float(content.detach())), grad

    def _style_direct(self, features: Features) -> torch.Tensor:
        """One piece: the fused ``gram_mse_loss`` (one-GEMM backward). A mask m enters as
        √(m · N / Σm) on the activations, which makes their normalised Gram Σ m φφᵀ / (C Σm)."""
        value = features[next(iter(self.style_layers))].new_zeros(())
        for group in self.groups:
            for layer, weight in self.style_layers.items():
                phi = self.style_features(layer, features[layer])
                if group.mask is not None:
                    mask = group.layer_masks[layer]
                    phi = phi * (mask * (mask.numel() / max(group.mask_sums[layer], 1e-12))).sqrt()
                loss = ops.gram_mse_loss(phi, group.target[layer].to(phi.dtype))
                value = value + (self.style_weight * group.weight * weight / group.scale[layer]) * loss
        return value

    def _content(self, features: Features, owned: Owned, tile: Tile, geometry: Geometry | LazyGeometry) -> torch.Tensor:
        """The content term of the activations a tile owns (``owned`` empty: the whole image)."""
        value = features[next(iter(self.content_layers or self.style_layers))].new_zeros(())
        if not self.content_weight:
            return value
        for layer, weight in self.content_layers.items():
            region = owned.get(layer)
            whole = self.content[layer]
            diff = _crop(features[layer], region) - whole[(..., *_whole_region(tile, region, geometry, layer))]
            value = value + (self.content_weight * weight / (self._content_scale[layer] * whole.numel())) \
                * diff.square().sum()
        return value

    def _gram_sums(self, image: torch.Tensor, tiles: list[Tile], geometry: Geometry | LazyGeometry,
                   masks: list[dict[str, torch.Tensor] | None]) -> list[dict[str, torch.Tensor]]:
        """Σ φφᵀ over the owned activations of every tile (no gradients), one dict of unnormalised
        Gram matrices per region (``masks``: per-layer masks of the whole image, or None)."""
        height, width = image.shape[-2:]
        sums: list[dict[str, torch.Tensor]] = [{} for _ in masks]
        with torch.no_grad():
            for tile, features in _tile_features(self.extractor, image, tiles):
                owned = _owned(tile, features, geometry, height, width, len(tiles))
                for index, layer_masks in enumerate(masks):
                    for layer in self.style_layers:
                        phi = self._masked(layer_masks, layer, tile, owned.get(layer), features[layer], geometry)
                        gram = ops.gram_matrix(phi, normalize=False)[0]
                        sums[index][layer] = sums[index][layer] + gram if layer in sums[index] else gram
        return sums

    def _tiled(self, image: torch.Tensor, tiles: list[Tile], geometry: Geometry | LazyGeometry
               ) -> tuple[LossParts, torch.Tensor]:
        height, width = image.shape[-2:]
        masks = [group.layer_masks if group.mask is not None else None for group in self.groups]
        # Pass 1: every group's Gram matrix of the whole image, from the tiles' owned activations.
        grams = self._gram_sums(image, tiles, geometry, masks)
        # ∂loss/∂G for every group and layer, and the style loss itself.
        style_value = 0.0
        slopes = []
        for group, sums in zip(self.groups, grams):
            slope = {}
            for layer, weight in self.style_layers.items():
                count = self._gram_count(group, layer)
                diff = sums[layer] / count - group.target[layer].to(sums[layer].dtype)
                factor = self.style_weight * group.weight * weight / group.scale[layer]
                style_value += factor * float(diff.square().mean())
                slope[layer] = (2 * factor / diff.numel()) * diff / count
            slopes.append(slope)
        # Pass 2: each tile back-propagates its share: Σ D ⊙ G_tile (style) + its owned content.
        grad = torch.zeros_like(image)
        content_value = 0.0
        for tile in tiles:
            (y0, y1), (x0, x1) = tile.crop
            crop = image[..., y0:y1, x0:x1].detach().requires_grad_()
            features = self.extractor(crop)
            owned = owned_regions(tile, features, geometry, height, width)
            surrogate = crop.new_zeros(())
            for layer_masks, slope in zip(masks, slopes):
                for layer in self.style_layers:
                    phi = self._masked(layer_masks, layer, tile, owned.get(layer), features[layer], geometry)
                    surrogate = surrogate + (slope[layer] * ops.gram_matrix(phi, normalize=False)[0]).sum()
            content = self._content(features, owned, tile, geometry)
            content_value += float(content.detach())
            (tile_grad,) = torch.autograd.grad(surrogate + content, crop)
            grad[..., y0:y1, x0:x1] += tile_grad
        return LossParts(style_value, content_value), grad

    def _masked(self, layer_masks: dict[str, torch.Tensor] | None, layer: str, tile: Tile,
                region: tuple[slice, slice] | None, activation: torch.Tensor,
                geometry: Geometry | LazyGeometry) -> torch.Tensor:
        """The smoothed activations a tile owns, weighted by √mask (so their Gram is mask-weighted)."""
        phi = _crop(self.style_features(layer, activation), region)
        if layer_masks is None:
            return phi
        return phi * layer_masks[layer][_whole_region(tile, region, geometry, layer)].sqrt()

    def _gram_count(self, group: _Group, layer: str) -> float:
        """The normaliser C·N of a group's Gram matrix (N: its region's activations)."""
        shape = self._shapes[layer]
        positions = group.mask_sums[layer] if group.mask is not None else shape[-2] * shape[-1]
        return shape[1] * max(positions, 1e-12)


#: The least a layer's term is divided by under ``normalize`` (:func:`mean_square`).
SCALE_FLOOR = 1e-12


def mean_square(tensor: torch.Tensor) -> float:
    """mean(tensor²), at least :data:`SCALE_FLOOR`: what a layer's term is divided by under ``normalize``. Real
    targets reach the floor: the Gram matrices of softmax-smoothed deep layers are tiny (MobileNetV2's
    features.14 with ihc.png: 6e-14), which the floor then weights down. Training a feed-forward
    network (:mod:`.training`) divides by the same, so that it learns this loss and no other."""
    return max(float(tensor.square().mean()), SCALE_FLOOR)


def _tile_features(extractor: torch.nn.Module, image: torch.Tensor, tiles: list[Tile]):
    for tile in tiles:
        (y0, y1), (x0, x1) = tile.crop
        yield tile, extractor(image[..., y0:y1, x0:x1])


def _owned(tile: Tile, features: Features, geometry: Geometry | LazyGeometry, height: int, width: int,
           count: int) -> Owned:
    return owned_regions(tile, features, geometry, height, width) if count > 1 else {}


def _crop(activation: torch.Tensor, region: tuple[slice, slice] | None) -> torch.Tensor:
    return activation if region is None else activation[..., region[0], region[1]]


def _whole_region(tile: Tile, region: tuple[slice, slice] | None, geometry: Geometry | LazyGeometry,
                  layer: str) -> tuple[slice, slice]:
    """A tile's owned activations of ``layer`` (``region``, crop coordinates) in the whole image's
    grid; everything when the image is one piece (no region: the geometry is never measured)."""
    if region is None:
        return slice(None), slice(None)
    stride = geometry.strides[layer]
    offsets = (tile.crop[0][0] // stride, tile.crop[1][0] // stride)
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(region, offsets))


def add_image_terms(image: torch.Tensor, grad: torch.Tensor, tv_weight: float,
                    temporal: tuple[torch.Tensor, torch.Tensor] | None, temporal_weight: float) -> float:
    """Add the gradient of the terms on the image itself to ``grad`` (in place) and return their
    value: total variation (mean squared difference of neighbouring pixels) and, for a frame of a
    sequence, ``temporal = (previous result, mask)``: the mean squared change from the previous
    frame's result where the mask (pixels whose input did not change) is 1, in units of
    ``TEMPORAL_UNIT`` (a weight of 1 costs a held pixel moved by 0.03 as much as the whole style
    loss at weight 1 costs a layer 100% off its target).

    The gradients are written out rather than taken by autograd: one image-sized temporary at a
    time instead of four, which matters at 4096x4096 (200 MB each)."""
    value = 0.0
    if tv_weight:
        for dim in (-2, -1):
            size = image.shape[dim]
            if size < 2:
                continue
            diff = image.narrow(dim, 1, size - 1) - image.narrow(dim, 0, size - 1)
            value += tv_weight * float(diff.square().mean())
            diff.mul_(2 * tv_weight / diff.numel())
            grad.narrow(dim, 1, size - 1).add_(diff)
            grad.narrow(dim, 0, size - 1).sub_(diff)
            del diff
    if temporal is not None and temporal_weight:
        previous, mask = temporal
        change = (image - previous).mul_(mask / TEMPORAL_UNIT)  # mask is 0 or 1: mask² = mask
        value += temporal_weight * float(change.square().mean())
        grad.add_(change, alpha=2 * temporal_weight / (change.numel() * TEMPORAL_UNIT))
    return value
