"""Image descriptors for retrieval: one L2-normalised float32 vector per image.

* **content**: a layer's activations pooled over space (average, or GeM for non-negative
  post-ReLU layers), averaged with those of the mirrored image so that a flipped copy has the
  same descriptor. Default: MobileNetV2's last inverted-residual block (``features.17``, 320
  values) with its offline ImageNet weights. Its output is a linear bottleneck, signed and
  roughly centred, so unrelated images score near 0 and copies near 1 (on the sample images:
  unrelated ≤ 0.47, copies ≥ 0.67); the 1280 post-ReLU values after it are all positive, which
  lifts every pair to about 0.6 and leaves copies and strangers 0.07 apart.
* **style**: the Gram matrices of a few style layers (the statistics neural style transfer
  matches), each upper triangle power-normalised (signed square root) and L2-normalised, then all
  projected to a fixed size by a fixed random Gaussian matrix (Johnson–Lindenstrauss: inner
  products survive). Images "painted like" each other are close, whatever they show.

A :class:`DescriptorSpec` says exactly how vectors were made; an index stores it and refuses
vectors made any other way.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dreamkit.errors import DreamkitError

KINDS = ("content", "style")
POOLINGS = ("gem", "avg")
#: Style layers by backbone: early to middle blocks (texture, not objects).
STYLE_LAYERS = {
    "mobilenet_v2": ("features.2", "features.4", "features.7", "features.11"),
    "vgg16": ("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
    "vgg19": ("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
}
#: Content layers by backbone (others: ``features`` or ``layer4``, the last feature map).
CONTENT_LAYERS = {"mobilenet_v2": "features.17"}
#: Shorter side an image is resized to before the network, by kind.
SIZES = {"content": 224, "style": 256}
STYLE_DIM = 512
PROJECTION_SEED = 20261130


class DescriptorError(DreamkitError):
    """A descriptor that cannot be made as asked (backbone, layer, pooling...)."""


@dataclass(frozen=True)
class DescriptorSpec:
    """How descriptors are made. Build with :func:`make_spec`, which fills the defaults in and
    checks the backbone and layers; compare two with :meth:`mismatch`."""

    kind: str
    backbone: str
    weights: str
    layers: tuple[str, ...]
    pooling: str
    gem_p: float
    size: int
    flip: bool
    dim: int
    #: sha256 prefix of the style projection matrix ("" for content): vectors from another
    #: projection are not comparable, even with the same seed and shapes.
    projection: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DescriptorSpec":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "layers": tuple(data["layers"])})

    def describe(self) -> str:
        """``content: mobilenet_v2 (mobilenet_v2.IMAGENET1K_V1) features, gem pooling, 1280 values``."""
        how = f"{self.pooling} pooling" if self.kind == "content" else "Gram matrices"
        return f"{self.kind}: {self.backbone} ({self.weights}) {','.join(self.layers)}, {how}, {self.dim} values"

    def mismatch(self, other: "DescriptorSpec") -> str | None:
        """What differs between two specs, in words, or None if vectors are comparable."""
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [f"{key} {mine[key]!r} vs {theirs[key]!r}" for key in mine if mine[key] != theirs[key]]
        return "; ".join(diffs) or None


def default_content_layer(backbone: str, host: Any = None) -> str:
    """:data:`CONTENT_LAYERS`' entry, else the deepest feature map before the classifier:
    ``features`` (MobileNet, VGG, EfficientNet, ConvNeXt...) or ``layer4`` (ResNets)."""
    from dreamkit.models import list_layers

    paths = {info.path for info in list_layers(backbone, host)}
    if backbone in CONTENT_LAYERS:
        return CONTENT_LAYERS[backbone]
    for name in ("features", "layer4", "trunk_output"):
        if name in paths:
            return name
    raise DescriptorError(f"backbone '{backbone}' has no default content layer; name one with --layer "
                          f"(see `dreamkit layers {backbone}`)")


def make_spec(kind: str = "content", backbone: str = "mobilenet_v2", weights: str = "default",
              layers: Sequence[str] | None = None, pooling: str = "avg", gem_p: float = 3.0,
              size: int | None = None, flip: bool | None = None, dim: int = STYLE_DIM, host: Any = None) -> DescriptorSpec:
    """A checked, complete :class:`DescriptorSpec` (the weights name resolved to its registered
    key, the layers to module paths, the dimension measured on the meta device)."""
    from dreamkit.models import check_backbone, resolve_layers, resolve_weights_key

    if kind not in KINDS:
        raise DescriptorError(f"descriptor {kind!r} is not allowed; expected one of {', '.join(KINDS)}")
    if pooling not in POOLINGS:
        raise DescriptorError(f"pooling {pooling!r} is not allowed; expected one of {', '.join(POOLINGS)}")
    if not gem_p >= 1:
        raise DescriptorError(f"GeM exponent {gem_p} is not allowed; expected a number >= 1")
    if size is not None and not 32 <= size <= 2048:
        raise DescriptorError(f"descriptor size {size} is not allowed; expected 32 to 2048 pixels")
    if kind == "style" and not 16 <= dim <= 8192:
        raise DescriptorError(f"style dimension {dim} is not allowed; expected 16 to 8192")
    check_backbone(backbone, host)
    if not layers:
        if kind == "content":
            layers = [default_content_layer(backbone, host)]
        elif backbone in STYLE_LAYERS:
            layers = list(STYLE_LAYERS[backbone])
        else:
            raise DescriptorError(f"no default style layers for backbone '{backbone}'; name them with --layer "
                                  f"(repeatable; see `dreamkit layers {backbone}`)")
    if kind == "content" and len(layers) != 1:
        raise DescriptorError(f"a content descriptor uses one layer, got {len(layers)}: {', '.join(layers)}")
    paths = tuple(resolve_layers(backbone, list(layers), host=host))
    channels = _channels(backbone, paths, host)
    # A weights file is checked against the default key's sha256: the same weights as that key.
    key = "random" if weights == "random" else resolve_weights_key(backbone, weights, host=host) or "random"
    if kind == "content":
        return DescriptorSpec("content", backbone, key, paths, pooling,
                              float(gem_p), size or SIZES["content"], True if flip is None else flip, channels[0])
    projection = _fingerprint(style_projection(sum(c * (c + 1) // 2 for c in channels), dim))
    return DescriptorSpec("style", backbone, key, paths, "gram", 0.0,
                          size or SIZES["style"], bool(flip), dim, projection)


@functools.lru_cache(maxsize=16)
def _channels(backbone: str, paths: tuple[str, ...], host: Any) -> tuple[int, ...]:
    """Channels of each layer's output, from a meta-device pass (no weights, no compute); once
    per process for each backbone and layers (make_spec and every Describer ask)."""
    from dreamkit.models import build_backbone
    from dreamkit.models.features import trace_outputs

    model = trace_outputs(build_backbone(backbone, device="meta", host=host), list(paths))
    with torch.device("meta"):
        out = model(torch.empty(1, 3, 224, 224))
    for path in paths:
        if out[path].dim() != 4:
            raise DescriptorError(f"layer '{path}' of '{backbone}' gives a {out[path].dim()}-d tensor, not a "
                                  "feature map (N×C×H×W); choose a convolutional layer")
    return tuple(int(out[path].shape[1]) for path in paths)


def style_projection(inputs: int, dim: int) -> torch.Tensor:
    """The fixed random projection of Gram triangles (``inputs`` values) to ``dim`` values:
    Gaussian entries from a fixed seed, scaled by 1/sqrt(dim) (norms are kept in expectation)."""
    rng = np.random.Generator(np.random.PCG64(PROJECTION_SEED))
    matrix = rng.standard_normal((inputs, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    return torch.from_numpy(matrix)


def _fingerprint(matrix: torch.Tensor) -> str:
    return hashlib.sha256(matrix.numpy().tobytes()).hexdigest()[:16]


#: Side of the pixel thumbnail kept for low-information images.
THUMBNAIL_SIDE = 8


def thumbnail_of(image: torch.Tensor) -> str:
    """The 8×8 RGB thumbnail (area averages) of a 1×C×H×W (or C×H×W) 0..1 image, as 384 hex digits."""
    image = image.float()
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    small = F.adaptive_avg_pool2d(image[:, :3], (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return bytes(small[0].clamp(0, 1).mul(255).round().to(torch.uint8).flatten().tolist()).hex()


def thumbnail_array(text: str) -> np.ndarray:
    """The inverse of :func:`thumbnail_of`: a 3×8×8 float array in 0..1."""
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(3, THUMBNAIL_SIDE, THUMBNAIL_SIDE) / 255.0


def blank_images(side: int = 224) -> list[torch.Tensor]:
    """Content-free images, fixed: flat colours, linear gradients and smooth noise fields. How much
    a descriptor resembles theirs is how little it says about its image (:meth:`Describer.blankness`)."""
    images = [torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, side, side).clone()
              for colour in ((0.5, 0.5, 0.5), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.8, 0.2, 0.2), (0.2, 0.3, 0.9))]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    for ramp in (xx, yy, (xx + yy) / 2):
        images.append(torch.stack([ramp, 1 - ramp, ramp * 0.5 + 0.25])[None])
    generator = torch.Generator().manual_seed(123)
    for cells in (3, 6, 12, 24):
        field = torch.rand(1, 3, cells, cells, generator=generator)
        images.append(F.interpolate(field, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1))
    return images


class Describer:
    """Makes descriptors as ``spec`` says, on ``device``; the model loads once."""

    def __init__(self, spec: DescriptorSpec, device: str | torch.device = "cpu", host: Any = None) -> None:
        from dreamkit.models import FeatureExtractor

        self.spec = spec
        self.device = torch.device(device)
        # fp32 always: descriptors must not depend on whether bf16 pays on this machine.
        self.extractor = FeatureExtractor(spec.backbone, list(spec.layers), spec.weights, host=host).to(self.device)
        self.projection: torch.Tensor | None = None
        if spec.kind == "style":
            channels = _channels(spec.backbone, spec.layers, host)
            self.projection = style_projection(sum(c * (c + 1) // 2 for c in channels), spec.dim)
            if _fingerprint(self.projection) != spec.projection:
                raise DescriptorError("the style projection made here differs from the index's (another numpy "
                                      "random stream?); rebuild the index here")
            self.projection = self.projection.to(self.device)
            self.triangles = [torch.triu_indices(c, c, device=self.device) for c in channels]
        self._blank: np.ndarray | None = None

    def blankness(self, vectors: np.ndarray) -> np.ndarray:
        """For each descriptor, its highest cosine similarity to the descriptors of
        :func:`blank_images`: near 1 for images with nothing a network can tell apart."""
        if self._blank is None:
            self._blank = self.embed(blank_images())
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.spec.dim)
        return (vectors @ self._blank.T).max(axis=1)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """Resize so the shorter side is ``spec.size`` (the longer at most twice that), antialiased."""
        h, w = image.shape[-2:]
        scale = self.spec.size / min(h, w)
        size = (max(1, min(round(h * scale), 2 * self.spec.size)), max(1, min(round(w * scale), 2 * self.spec.size)))
        image = image.to(self.device, torch.float32)
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    @torch.inference_mode()
    def embed(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """Descriptors of ``images`` (1×C×H×W or C×H×W, 0..1, any sizes): an N×dim float32 array,
        rows L2-normalised. Images that come out the same size after :meth:`prepare` share a
        forward pass."""
        prepared = [self.prepare(image) for image in images]
        out = torch.empty(len(prepared), self.spec.dim)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, tensor in enumerate(prepared):
            by_size.setdefault(tuple(tensor.shape[-2:]), []).append(index)
        for indices in by_size.values():
            batch = torch.cat([prepared[i] for i in indices])
            out[indices] = self._describe(batch).float().cpu()
        return out.numpy()

    def _describe(self, batch: torch.Tensor) -> torch.Tensor:
        if self.spec.flip:
            both = self._raw(torch.cat([batch, batch.flip(-1)]))
            vectors = both[: len(batch)] + both[len(batch):]
        else:
            vectors = self._raw(batch)
        return F.normalize(vectors, dim=1)

    def _raw(self, batch: torch.Tensor) -> torch.Tensor:
        features = self.extractor(batch)
        if self.spec.kind == "content":
            (fmap,) = features.values()
            if self.spec.pooling == "avg":
                return F.normalize(fmap.mean(dim=(2, 3)), dim=1)
            p = self.spec.gem_p
            return F.normalize(fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p), dim=1)
        return self._style(list(features.values()))

    def _style(self, fmaps: list[torch.Tensor]) -> torch.Tensor:
        from dreamkit.ops import gram_matrix

        parts = []
        for fmap, (rows, cols) in zip(fmaps, self.triangles):
            gram = gram_matrix(fmap.contiguous().float())
            triangle = gram[:, rows, cols]
            triangle = triangle.sign() * triangle.abs().sqrt()  # power normalisation (bilinear pooling)
            parts.append(F.normalize(triangle, dim=1) / len(fmaps) ** 0.5)
        assert self.projection is not None
        return torch.cat(parts, dim=1) @ self.projection
