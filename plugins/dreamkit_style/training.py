"""Training a feed-forward style network with the ``style`` effect's own loss.

The pieces every engine shares (one process here, Ray Train in :mod:`.ray_training`):

* :class:`TrainSettings`: the run's settings (architecture, steps, crop size, global batch...).
* :class:`CropSampler`: the training images as random crops, flips and scales. The crops of a step
  depend only on (seed, step, position in the global batch), so a resumed run and a run split
  across workers see exactly the crops an uninterrupted single process sees.
* :class:`TrainingLoss`: the style effect's loss (its layers, smoothing, normalisation, blended
  styles, colour mode, total variation), for batches and differentiable.
* :class:`Trainer`: the model, its Adam optimiser and one step (the network in bfloat16 where
  that pays: :func:`computes_in_bf16`); checkpoints (``torch.save`` of tensors and plain values,
  read back with ``weights_only=True``) and the finished model file.

:func:`train` runs it in this process with a progress bar, previews, checkpoints and resume.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import signal
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dreamkit.errors import DreamkitError, ImageLoadError, ParameterError
from dreamkit.precision import bf16_kernels
from dreamkit.io import atomic_write, load_image, save_image
from dreamkit.tiling import plan_tiles

from .colour import as_luminance_image, colour_stats
from .effect import Style
from .loss import SCALE_FLOOR, StyleLoss, mean_square
from .model import KIND, FastStyleModel, network_input, save_model
from .transformer import ARCHITECTURES, MAX_NOISE_CHANNELS, StyleNetwork

log = logging.getLogger("dreamkit")

#: Parameters of the ``style`` effect that shape its loss: what training takes from it. (The rest
#: steer an optimisation that training replaces: iterations, optimiser, scales, tiles...)
LOSS_PARAMS = ("style", "style_weights", "backbone", "weights", "style_layers", "style_layer_weights",
               "content_layers", "content_layer_weights", "style_weight", "content_weight", "tv_weight",
               "smoothing", "normalize", "color")
#: The style image's longest side in the Gram targets by default: what the effect uses for a
#: 512 px output (a style at its own size, shrunk to the output if larger).
STYLE_SIDE = 512
#: Noise channels a new network reads texture from (:class:`~.transformer.NoiseSource`; 0: none),
#: by architecture. ``classic`` turns it into grain (held-out style loss 16.3x -> 7.9x the optimised
#: result's at 400 steps, content 2.49x -> 2.54x); ``small`` cannot (1200 steps: 7.9x, 2.62x
#: without; 8.0x, 2.57x with), so it goes without (bench/fast_style.py's measure).
NOISE_CHANNELS = {"classic": 8, "small": 0}
MIN_CROP_SCALE = 0.5  # a crop covers from this share of the (cached) image's shorter side to all of it
CACHED_IMAGES = 256
NOISE_STREAM = 1  # _mix(seed, step, position, NOISE_STREAM): a crop's noise, unrelated to its crop
PRECISIONS = ("auto", "fp32", "bf16")


class TrainingError(DreamkitError):
    """A training run that cannot start or resume as asked (exit 2 on the command line)."""


@dataclass(frozen=True)
class TrainSettings:
    """How a network is trained. ``batch`` is the global batch (split across Ray workers);
    ``dtype`` "float64" exists for tests that compare engines without float32's rounding."""

    architecture: str = "small"
    steps: int = 2000
    size: int = 256
    batch: int = 4
    lr: float = 1e-3
    seed: int = 0
    style_side: int = STYLE_SIDE
    noise: int | None = None  # None: the architecture's (NOISE_CHANNELS)
    checkpoint_every: int = 50
    preview_every: int = 100
    dtype: str = "float32"
    precision: str = "auto"  # the network's forward and backward: auto, fp32 or bf16 (:func:`computes_in_bf16`)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise TrainingError(f"--architecture {self.architecture!r} is not allowed; expected one of "
                                f"{', '.join(ARCHITECTURES)}")
        for name, low in (("steps", 1), ("size", 64), ("batch", 1), ("style_side", 64), ("checkpoint_every", 1),
                          ("preview_every", 0)):
            if getattr(self, name) < low:
                raise TrainingError(f"--{name.replace('_', '-')} {getattr(self, name)} is not allowed; "
                                    f"expected an integer >= {low}")
        if self.noise is None:
            object.__setattr__(self, "noise", NOISE_CHANNELS[self.architecture])  # (frozen)
        if not 0 <= self.noise <= MAX_NOISE_CHANNELS:
            raise TrainingError(f"--noise {self.noise} is not allowed; expected an integer from 0 to {MAX_NOISE_CHANNELS}")
        if not 0 < self.lr <= 1:
            raise TrainingError(f"--lr {self.lr} is not allowed; expected a number in (0, 1]")
        if self.dtype not in ("float32", "float64"):
            raise TrainingError(f"dtype {self.dtype!r} is not allowed; expected float32 or float64")
        if self.precision not in PRECISIONS:
            raise TrainingError(f"--precision {self.precision!r} is not allowed; expected one of {', '.join(PRECISIONS)}")

    #: Settings that define the run: a checkpoint made with other values cannot be resumed.
    IDENTITY = ("architecture", "size", "batch", "lr", "seed", "style_side", "noise", "dtype", "precision")

    def learning_rate(self, step: int) -> float:
        """Adam's step size for step ``step`` (from 0): ``lr`` annealed to 0 over ``steps`` along a
        half cosine (Loshchilov and Hutter 2017). Against a constant ``lr``, the held-out style
        loss after 1200 steps (small, bench/fast_style.py's measure) went from 9.8x the optimised
        result's to 8.3x: the late steps settle instead of jittering around the optimum. It depends
        on the step alone, so resumed and Ray runs follow the same schedule; a rerun with more
        ``--steps`` continues on the longer one."""
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))

    def identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.IDENTITY}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSettings":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def loss_effect(values: dict[str, Any]) -> Style:
    """The ``style`` effect whose loss a network is trained with (only :data:`LOSS_PARAMS`).
    Masks and ``color=match`` depend on each photo and cannot be learned once for all."""
    unknown = sorted(set(values) - set(LOSS_PARAMS))
    if unknown:
        raise ParameterError(f"style train: {', '.join(unknown)} cannot be set for training; the loss takes "
                             f"{', '.join(p for p in LOSS_PARAMS if p != 'style')}")
    if values.get("color") == "match":
        raise ParameterError("style train: color=match is not allowed: it matches the style's colours to each photo, "
                             "which one network cannot learn; use color=style or color=luminance")
    effect = Style(**values)
    effect.check()
    return effect


class CropSampler:
    """Random square crops of the training images: a random image, a crop of a random share
    (``MIN_CROP_SCALE``..1) of its shorter side at a random place, resized to ``size``, flipped
    left-right half the time. Images are decoded once, kept with their shorter side at most twice
    ``size`` (an LRU of ``CACHED_IMAGES``)."""

    def __init__(self, paths: list[Path], size: int, seed: int) -> None:
        self.paths = list(paths)
        self.size = size
        self.seed = seed
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    def image(self, index: int) -> torch.Tensor:
        cached = self._cache.get(index)
        if cached is None:
            picture = load_image(self.paths[index])
            scale = min(1.0, 2 * self.size / min(picture.shape[-2:]))
            if scale < 1:
                picture = F.interpolate(picture, size=(max(1, round(picture.shape[-2] * scale)),
                                                      max(1, round(picture.shape[-1] * scale))),
                                        mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
            cached = (picture[0] * 255).round_().to(torch.uint8)
            self._cache[index] = cached
            if len(self._cache) > CACHED_IMAGES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(index)
        return cached

    def crop(self, step: int, position: int) -> torch.Tensor:
        """Crop ``position`` of the global batch of ``step`` (3×size×size, 0..1)."""
        generator = torch.Generator().manual_seed(_mix(self.seed, step, position))
        picture = self.image(int(torch.randint(len(self.paths), (1,), generator=generator)))
        height, width = picture.shape[-2:]
        short = min(height, width)
        side = max(1, round(short * (MIN_CROP_SCALE + (1 - MIN_CROP_SCALE) * float(torch.rand((), generator=generator)))))
        top = int(torch.randint(height - side + 1, (1,), generator=generator))
        left = int(torch.randint(width - side + 1, (1,), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5)
        crop = picture[:, top:top + side, left:left + side].float().div_(255)[None]
        crop = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=side > self.size,
                             align_corners=False).clamp_(0, 1)[0]
        return crop.flip(-1) if flip else crop

    def batch(self, step: int, positions: range) -> torch.Tensor:
        return torch.stack([self.crop(step, position) for position in positions])


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (different tuples, unrelated streams)."""
    return int.from_bytes(hashlib.sha256(repr(numbers).encode()).digest()[:8], "little") >> 1


def readable_images(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The paths that decode as images, and a line for each that does not (training skips them)."""
    from dreamkit.io import open_image

    good, bad = [], []
    for path in paths:
        try:
            open_image(path).close()
        except (DreamkitError, OSError) as exc:
            bad.append(f"{path}: {exc}")
        else:
            good.append(path)
    return good, bad


class TrainingLoss:
    """The ``style`` effect's loss for a batch of network outputs against their photos:

    style_weight · Σ_l w_l · mean((G_l(out) − T_l)²) / mean(T_l²)  (blended styles: T = Σ b_s T_s)
    + content_weight · Σ_l w_l · mean((F_l(out) − F_l(photo))²) / mean(F_l(photo)²)
    + tv_weight · (mean of squared neighbour differences, both directions)

    per image, averaged over the batch (so a batch split across workers averages to the same); each
    mean(T_l²) floored as the effect's (:func:`~.loss.mean_square`): the same loss, term for term.
    Gram targets: the styles with their longest side ``style_side`` (not enlarged)."""

    def __init__(self, effect: Style, host: Any, device: torch.device, size: int, style_side: int,
                 dtype: torch.dtype = torch.float32) -> None:
        extractor, style_layers, content_layers = effect.network(device, host, (size, size))
        styles = effect.style_images(device)
        if effect.color == "luminance":
            styles = [as_luminance_image(style) for style in styles]
        temperatures = effect._temperatures(extractor, styles, style_layers)
        if dtype != torch.float32:
            extractor = copy.deepcopy(extractor).to(dtype)
        self.extractor = extractor
        self.loss = StyleLoss(extractor, style_layers, content_layers, style_weight=effect.style_weight,
                              content_weight=effect.content_weight, temperatures=temperatures,
                              normalize=effect.normalize)
        blend = effect._blend()
        grams = [self._grams(style.to(dtype), style_side) for style in styles]
        total = sum(blend)
        self.targets = {layer: sum(w * g[layer] for w, g in zip(blend, grams)) / total for layer in style_layers}
        self.scales = {layer: mean_square(t) if effect.normalize else 1.0 for layer, t in self.targets.items()}
        self.tv_weight = effect.tv_weight
        self.luminance = effect.color == "luminance"
        stats = [colour_stats(style) for style in effect.style_images(device)]
        self.palette = {"mean": torch.stack([m for m, _ in stats]), "covariance": torch.stack([c for _, c in stats]),
                        "weight": torch.tensor(blend, dtype=torch.float64)}

    def _grams(self, style: torch.Tensor, side: int) -> dict[str, torch.Tensor]:
        scale = min(1.0, side / max(style.shape[-2:]))
        size = (max(32, round(style.shape[-2] * scale)), max(32, round(style.shape[-1] * scale)))
        if tuple(style.shape[-2:]) != size:
            style = F.interpolate(style, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        with torch.no_grad():
            return self.loss.gram_targets(style, plan_tiles(*size, 0, None), None)

    def network_input(self, photos: torch.Tensor) -> torch.Tensor:
        """What the network sees (:func:`~.model.network_input`)."""
        return network_input(photos, self.luminance, self.palette)

    def content_target(self, photos: torch.Tensor) -> torch.Tensor:
        return as_luminance_image(photos) if self.luminance else photos

    def __call__(self, output: torch.Tensor, content: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss (a 0-d tensor to back-propagate) and its parts (detached)."""
        style_terms, content_terms, tv = self.terms(output, content)
        style = sum(style_terms.values(), output.new_zeros(()))
        content_term = sum(content_terms.values(), output.new_zeros(()))
        total = style + content_term + tv
        return total, {"style": style.detach(), "content": content_term.detach(), "tv": tv.detach()}

    def terms(self, output: torch.Tensor, content: torch.Tensor
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """The loss term by term, each already weighted (0-d tensors, differentiable): the style
        layers', the content layers' and total variation. Their sum is the loss; apart, they say
        which layer a network falls short on (bench/fast_style.py's quality part)."""
        features = self.extractor(output)
        with torch.no_grad():
            targets = self.extractor(content)
        loss = self.loss
        style_terms = {}
        for layer, weight in loss.style_layers.items():
            phi = loss.style_features(layer, features[layer])
            style_terms[layer] = (loss.style_weight * weight / self.scales[layer]) * \
                (_gram(phi) - self.targets[layer].to(phi.dtype)).square().mean()
        content_terms = {}
        for layer, weight in loss.content_layers.items() if loss.content_weight else ():
            target = targets[layer]
            scale = target.square().mean((1, 2, 3)).clamp_min(SCALE_FLOOR) if loss.normalize else 1.0
            per_image = (features[layer] - target).square().mean((1, 2, 3)) / scale
            content_terms[layer] = loss.content_weight * weight * per_image.mean()
        tv = output.new_zeros(())
        if self.tv_weight:
            tv = self.tv_weight * ((output[..., 1:, :] - output[..., :-1, :]).square().mean()
                                   + (output[..., 1:] - output[..., :-1]).square().mean())
        return style_terms, content_terms, tv


def _gram(phi: torch.Tensor) -> torch.Tensor:
    """Per-image Gram matrices (N×C×C), normalised as the style effect's (by C·positions)."""
    from dreamkit import ops

    return ops.gram_matrix(phi, normalize=True)


def computes_in_bf16(settings: TrainSettings, network: StyleNetwork, device: torch.device) -> tuple[bool, str]:
    """Whether the network's forward and backward run in bfloat16 (autocast: its weights, Adam and
    the loss stay float32), and why. ``precision`` "fp32" or "bf16" as asked ("bf16" refused where
    the device has no bf16 kernels); "auto": bf16 where one forward and backward at the training
    size measures clearly faster on this machine (:func:`dreamkit.precision.bf16_pays`, measured
    once and remembered). ``classic``'s pass at 256 px in batches of 4 took 2.17 s in float32 and
    1.22 s in bf16 on an AMD EPYC with AVX-512 bf16 (training 1.63x the steps/s, bench/fast_style.py
    --parts train); ``small``'s gained 1-6%, so it stays float32 there. The loss network is left
    in float32: it gained nothing (99 against 105 ms)."""
    if settings.dtype != "float32":
        return False, f"{settings.dtype} as asked"
    if settings.precision == "fp32":
        return False, "fp32 as asked"
    if settings.precision == "bf16":
        if not bf16_kernels(device):
            raise TrainingError(f"--precision bf16 is not allowed here: this {device.type} has no bfloat16 convolution "
                                f"kernels ({torch.backends.cpu.get_cpu_capability() if device.type == 'cpu' else device}); "
                                "use auto or fp32")
        return True, "bf16 as asked"
    from dreamkit.precision import bf16_pays  # looked up per call: tests stand in for the measurement

    made: list = []  # (a copy of the network, an image): made only if this machine has not measured yet

    def time_pass(bf16: bool) -> float:
        if not made:
            made.extend([copy.deepcopy(network), torch.rand(1, 3, settings.size, settings.size,
                                                            generator=torch.Generator().manual_seed(0)).to(device)])
        probe, image = made
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = probe(image, noise_seeds=[0] if probe.noise_source() is not None else None)
        output.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        probe.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    key = f"style-network-training|{settings.architecture}|noise={settings.noise}|{settings.size}px"
    return bf16_pays(device, key, time_pass)


@dataclass
class Trainer:
    """A network, its optimiser and loss, and how far training has got."""

    settings: TrainSettings
    loss: TrainingLoss
    network: StyleNetwork
    optimizer: torch.optim.Optimizer
    step: int = 0
    history: list[list[float]] = field(default_factory=list)  # [step, total, style, content, tv]
    seconds: float = 0.0  # time spent training, over every run of it
    restarts: list[int] = field(default_factory=list)  # steps a Ray run came back from after a worker died
    bf16: bool = False  # the network's forward and backward in bfloat16 (autocast)
    precision_reason: str = ""  # why (what was asked, or what the measurement found)

    @classmethod
    def create(cls, settings: TrainSettings, loss: TrainingLoss, device: torch.device) -> "Trainer":
        torch.manual_seed(_mix(settings.seed, -1))
        network = StyleNetwork(settings.architecture, settings.noise).to(device=device,
                                                                          dtype=getattr(torch, settings.dtype))
        bf16, reason = computes_in_bf16(settings, network, device)
        return cls(settings, loss, network, torch.optim.Adam(network.parameters(), lr=settings.lr),
                   bf16=bf16, precision_reason=reason)

    def run_step(self, photos: torch.Tensor, model: torch.nn.Module | None = None,
                 positions: range | None = None) -> dict[str, float]:
        """One optimiser step on ``photos`` (N×3×H×W), the crops at ``positions`` of the step's
        global batch (default: all of it); ``model``: the network as wrapped for distributed
        training (the gradients are then averaged across workers by DDP). Each crop's noise comes
        from (seed, step, position): a worker draws what one process draws for the same crop."""
        dtype = getattr(torch, self.settings.dtype)
        photos = photos.to(device=next(self.network.parameters()).device, dtype=dtype)
        seeds = self.noise_seeds(range(len(photos)) if positions is None else positions)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(photos.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = (model or self.network)(self.loss.network_input(photos), noise_seeds=seeds)
        total, parts = self.loss(output.to(dtype), self.loss.content_target(photos))
        total.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.learning_rate(self.step)
        self.optimizer.step()
        self.step += 1
        return {"loss": float(total.detach()), **{k: float(v) for k, v in parts.items()}}

    def noise_seeds(self, positions: range) -> list[int] | None:
        """The seeds of this step's noise for the crops at ``positions`` of the global batch (None:
        the network reads no noise)."""
        if self.network.noise_source() is None:
            return None
        return [_mix(self.settings.seed, self.step, position, NOISE_STREAM) for position in positions]

    def as_model(self, network: StyleNetwork | None = None, thumbnail: torch.Tensor | None = None) -> FastStyleModel:
        """``network`` (default: the one training, shared) with this run's input preparation."""
        return FastStyleModel(network or self.network, self.loss.luminance,
                              {k: v.float().cpu() for k, v in self.loss.palette.items()},
                              torch.zeros(3, 1, 1, dtype=torch.uint8) if thumbnail is None else thumbnail)

    def record(self, figures: dict[str, float]) -> None:
        self.history.append([self.step, figures["loss"], figures["style"], figures["content"], figures["tv"]])

    # -- checkpoints ---------------------------------------------------------------------
    def state(self, identity: dict[str, Any]) -> dict[str, Any]:
        return {"format": "dreamkit.fast_style.checkpoint", "identity": json.dumps(identity, sort_keys=True),
                "model": self.network.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "history": self.history, "seconds": self.seconds, "restarts": self.restarts,
                "bf16": self.bf16, "precision": self.precision_reason}

    def save_checkpoint(self, path: Path, identity: dict[str, Any]) -> None:
        state = self.state(identity)
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    def restore(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history, self.seconds = int(state["step"]), list(state["history"]), float(state["seconds"])
        self.restarts = list(state.get("restarts", []))
        # A run goes on in the precision it started in ("auto" may measure otherwise now, and two
        # runs' results agree only if both computed alike), unless this device lacks bf16 kernels.
        if "bf16" in state and (not state["bf16"] or bf16_kernels(next(self.network.parameters()).device)):
            self.bf16, self.precision_reason = bool(state["bf16"]), str(state["precision"])


def read_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one; a :class:`TrainingError` if it was made by a
    run with other settings, styles or images (naming what differs)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        made_with = json.loads(state["identity"])
    except Exception as exc:  # a damaged checkpoint: say so, never guess
        raise TrainingError(f"{path}: cannot read the checkpoint ({exc}); remove it to start again") from None
    differ = sorted(k for k in set(identity) | set(made_with) if identity.get(k) != made_with.get(k))
    if differ:
        raise TrainingError(f"{path.parent} holds a run with other {', '.join(differ)}: run the same command to "
                            "resume it, or pass --overwrite to start again")
    return state


def loss_settings(effect: Style) -> dict[str, Any]:
    """The loss settings of ``effect`` as a recipe writes them (files by name), styles left out."""
    return {k: v for k, v in effect.to_config()["params"].items() if k in LOSS_PARAMS and k != "style"}


def loss_values(effect: Style) -> dict[str, Any]:
    """The loss parameters of ``effect`` with files as paths: what rebuilds it in another process."""
    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, list) else \
            os.fspath(value) if isinstance(value, os.PathLike) else value

    return {k: plain(v) for k, v in effect.values.items() if k in LOSS_PARAMS and v is not None}


def style_digests(effect: Style) -> list[str]:
    """The sha256 of each style file (a resolved resource knows it already)."""
    from dreamkit.weights import sha256_of

    return [getattr(p, "sha256", None) or sha256_of(Path(p)) for p in effect.style]


def run_identity(settings: TrainSettings, effect: Style, images: list[Path]) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: the settings that shape training,
    the loss (with the style files' sha256) and the training images."""
    loss = loss_settings(effect)
    styles = style_digests(effect)
    listing = hashlib.sha256("\n".join(str(p) for p in images).encode()).hexdigest()
    return {**settings.identity(), "loss": json.dumps(loss, sort_keys=True), "styles": styles, "images": listing}


def training_folder(output: Path) -> Path:
    """Where a run keeps its checkpoint until the model is written: ``OUTPUT.train/``."""
    return output.with_name(output.name + ".train")


def preview_path(output: Path) -> Path:
    """The preview beside the model: ``NAME.preview.jpg``."""
    return output.with_name(output.stem + ".preview.jpg")


def write_preview(trainer: Trainer, photos: list[torch.Tensor], path: Path) -> torch.Tensor:
    """Each preview photo beside its stylised version, one row per photo; written to ``path`` and
    returned."""
    network = trainer.network
    was_training = network.training
    network.eval()
    try:
        model = trainer.as_model()
        rows = [torch.cat([photo, model.stylise(photo).float().cpu()], dim=-1) for photo in photos]
    finally:
        network.train(was_training)
    width = max(r.shape[-1] for r in rows)
    sheet = torch.cat([F.pad(r, (0, width - r.shape[-1])) for r in rows], dim=-2)
    save_image(sheet, path, overwrite=True)  # (atomic)
    return sheet


def preview_photos(sampler: CropSampler, size: int, count: int = 2) -> list[torch.Tensor]:
    """The first training images, shorter side ``size``: what the preview shows."""
    photos = []
    for index in range(min(count, len(sampler.paths))):
        picture = sampler.image(index).float().div(255)[None]
        scale = size / min(picture.shape[-2:])
        photos.append(F.interpolate(picture, size=(round(picture.shape[-2] * scale), round(picture.shape[-1] * scale)),
                                    mode="bilinear", antialias=scale < 1, align_corners=False).clamp(0, 1))
    return photos


def finished_model(trainer: Trainer, effect: Style, images: list[Path], style_thumbnail: torch.Tensor) -> FastStyleModel:
    """The trained network with what made it, ready to save."""
    last = trainer.history[-1] if trainer.history else [trainer.step, math.nan, math.nan, math.nan, math.nan]
    names = [Path(p).name for p in effect.style]
    training = {**trainer.settings.to_dict(), "steps_done": trainer.step, "images": len(images),
                "computed_in": "bf16" if trainer.bf16 else trainer.settings.dtype.replace("float", "fp"),
                "seconds": round(trainer.seconds, 1),
                "final_loss": dict(zip(("total", "style", "content", "tv"), last[1:]))}
    model = trainer.as_model(copy.deepcopy(trainer.network).float().cpu().eval(), style_thumbnail)
    model.meta = {"summary": f"{trainer.settings.architecture} network trained on {len(images)} images "
                             f"for {trainer.step} steps in the style of {', '.join(names)}",
                  "architecture": trainer.settings.architecture,
                  "style": [{"name": n, "sha256": s} for n, s in zip(names, style_digests(effect))],
                  "loss": loss_settings(effect), "training": training}
    return model


def style_thumbnail(effect: Style, side: int = 128) -> torch.Tensor:
    """The first style image, longest side ``side``, as uint8 (what ``weights list`` and the web
    page can show)."""
    style = effect.style_images(torch.device("cpu"))[0]
    scale = side / max(style.shape[-2:])
    small = F.interpolate(style, size=(max(1, round(style.shape[-2] * scale)), max(1, round(style.shape[-1] * scale))),
                          mode="bilinear", antialias=True, align_corners=False)
    return (small[0].clamp(0, 1) * 255).round().to(torch.uint8)


class _StopRequest:
    """Ctrl-C while training: finish the step, write a checkpoint, stop (a second Ctrl-C stops now)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopRequest":
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C is not ours to take
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class TrainResult:
    """How a run ended: ``finished`` (the model is written) or interrupted at ``step``."""

    finished: bool
    step: int
    resumed_from: int
    history: list[list[float]]
    seconds: float
    model_sha256: str | None = None
    restarts: list[int] = field(default_factory=list)  # (Ray) steps the workers came back from
    precision: str = ""  # what the network was computed in, and why


def train(effect: Style, images: list[Path], output: Path, settings: TrainSettings, *, host: Any,
          device: torch.device, progress: Any = None, on_step: Callable[[Trainer], None] | None = None) -> TrainResult:
    """Train in this process: resume from ``OUTPUT.train/checkpoint.pt`` if there is one, write a
    checkpoint every ``checkpoint_every`` steps and a preview every ``preview_every``, and the
    model file at the end (then the checkpoint folder is removed). Ctrl-C writes a checkpoint and
    returns unfinished. ``progress``: a :class:`dreamkit.progress.Progress` (None: silent)."""
    from dreamkit.progress import SilentProgress

    folder = training_folder(output)
    checkpoint = folder / "checkpoint.pt"
    identity = run_identity(settings, effect, images)
    state = read_checkpoint(checkpoint, identity)
    loss = TrainingLoss(effect, host, device, settings.size, settings.style_side, getattr(torch, settings.dtype))
    trainer = Trainer.create(settings, loss, device)
    if state is not None:
        trainer.restore(state)
    resumed_from = trainer.step
    sampler = CropSampler(images, settings.size, settings.seed)
    photos = preview_photos(sampler, settings.size) if settings.preview_every else []
    folder.mkdir(parents=True, exist_ok=True)
    progress = progress or SilentProgress()
    with _StopRequest() as stop, progress.bar(settings.steps, "train") as bar:
        bar.update(min(trainer.step, settings.steps))
        while trainer.step < settings.steps and not stop.requested:
            started = time.perf_counter()
            figures = trainer.run_step(sampler.batch(trainer.step, range(settings.batch)), positions=range(settings.batch))
            trainer.seconds += time.perf_counter() - started
            trainer.record(figures)
            bar.show(loss=figures["loss"], style=figures["style"], content=figures["content"])
            bar.update(1)
            if on_step is not None:
                on_step(trainer)
            if trainer.step % settings.checkpoint_every == 0 or trainer.step == settings.steps:
                trainer.save_checkpoint(checkpoint, identity)
            if photos and (trainer.step % settings.preview_every == 0 or trainer.step == settings.steps):
                sheet = write_preview(trainer, photos, preview_path(output))
                bar.preview(sheet)
    if trainer.step < settings.steps:
        trainer.save_checkpoint(checkpoint, identity)
        return TrainResult(False, trainer.step, resumed_from, trainer.history, trainer.seconds,
                           precision=trainer.precision_reason)
    digest = save_model(output, finished_model(trainer, effect, images, style_thumbnail(effect)))
    checkpoint.unlink(missing_ok=True)
    _remove_empty(folder)
    return TrainResult(True, trainer.step, resumed_from, trainer.history, trainer.seconds, digest,
                       precision=trainer.precision_reason)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


__all__ = ["CropSampler", "KIND", "LOSS_PARAMS", "PRECISIONS", "TrainResult", "TrainSettings", "Trainer", "TrainingError",
           "TrainingLoss", "computes_in_bf16", "loss_effect", "preview_path", "read_checkpoint", "readable_images",
           "run_identity", "train", "training_folder"]
