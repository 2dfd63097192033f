"""Exact tiling: any image size through a network with a bounded memory footprint and no seams.

The image is cut into cores (a partition of the image) and each core is extended by a halo of at
least the receptive-field radius of the deepest objective layer: the crop the network sees. Every
activation is *owned* by the tile whose core contains it, and each tile back-propagates only the
objective of its owned activations. Crops start on multiples of the layers' total stride, so a
crop's activation grid is a sub-grid of the whole image's; with the halo, an owned activation's
receptive field lies inside the crop (or at the real image border), so it has exactly the value it
would have in the whole image. The objective is a sum over activations, so the tiles' input
gradients, added where crops overlap, are the whole image's gradient (up to float rounding):
tiled and untiled results agree, and there is no seam to hide. An objective that is not a sum over
activations (a Gram matrix) is first accumulated over the tiles' owned activations, then each tile
back-propagates the gradient of the whole (``style`` does this).

Layers without a spatial grid (a classifier's logits) cannot be partitioned: each tile then
contributes its own value (an approximation, the usual one for tiled class visualisation).

Used by ``deepdream`` and ``style``; plugins that compute losses over network activations can use
it the same way.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .memo import remembered

Features = dict[str, torch.Tensor]
Owned = dict[str, tuple[slice, slice]]


@dataclass(frozen=True)
class Geometry:
    """Strides (input pixels per activation; ``None`` for non-spatial layers) and the largest
    receptive-field radius of an extractor's layers."""

    strides: dict[str, int | None]
    radius: int

    @property
    def align(self) -> int:
        """Crop offsets must be multiples of this: every layer's stride divides it."""
        return math.lcm(*[s for s in self.strides.values() if s] or [1])

    @property
    def halo(self) -> int:
        return -(-(self.radius + self.align) // self.align) * self.align


class LazyGeometry:
    """The :class:`Geometry` of an extractor's layers, measured on first use.

    The probe costs a few forward/backward passes; a dream that fits in memory in one piece never
    tiles and never needs it."""

    def __init__(self, measure: Callable[[], Geometry]) -> None:
        self._measure = measure

    @functools.cached_property
    def value(self) -> Geometry:
        return self._measure()

    strides = property(lambda self: self.value.strides)
    radius = property(lambda self: self.value.radius)
    align = property(lambda self: self.value.align)
    halo = property(lambda self: self.value.halo)


def measure_geometry(extractor: torch.nn.Module, layers: list[str], probe: int = 256) -> Geometry:
    """Measure each layer's stride and receptive-field radius with one backward pass per layer:
    the support of the input gradient of the centre activation is its receptive field. The probe
    image doubles until the receptive field fits inside it."""
    strides: dict[str, int | None] = {}
    radius = 0
    generator = torch.Generator().manual_seed(0)
    device = _device_of(extractor)
    while True:
        image = torch.rand(1, 3, probe, probe, generator=generator).to(device).requires_grad_()
        features = extractor(image)
        too_small = False
        for layer in layers:
            activation = features[layer]
            if activation.dim() != 4:
                strides[layer] = None
                continue
            height = activation.shape[-1]
            stride = probe // height
            strides[layer] = stride
            centre = height // 2
            (grad,) = torch.autograd.grad(activation[0, :, centre, centre].sum(), image, retain_graph=True)
            support = grad[0].abs().sum(0).nonzero()
            if len(support) == 0:
                continue
            lo, hi = int(support.min()), int(support.max())
            if lo == 0 or hi == probe - 1:
                too_small = True
                break
            position = centre * stride
            radius = max(radius, position - lo, hi - position)
        if not too_small or probe >= 4096:
            return Geometry(strides, radius)
        probe *= 2


@dataclass(frozen=True)
class Tile:
    """``crop``: the pixels the network sees; ``core``: the pixels whose activations it owns.
    Both as ((y0, y1), (x0, x1)), half-open."""

    crop: tuple[tuple[int, int], tuple[int, int]]
    core: tuple[tuple[int, int], tuple[int, int]]


def _spans(size: int, core: int, halo: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Cores [k*core, (k+1)*core) (the last one to the end) with their crops (core ± halo, clipped)."""
    count = max(1, math.ceil(size / core))
    spans = []
    for k in range(count):
        start, end = k * core, size if k == count - 1 else (k + 1) * core
        spans.append(((max(0, start - halo), min(size, end + halo)), (start, end)))
    return spans


def plan_tiles(height: int, width: int, tile_size: int, geometry: Geometry | LazyGeometry) -> list[Tile]:
    """One tile when the image fits in ``tile_size`` (or ``tile_size`` is 0), else cores of about
    ``tile_size`` (rounded down to the alignment) with their halos."""
    if tile_size <= 0 or (height <= tile_size and width <= tile_size):
        return [Tile(((0, height), (0, width)), ((0, height), (0, width)))]
    core = max(geometry.align, tile_size // geometry.align * geometry.align)
    rows, columns = _spans(height, core, geometry.halo), _spans(width, core, geometry.halo)
    return [Tile((ry[0], cx[0]), (ry[1], cx[1])) for ry in rows for cx in columns]


def auto_tile_size(extractor: torch.nn.Module, height: int, width: int, memory_bytes: int,
                   geometry: Geometry | LazyGeometry) -> int:
    """0 (no tiling) when one forward+backward pass over the whole image fits in ``memory_bytes``,
    else the largest core whose crop (core plus halos) fits."""
    return tile_size_for(pass_bytes_per_pixel(extractor), height, width, memory_bytes, geometry)


def tile_size_for(per_pixel: float, height: int, width: int, memory_bytes: int,
                  geometry: Geometry | LazyGeometry) -> int:
    """0 when a pass of ``per_pixel`` bytes per input pixel over the whole image fits in
    ``memory_bytes``, else the largest aligned core whose crop (core plus halos) fits."""
    if per_pixel * height * width <= memory_bytes:
        return 0
    crop = math.isqrt(int(memory_bytes / per_pixel))
    core = (crop - 2 * geometry.halo) // geometry.align * geometry.align
    return max(geometry.align, core)


def choose_tile_size(extractor: torch.nn.Module, height: int, width: int, tile_size: int | None, memory_bytes: int,
                     geometry: Geometry | LazyGeometry) -> int:
    """An effect's ``tile_size`` parameter as given, or, when it is ``None``, :func:`auto_tile_size`
    for a pass of at most ``memory_bytes`` (0: one piece; see :func:`memory_budget`)."""
    if tile_size is not None:
        return tile_size
    return auto_tile_size(extractor, height, width, memory_bytes, geometry)


#: The share of the memory available when a run starts that one pass may use by default, and the
#: least it is given (a busy machine still runs, in tiles).
AVAILABLE_SHARE = 0.5
MIN_BUDGET = 256 * 2**20


def memory_budget(device: torch.device, memory_mb: int | None) -> int:
    """Bytes one forward+backward pass may use: ``memory_mb`` MiB when the user set it, else half
    of what ``device`` has available now. A fixed default tiled a 512 px VGG-19 stylisation that
    fits many times over (8x slower for 3% less peak memory); following the machine, the common
    case runs in one piece and only what would not fit is tiled."""
    if memory_mb is not None:
        return memory_mb * 2**20
    return max(MIN_BUDGET, int(available_memory(device) * AVAILABLE_SHARE))


def available_memory(device: torch.device) -> int:
    """Bytes ``device`` can still give: a GPU's free memory, or the system's available memory
    (Linux's MemAvailable: free plus reclaimable caches)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class _OutputBytes(TorchDispatchMode):
    """Adds up the bytes of every tensor an op creates (views excluded) and the largest one."""

    def __init__(self) -> None:
        super().__init__()
        self.total = self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for tensor in pytree.tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    size = tensor.numel() * tensor.element_size()
                    self.total += size
                    self.largest = max(self.largest, size)
        return out


_bytes_per_pixel: "weakref.WeakKeyDictionary[torch.nn.Module, float]" = weakref.WeakKeyDictionary()


def pass_bytes_per_pixel(extractor: torch.nn.Module, probe: int = 256) -> float:
    """Estimated peak memory of one forward+backward pass, per input pixel: every tensor the
    forward makes (frozen weights and out-of-place activations: autograd keeps about all of them)
    plus the largest once more, for the gradient buffers of the backward. Measured for MobileNetV2
    to ``features.12`` at 960²: 831 MiB peak, estimated 931 MiB. From a meta-device pass: no
    compute, no memory."""
    if extractor not in _bytes_per_pixel:
        def measure() -> float:
            counter = _OutputBytes()
            with counter:
                _meta_copy(extractor)(torch.empty(1, 3, probe, probe, device="meta"))
            return (counter.total + counter.largest) / probe**2

        signature = getattr(extractor, "signature", None)
        _bytes_per_pixel[extractor] = remembered("pass-bytes-per-pixel", signature, measure) if signature else measure()
    return _bytes_per_pixel[extractor]


def owned_regions(tile: Tile, features: Features, geometry: Geometry, height: int, width: int) -> Owned:
    """For each spatial layer, the rows and columns of the crop's activations that the tile owns."""
    regions: Owned = {}
    for layer, activation in features.items():
        stride = geometry.strides.get(layer)
        if not stride or activation.dim() != 4:
            continue
        spans = []
        for (crop0, _), (core0, core1), full, size in zip(tile.crop, tile.core, (height, width), activation.shape[-2:]):
            start = (core0 - crop0) // stride
            end = size if core1 == full else (core1 - crop0) // stride
            spans.append(slice(start, end))
        regions[layer] = (spans[0], spans[1])
    return regions


def _device_of(module: torch.nn.Module) -> torch.device:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


# A meta-device copy of each extractor, for shape passes. Kept beside the extractor, not inside it
# (a submodule would put meta parameters in its state_dict and break ``.to()``); weak keys: an
# extractor that is dropped takes its copy with it.
_meta_copies: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def _meta_copy(extractor: torch.nn.Module) -> torch.nn.Module:
    meta = _meta_copies.get(extractor)
    if meta is None:
        meta = copy.deepcopy(extractor).to("meta")
        _meta_copies[extractor] = meta
    return meta


def feature_shapes(extractor: torch.nn.Module, height: int, width: int) -> dict[str, torch.Size]:
    """The shape of each layer's activation for a (1, 3, height, width) image, from a pass on the
    meta device (no compute, no memory)."""
    meta = _meta_copy(extractor)
    return {layer: a.shape for layer, a in meta(torch.empty(1, 3, height, width, device="meta")).items()}


def activation_counts(extractor: torch.nn.Module, height: int, width: int) -> dict[str, int]:
    """Spatial positions (h*w, or 1 for non-spatial layers) of each layer for the whole image."""
    shapes = feature_shapes(extractor, height, width)
    return {layer: (shape[-2] * shape[-1] if len(shape) == 4 else 1) for layer, shape in shapes.items()}


@functools.lru_cache(maxsize=16)
def extractor_geometry(extractor: torch.nn.Module, layers: tuple[str, ...]) -> Geometry:
    """The :class:`Geometry` of ``extractor`` at ``layers``: measured once per machine for a named
    architecture (its receptive field does not depend on its weights, :mod:`dreamkit.memo`), and
    once per process for a module passed in."""
    def measure() -> dict:
        shapes = feature_shapes(extractor, 64, 64)
        if not any(len(shapes[layer]) == 4 for layer in layers):
            return {"strides": {}, "radius": 0}  # logits only: nothing spatial to align or to extend by a halo
        measured = measure_geometry(extractor, list(layers))
        return {"strides": measured.strides, "radius": measured.radius}

    signature = getattr(extractor, "signature", None)
    known = remembered("receptive-field", f"{signature}|{','.join(layers)}", measure) if signature else measure()
    return Geometry(known["strides"], known["radius"])


def lazy_geometry(extractor: torch.nn.Module, layers: Sequence[str]) -> LazyGeometry:
    """:func:`extractor_geometry`, measured only if something asks (an untiled run never does)."""
    return LazyGeometry(lambda: extractor_geometry(extractor, tuple(layers)))
