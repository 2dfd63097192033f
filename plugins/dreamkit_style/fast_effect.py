"""The ``fast_style`` effect: a trained style network (``dreamkit style train``) applied in one pass."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

from dreamkit import Effect, Param
from dreamkit.flow import Motion, came_from_inside, pixel_grid
from dreamkit.resources import in_models_folder
from dreamkit.tiling import memory_budget, tile_size_for
from dreamkit.weights_file import WeightsFileError

from .effect import CHANGED
from .model import FastStyleModel, load_model
from .transformer import NOISE_PERIOD

NOISE_AT = "fast_style.noise_at"  # the key of the noise positions in a sequence's context.state
NOISE_FRAMES = "fast_style.noise_frames"  # and of the frames they have been carried over
FRESH_STEP = (211, 367)  # activations the field is read shifted by per frame where the picture is new
#: Carried positions closer than this (px of the field per px of the frame) are drawn afresh: the
#: surface has been magnified twice since it was first seen (a zoom in), and its grain with it,
#: to twice the size the network was trained on.
MIN_SPACING = 0.5


class FastStyle(Effect):
    """Stylise with a network trained for one style (``dreamkit style train``): one forward pass
    instead of an optimisation, so milliseconds to a second instead of tens of seconds.

    ``model`` is a ``.dkstyle`` file (verified when read: a changed file is refused; its sha256
    goes into the recipe). ``strength`` mixes the result with the photo. Many images of one size
    go through the network together; an image too large for ``memory_mb`` is stylised in tiles
    with exactly the untiled result (instance norm statistics are gathered over the whole image
    first). In a video each frame keeps ``temporal`` of the previous result where the optical
    flow says it is the same surface (the ``style`` effect's test: trusted motion, unchanged input),
    and a network's noise (:class:`~.transformer.NoiseSource`) moves with the picture."""

    name = "fast_style"
    batchable = True
    summary = "Style transfer in one pass with a network trained by `dreamkit style train` (a .dkstyle file)."

    model = Param(str, None, resource="file", help="the trained style network (.dkstyle file, or its name in the "
                                                   "models folder)")
    strength = Param(float, 1.0, min=0.0, max=1.0, help="1: the stylised image; less mixes in the photo")
    tile_size = Param(int, None, min=0, max=16384, advanced=True,
                      help="tile core size in pixels (0: never tile; default: tile only what exceeds memory_mb)")
    memory_mb = Param(int, None, min=64, max=1 << 20, advanced=True,
                      help="memory for one pass, MiB (default: half of what is available when the run starts)")
    temporal = Param(float, 0.5, min=0.0, max=0.95,
                     help="in a frame sequence (a video): how much of the previous frame's result, moved along "
                          "the motion (optical flow), each pixel keeps where the motion is trusted and the "
                          "input did not change (0: every frame on its own)")

    @property
    def sequential(self) -> bool:  # type: ignore[override]
        """With ``temporal`` the frames of a video run in order (each sees the previous result)."""
        return self.temporal > 0

    def check(self) -> None:
        if not self.model:
            raise self.invalid("model", "give a trained style network, e.g. model=painting.dkstyle "
                                        "(made by `dreamkit style train`)")
        self.loaded("cpu")  # a file of another kind, or changed, is refused before any image runs

    def loaded(self, device: torch.device | str) -> FastStyleModel:
        """The model, read and verified once per file version and device."""
        path = Path(os.fspath(self.model))
        if not path.exists():  # a bare name: the models folder's (the front ends resolve it so too)
            path = in_models_folder(str(self.model)) or path
        try:
            stat = path.stat()
        except OSError:
            from dreamkit.weights_file import models_dir

            raise self.invalid("model", f"no such file (looked in {Path.cwd()} and in the models folder "
                                        f"{models_dir()})") from None
        try:
            return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device))
        except WeightsFileError as exc:
            raise self.invalid("model", str(exc)) from None

    def apply(self, image: torch.Tensor, context: Any) -> torch.Tensor:
        before, after = context.previous_input, context.previous_output
        follows = bool(self.temporal) and before is not None and after is not None \
            and before.shape == image.shape and after.shape == image.shape
        motion = Motion.between(before, image) if follows else None
        model = self.loaded(image.device)
        noise_at, source = None, model.network.noise_source()
        if self.temporal and source is not None:
            noise_at = carried_noise_positions(context.state, image, motion, source.stride)
        out = self._stylise(model, [image], [context], noise_at)[0]
        if motion is None:
            return out
        # Each frame's network output alone flickers (its texture shifts with small input
        # changes); held to the previous result where that is reliable, the texture follows the
        # motion. What moved or was uncovered takes the new frame's stylisation.
        held = ((image - motion.follow(before)).abs().amax(1, keepdim=True) <= CHANGED).to(image.dtype)
        held = held * motion.trusted.to(image)[None, None]
        return torch.lerp(out, motion.follow(after), self.temporal * held)

    def apply_batch(self, images: list[torch.Tensor], contexts: list[Any]) -> list[torch.Tensor]:
        """Images of one size run together, as many at once as the memory budget allows."""
        return self._stylise(self.loaded(images[0].device), images, contexts)

    def _stylise(self, model: FastStyleModel, images: list[torch.Tensor], contexts: list[Any],
                 noise_at: torch.Tensor | None = None) -> list[torch.Tensor]:
        """:meth:`apply_batch` with ``model`` loaded; ``noise_at`` (one image): where its noise is read."""
        device = images[0].device
        budget = memory_budget(device, self.memory_mb)
        per_pixel = model.network.bytes_per_pixel()
        results: list[torch.Tensor | None] = [None] * len(images)
        tiles_of: dict[int, int] = {}
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[-2:]), []).append(index)
        for (height, width), indices in by_size.items():
            tile = self._tile_size(model, height, width, per_pixel, budget)
            together = 1 if tile else max(1, budget // (per_pixel * height * width))
            for start in range(0, len(indices), together):
                chunk = indices[start:start + together]
                photos = torch.cat([images[i] for i in chunk])
                out = model.stylise(photos, tile, noise_at).to(photos.dtype)
                if self.strength < 1:
                    out = torch.lerp(photos, out, self.strength)
                for i, result in zip(chunk, out):
                    results[i] = result[None]
                    tiles_of[i] = tile
        for index, context in enumerate(contexts):
            context.add_result({"model": model.meta.get("summary", ""), "tile_size": tiles_of[index] or None})
        return results  # type: ignore[return-value]

    def _tile_size(self, model: FastStyleModel, height: int, width: int, per_pixel: int, budget: int) -> int:
        """``tile_size`` as given, else what the memory budget allows (0: one piece)."""
        if self.tile_size is not None:
            return self.tile_size
        return tile_size_for(per_pixel, height, width, budget, model.network.geometry())


def carried_noise_positions(state: dict[str, Any], image: torch.Tensor, motion: Motion | None,
                            stride: int) -> torch.Tensor:
    """Where each noise activation (every ``stride`` px) of this frame reads the network's fixed
    field (1×2×h×w, see :class:`~.transformer.NoiseSource`), kept in ``state`` from frame to frame
    at full resolution.

    The first frame reads the field at its own pixels (as a single image does). Each next frame
    takes the positions of the pixel it came from (the previous map moved along the flow, with
    its fractions: slow motion adds up instead of rounding away). What came in from outside the
    frame reads the field at its own pixels shifted by a step that changes every frame (at its
    own pixels alone, the strip a pan brings in would read the same noise every frame: streaks
    along the motion), and so does a surface magnified more than 1 / :data:`MIN_SPACING` times
    since it was first seen (a zoom in would otherwise enlarge the grain without end; an area the
    flow stretches out of its neighbour, as it may where something is uncovered, too). Fixed to
    the frame instead, the grain stood still while the picture moved under it: on a pan of 4 px
    a frame the result changed six times as much from frame to frame along the motion (measured
    in the README)."""
    height, width = image.shape[-2:]
    own = pixel_grid(height, width, image.device)
    before = state.get(NOISE_AT)
    if motion is None or before is None or before.shape[-2:] != (height, width):
        positions, frames = own, 0
    else:
        frames = state[NOISE_FRAMES] + 1
        # Within one period of the field: the positions stay small enough for float32 to carry
        # exactly to the cell however long the video.
        shift = [step * frames % NOISE_PERIOD * stride for step in FRESH_STEP]
        fresh = own + torch.tensor(shift, device=image.device, dtype=own.dtype)[None, :, None, None]
        carried = motion.follow(before)
        # Not the trust mask: what it distrusts (motion boundaries, a zoom's centre) lasts, and
        # fresh noise there every frame would flicker.
        keep = came_from_inside(motion.backward).to(image.device) & (_spacing(carried) >= MIN_SPACING)
        positions = torch.where(keep, carried, fresh)
    state[NOISE_AT], state[NOISE_FRAMES] = positions, frames
    return positions[..., ::stride, ::stride]


def _spacing(positions: torch.Tensor) -> torch.Tensor:
    """1×H×W: how far apart (in the field) a pixel's positions and its right and lower neighbours'
    are, the smaller of the two (1 where the map is the frame's own; the last row and column take
    their neighbour's)."""
    across = (positions[..., :, 1:] - positions[..., :, :-1]).norm(dim=1)
    down = (positions[..., 1:, :] - positions[..., :-1, :]).norm(dim=1)
    across = torch.cat([across, across[..., -1:]], -1) if across.shape[-1] else torch.ones_like(positions[:, 0])
    down = torch.cat([down, down[..., -1:, :]], -2) if down.shape[-2] else torch.ones_like(positions[:, 0])
    return torch.minimum(across, down)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int, device: str) -> FastStyleModel:
    return load_model(path, device)
