"""Pipelines: an ordered list of effects, run image by image, frame by frame.

A step receives a 1×C×H×W float image (0..1, on the run's device) and returns a new image, or a
list of images when it produces a frame sequence (a zoom). Later steps then run on every frame of
the sequence. Analysis effects leave the image as it is and add JSON records to the context; the
records are collected per frame.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from .context import RunContext, resolve_device
from .progress import Progress, make_progress
from .artifacts import as_artifacts
from .resources import PathResolver, resolve_values
from .effect import Effect
from .errors import ConfigError
from .plugins import PluginHost, get_host

_STEP_KEYS = {"effect", "params"}
_CONFIG_KEYS = {"steps"}


@dataclass
class Frame:
    """One output image and the analysis records made for it."""

    image: torch.Tensor
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunResult:
    """What :meth:`Pipeline.run` returns: one frame, or several for a sequence."""

    frames: list[Frame]

    @property
    def image(self) -> torch.Tensor:
        """The single output image (1×C×H×W); raises for a sequence."""
        if len(self.frames) != 1:
            raise ValueError(f"this run produced {len(self.frames)} frames; use .frames")
        return self.frames[0].image

    @property
    def results(self) -> list[list[dict[str, Any]]]:
        """Analysis records, one list per frame."""
        return [frame.results for frame in self.frames]


def split_effect_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:key=value,key=[a,b]"`` → ``("name", {"key": "value", "key2": "[a,b]"})``.

    Commas inside square brackets belong to a list value.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"effect spec {spec!r} has no effect name; expected NAME[:key=value,...]")
    values: dict[str, str] = {}
    for item in _split_top_level(rest):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"effect spec {spec!r}: {item!r} is not key=value")
        if key.strip() in values:
            raise ConfigError(f"effect spec {spec!r}: parameter '{key.strip()}' is given twice")
        values[key.strip()] = value.strip()
    return name, values


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _as_batch(image: Any) -> torch.Tensor:
    """Accept a C×H×W or 1×C×H×W float tensor in 0..1, or a PIL image."""
    if not isinstance(image, torch.Tensor):
        from .io import pil_to_tensor

        image = pil_to_tensor(image)
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or not image.is_floating_point():
        raise ValueError(
            f"a pipeline takes one image: a float tensor C×H×W or 1×C×H×W in 0..1; got {tuple(image.shape)} {image.dtype}"
        )
    return image


class Pipeline:
    """An ordered list of effects.

    >>> pipeline = Pipeline([host.effect("resize")(scale=0.5)])
    >>> result = pipeline.run(image, seed=1)
    """

    def __init__(self, steps: Iterable[Effect]) -> None:
        self.steps = list(steps)
        for index, step in enumerate(self.steps):
            if not isinstance(step, Effect):
                raise TypeError(f"pipeline step {index} is {type(step).__name__}, not a dreamkit Effect")

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_specs(cls, specs: Sequence[str], host: PluginHost | None = None) -> "Pipeline":
        """Build from command-line specs such as ``["resize:scale=0.5", "posterize:levels=3"]``."""
        host = host or get_host()
        steps = []
        for spec in specs:
            name, values = split_effect_spec(spec)
            steps.append(host.effect(name).from_strings(values))
        return cls(steps)

    @classmethod
    def from_config(cls, config: dict[str, Any] | str | Path, host: PluginHost | None = None,
                    resolve: Any = None) -> "Pipeline":
        """Build from a dict, or from a ``.json``/``.toml`` recipe file or a dreamkit PNG.
        ``resolve(effect, param, value, values)`` resolves file parameters before each effect is
        built (:mod:`dreamkit.resources`; the web page passes its uploads' resolver); a recipe
        file's are resolved relative to it by default, a dict's are left for :meth:`run`."""
        host = host or get_host()
        if isinstance(config, (str, Path)):
            if resolve is None:  # files a recipe names are relative to the recipe
                resolve = PathResolver(Path(config).parent, host)
            config = load_config_file(Path(config))
        if not isinstance(config, dict):
            raise ConfigError(f"a pipeline config is a mapping with a 'steps' list, not {type(config).__name__}")
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise ConfigError(f"pipeline config: unknown key {sorted(unknown)[0]!r}; allowed keys: steps")
        steps = config.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ConfigError("pipeline config: 'steps' must be a non-empty list of {effect = NAME, params = {...}}")
        built = []
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("effect"), str):
                raise ConfigError(f"pipeline config: step {index} must be a mapping with an 'effect' name")
            extra = set(step) - _STEP_KEYS
            if extra:
                raise ConfigError(f"pipeline config: step {index}: unknown key {sorted(extra)[0]!r}; allowed keys: effect, params")
            params = step.get("params", {})
            if not isinstance(params, dict):
                raise ConfigError(f"pipeline config: step {index}: 'params' must be a mapping")
            effect_class = host.effect(step["effect"])
            if resolve is not None:
                params = resolve_values(effect_class, params, resolve)
            built.append(effect_class(**params))
        return cls(built)

    def resolved(self, host: PluginHost | None = None, base: str | Path | None = None) -> "Pipeline":
        """This pipeline with every file parameter resolved (:mod:`dreamkit.resources`): paths
        relative to ``base`` (default: the working folder) become resources with their sha256.
        Returns ``self`` when there is nothing left to resolve. ``run`` calls it; front ends that
        take files another way (the web page's uploads) resolve first with their own resolver."""
        from .resources import resolve_pipeline

        return resolve_pipeline(self, PathResolver(Path(base) if base is not None else None, host or get_host()))

    def to_config(self) -> dict[str, Any]:
        """``{"steps": [{"effect": name, "params": {...}}, ...]}``, plain JSON/TOML-able data."""
        return {"steps": [step.to_config() for step in self.steps]}

    def save(self, path: str | Path, base: str | Path | None = None) -> None:
        """Write the config as JSON or TOML, chosen by the file extension. File parameters given
        as paths relative to ``base`` (default: the working folder, as :meth:`resolved` reads
        them) are written relative to the recipe's folder, where :meth:`from_config` reads them."""
        from .io import atomic_write_bytes
        from .resources import relative_to_recipe, resource_params

        path = Path(path)
        config = self.to_config()
        base = Path.cwd() if base is None else Path(base)
        for step, effect in zip(config["steps"], self.steps):
            for name in resource_params(effect):
                if name in step["params"]:
                    step["params"][name] = relative_to_recipe(step["params"][name], base, path.parent)
        if path.suffix == ".json":
            data = json.dumps(config, indent=2).encode() + b"\n"
        elif path.suffix == ".toml":
            import tomli_w

            data = tomli_w.dumps(config).encode()
        else:
            raise ConfigError(f"recipe file {path}: unknown extension {path.suffix!r}; use .json or .toml")
        atomic_write_bytes(path, data)

    # -- running -----------------------------------------------------------------------------
    @property
    def sequential(self) -> bool:
        """True when a step carries state from frame to frame (:attr:`Effect.sequential`,
        ``style``): a video's frames must then run in order, through one :class:`FrameSequence`."""
        return any(step.sequential for step in self.steps)

    def run(
        self,
        image: Any,
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
        progress: bool | None | Progress = False,
        source: str | None = None,
        host: PluginHost | None = None,
        artifacts: Any = None,
    ) -> RunResult:
        """Run every step on ``image`` and return the frames with their analysis records.
        ``progress``: tqdm bars on stderr (True, or None: when it is a terminal), or a
        :class:`~dreamkit.progress.Progress` whose bars report elsewhere.

        ``image`` may also be a list of images: a frame sequence (video frames), run as
        :meth:`sequence` runs it, each frame seeing the previous one's input and output.
        ``artifacts``: a folder (or :class:`~dreamkit.artifacts.Artifacts`) for images effects make
        on the way (``save_every``); default: dropped."""
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise ValueError("a pipeline needs an image or a non-empty list of frames")
        sequence = self.sequence(seed=seed, device=device, progress=progress, source=source, host=host,
                                 artifacts=artifacts)
        return RunResult([frame for item in images for frame in sequence.push(item).frames])

    def sequence(
        self,
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
        progress: bool | None | Progress = False,
        source: str | None = None,
        host: PluginHost | None = None,
        artifacts: Any = None,
        start: int = 0,
    ) -> "FrameSequence":
        """A run over a frame sequence fed one frame at a time (:meth:`FrameSequence.push`): a
        video's frames are decoded, run and written one by one, never all held at once. Each
        step sees the previous frame's input and output for it (``context.previous_*``).
        ``start``: the index of the first frame pushed (a video frame run on its own keeps its
        index, which seeds its randomness). Options as for :meth:`run`."""
        run = _Run(host or get_host(), resolve_device(device), seed, make_progress(progress), as_artifacts(artifacts))
        return FrameSequence(run, self.resolved(run.host).steps, source, start)

    def run_many(
        self,
        images: Sequence[Any],
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
        progress: bool | None = False,
        sources: Sequence[str | None] | None = None,
        host: PluginHost | None = None,
        artifacts: Sequence[Any] | None = None,
        frame_indices: Sequence[int] | None = None,
    ) -> list[RunResult | Exception]:
        """Run several independent images, each exactly as :meth:`run` would, but the steps of
        ``batchable`` effects (``classify``) see all of them in one call. An image whose step
        raises gets the exception in its place and drops out; the others go on.

        A batched step that raises is run again image by image, so only the culprit fails.
        ``artifacts``: one place per image (see :meth:`run`), or None. ``frame_indices``: each
        image's frame index (``start`` of :meth:`sequence`: video frames run independently)."""
        run = _Run(host or get_host(), resolve_device(device), seed, make_progress(progress))
        places = [as_artifacts(a) for a in artifacts] if artifacts is not None else [None] * len(images)
        steps = self.resolved(run.host).steps
        sources = list(sources) if sources is not None else [None] * len(images)
        starts = list(frame_indices) if frame_indices is not None else [0] * len(images)
        lanes: list[list[Frame] | Exception] = []
        for image in images:
            try:
                lanes.append([Frame(_as_batch(image).to(run.device))])
            except Exception as exc:  # noqa: BLE001 (one bad image drops out, as in any step)
                lanes.append(exc)
        for step_index, effect in enumerate(steps):
            live = [i for i, lane in enumerate(lanes) if not isinstance(lane, Exception)]
            if effect.batchable and len(live) > 1:
                batched = run.batched_step(effect, step_index, [lanes[i] for i in live], [sources[i] for i in live],
                                           [starts[i] for i in live])
                if batched is not None:
                    for i, frames in zip(live, batched):
                        lanes[i] = frames
                    continue
            for i in live:
                try:
                    lanes[i] = run.step(effect, step_index, lanes[i], sources[i], _Carry(starts[i]), places[i])
                except Exception as exc:  # noqa: BLE001
                    lanes[i] = exc
        return [lane if isinstance(lane, Exception) else RunResult(lane) for lane in lanes]

    # -- container protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and other.steps == self.steps

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"


class FrameSequence:
    """One pipeline run over a frame sequence, fed a frame at a time (see :meth:`Pipeline.sequence`).

    Each step keeps its own memory of the sequence (a :class:`_Carry`), so frame-by-frame pushes
    give exactly what one call on the whole list would. A push that raises leaves the steps it
    did not reach where they were: the next frame sees the last frame they ran as its previous.
    """

    def __init__(self, run: "_Run", steps: Sequence[Effect], source: str | None, start: int = 0) -> None:
        self._run = run
        self._steps = list(steps)
        self._carries = [_Carry(start, remember=effect.remembered_frames()) for effect in self._steps]
        self.source = source

    def push(self, image: Any, artifacts: Any = None) -> RunResult:
        """Run the next frame through every step; ``artifacts``: where this frame's go (default:
        the sequence's)."""
        frames = [Frame(_as_batch(image).to(self._run.device))]
        place = as_artifacts(artifacts)
        for step_index, (effect, carry) in enumerate(zip(self._steps, self._carries)):
            frames = self._run.step(effect, step_index, frames, self.source, carry, place)
        return RunResult(frames)


@dataclass
class _Carry:
    """What a step remembers of the sequence it runs over: the next frame's index, and the
    input and output of the last ``remember`` frames (``context.earlier``; the previous one is also
    ``context.previous_*``), and what the effect keeps besides (``context.state``)."""

    frame_index: int = 0
    remember: int = 1
    earlier: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def previous_input(self) -> torch.Tensor | None:
        return self.earlier[0][0] if self.earlier else None

    @property
    def previous_output(self) -> torch.Tensor | None:
        return self.earlier[0][1] if self.earlier else None

    def moved_on(self, image: torch.Tensor, output: torch.Tensor) -> None:
        """Past one more frame: ``image`` went in, ``output`` came out."""
        self.frame_index += 1
        self.earlier = ((image, output), *self.earlier)[:max(1, self.remember)]


@dataclass
class _Run:
    """What every step of one run shares: the host, the device, the seed and the progress bars."""

    host: PluginHost
    device: torch.device
    seed: int
    bars: Progress
    artifacts: Any = None

    def context(self, step_index: int, carry: _Carry, source: str | None, artifacts: Any = None) -> RunContext:
        return RunContext(self.device, self.seed, self.bars, source, step_index, carry.frame_index, self.host,
                          previous_input=carry.previous_input, previous_output=carry.previous_output,
                          earlier=carry.earlier, state=carry.state,
                          artifacts=artifacts if artifacts is not None else self.artifacts)

    def step(self, effect: Effect, step_index: int, frames: list[Frame], source: str | None,
             carry: _Carry, artifacts: Any = None) -> list[Frame]:
        """One step on ``frames`` (one image, or the frames a zoom made of it), in order
        (``dreamkit_run_step`` per frame), ``carry`` moving on by each."""
        produced: list[Frame] = []
        for frame in frames:
            context = self.context(step_index, carry, source, artifacts)
            output = self.host.hook.dreamkit_run_step(effect=effect, image=frame.image, context=context)
            made = _frames_out(effect, output, frame, context)
            carry.moved_on(frame.image, made[-1].image)
            produced += made
        return produced

    def batched_step(self, effect: Effect, step_index: int, lanes: list[list[Frame]],
                     sources: list[str | None], starts: list[int]) -> list[list[Frame]] | None:
        """One step on every frame of several images in one ``dreamkit_run_batch_step`` call;
        ``None`` if it raised or broke the contract (the caller then goes image by image)."""
        pairs = [(lane_index, frame_index, frame) for lane_index, lane in enumerate(lanes)
                 for frame_index, frame in enumerate(lane)]
        contexts = [self.context(step_index, _Carry(starts[lane_index] + frame_index), sources[lane_index])
                    for lane_index, frame_index, _ in pairs]
        for context, (lane_index, frame_index, _) in zip(contexts, pairs):  # the input before, never an output
            context.previous_input = lanes[lane_index][frame_index - 1].image if frame_index else None
        try:
            outputs = self.host.hook.dreamkit_run_batch_step(effect=effect, images=[f.image for _, _, f in pairs],
                                                             contexts=contexts)
            if not isinstance(outputs, (list, tuple)) or len(outputs) != len(pairs):
                raise TypeError(f"effect '{effect.name}': apply_batch must return one image per image")
            results: list[list[Frame]] = [[] for _ in lanes]
            for (lane_index, _, frame), context, output in zip(pairs, contexts, outputs):
                if isinstance(output, (list, tuple)):
                    raise TypeError(f"effect '{effect.name}': apply_batch must return one image per image")
                results[lane_index] += _frames_out(effect, output, frame, context)
        except Exception:  # noqa: BLE001 (retried image by image, which says who failed and why)
            return None
        return results


def _frames_out(effect: Effect, output: Any, frame: Frame, context: RunContext) -> list[Frame]:
    records = [{"effect": effect.name, "step": context.step_index, **record} for record in context.results]
    return [Frame(image, [*frame.results, *records]) for image in _check_output(effect, output, frame.image)]


def _check_output(effect: Effect, output: Any, given: torch.Tensor) -> list[torch.Tensor]:
    images = list(output) if isinstance(output, (list, tuple)) else [output]
    if not images:
        raise TypeError(f"effect '{effect.name}' returned an empty frame sequence")
    for image in images:
        if not (isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[0] == 1 and image.is_floating_point()):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise TypeError(f"effect '{effect.name}' returned {shape}; an effect must return a 1×C×H×W float tensor or a list of them")
        if image.device != given.device:
            raise TypeError(f"effect '{effect.name}' returned an image on {image.device}, expected {given.device}")
    return images


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a recipe: ``.json``, ``.toml``, or the recipe embedded in a PNG written by dreamkit."""
    if not path.exists():
        raise ConfigError(f"recipe file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".png":
            from .io import read_recipe

            return read_recipe(path)["pipeline"]
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    raise ConfigError(f"recipe file {path}: unknown extension {path.suffix!r}; use .json, .toml or a dreamkit .png")


__all__ = ["Frame", "FrameSequence", "Pipeline", "RunResult", "split_effect_spec", "load_config_file"]
