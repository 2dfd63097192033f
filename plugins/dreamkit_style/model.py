"""A trained style network as a ``.dkstyle`` file (a dreamkit weights file of kind ``fast_style``).

Inside: the network's weights (``net.*``), the styles' colour statistics the input is recoloured
with (``palette.*``), a thumbnail of the style (``thumbnail``, uint8), and metadata: architecture,
colour mode, the styles' names and sha256, the loss settings, the training settings and figures,
the number of noise channels the network reads (``noise_channels``; absent in files written before
networks had them: 0), the dreamkit version (written by :mod:`dreamkit.weights_file`, which also
refuses a changed file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamkit.weights_file import WeightsFileError, load_weights_file, save_weights_file

from .colour import as_luminance_image, to_palette, with_chroma
from .transformer import ARCHITECTURES, MAX_NOISE_CHANNELS, StyleNetwork

KIND = "fast_style"


@dataclass
class FastStyleModel:
    """A trained network and what it needs to stylise a photo."""

    network: StyleNetwork
    luminance: bool  # trained on luminance: the result keeps the photo's colours
    palette: dict[str, torch.Tensor]  # mean S×3, covariance S×3×3, weight S: the styles' colours
    thumbnail: torch.Tensor  # 3×h×w uint8
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None

    def prepare(self, photos: torch.Tensor) -> torch.Tensor:
        """The network's input for ``photos`` (N×3×H×W, 0..1)."""
        return network_input(photos, self.luminance, self.palette)

    @torch.no_grad()
    def stylise(self, photos: torch.Tensor, tile_size: int = 0, noise_at: torch.Tensor | None = None) -> torch.Tensor:
        """The stylised photos (N×3×H×W, 0..1); in tiles of about ``tile_size`` px (0: whole),
        with the same result. ``noise_at``: see :meth:`StyleNetwork.forward`."""
        parameter = next(self.network.parameters())
        photos = photos.to(device=parameter.device, dtype=parameter.dtype)
        out = self.network.stylise(self.prepare(photos), tile_size, noise_at)
        return with_chroma(out, photos) if self.luminance else out


def network_input(photos: torch.Tensor, luminance: bool, palette: dict[str, torch.Tensor]) -> torch.Tensor:
    """What a style network sees of ``photos``: their luminance (``luminance``), else the photos
    recoloured into the styles' palette (the ``style`` effect's start with ``color=style``)."""
    if luminance:
        return as_luminance_image(photos)
    return to_palette(photos, palette["mean"], palette["covariance"], palette["weight"])


def save_model(path: str | Path, model: FastStyleModel) -> str:
    """Write ``model`` as a weights file; returns its sha256."""
    tensors = {f"net.{k}": v for k, v in model.network.state_dict().items()}
    tensors.update({f"palette.{k}": v for k, v in model.palette.items()})
    tensors["thumbnail"] = model.thumbnail
    meta = {**model.meta, "architecture": model.network.architecture, "noise_channels": model.network.noise_channels,
            "color": "luminance" if model.luminance else "style"}
    return save_weights_file(path, KIND, tensors, meta)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> FastStyleModel:
    """Read and verify a ``.dkstyle`` file (:class:`WeightsFileError` for another kind of file, a
    changed one, or one this dreamkit cannot build)."""
    loaded = load_weights_file(path, KIND)
    architecture = loaded.meta.get("architecture")
    if architecture not in ARCHITECTURES:
        raise WeightsFileError(f"{path}: architecture {architecture!r} is not one this dreamkit knows "
                               f"({', '.join(ARCHITECTURES)}); written by dreamkit {loaded.version}")
    noise = loaded.meta.get("noise_channels", 0)  # files written before networks had noise: none
    if not isinstance(noise, int) or not 0 <= noise <= MAX_NOISE_CHANNELS:
        raise WeightsFileError(f"{path}: noise_channels {noise!r} is not one this dreamkit can build "
                               f"(0 to {MAX_NOISE_CHANNELS}); written by dreamkit {loaded.version}")
    network = StyleNetwork(architecture, noise)
    weights = {k[len("net."):]: v for k, v in loaded.tensors.items() if k.startswith("net.")}
    try:
        network.load_state_dict(weights)
        palette = {k: loaded.tensors[f"palette.{k}"] for k in ("mean", "covariance", "weight")}
    except (RuntimeError, KeyError) as exc:
        raise WeightsFileError(f"{path}: the weights do not fit a {architecture} network ({exc})") from None
    network.eval().to(device)
    return FastStyleModel(network, loaded.meta.get("color") == "luminance", palette, loaded.tensors.get(
        "thumbnail", torch.zeros(3, 1, 1, dtype=torch.uint8)), loaded.meta, loaded.sha256)


__all__ = ["FastStyleModel", "KIND", "load_model", "network_input", "save_model"]
