"""The run context every pipeline step receives: device, seeded randomness, progress, results."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ContextManager

import torch

from .errors import DreamkitError
from .progress import Progress, ProgressBar, SilentProgress


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise DreamkitError(f"device {text!r} is not allowed; expected auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise DreamkitError(f"device {text!r} is not allowed; expected auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DreamkitError(f"device {text!r} was asked for but no CUDA GPU is available; use --device cpu or auto")
    return resolved


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for one step of one frame, independent of the other inputs in a batch."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


@dataclass
class RunContext:
    """What a step sees besides the image.

    * ``device``: where the image lives and where the effect should compute.
    * ``generator``: a CPU ``torch.Generator`` seeded from (run seed, step index, frame index), so
      the same recipe and seed give the same image whatever else is in the batch. Draw random
      numbers with it (on the CPU) and move them to ``device``.
    * ``results``: analysis records for the current frame; add with :meth:`add_result`.
    * ``source``: the input's file name (or ``None`` for in-memory images).
    * ``host``: the run's :class:`~dreamkit.plugins.PluginHost` (required): effects load weights,
      models and anything else plugins registered through it, never through a global.
    * ``artifacts``: where :meth:`save_artifact` puts images made on the way (the front end's
      choice, :mod:`dreamkit.artifacts`; ``None``: they are dropped).
    * ``previous_input`` / ``previous_output``: in a frame sequence, this step's input and output
      for the previous frame (``None`` for a single image and for the first frame). An effect that
      keeps a sequence coherent (``style``) starts from them; others ignore them.
    * ``earlier``: in a frame sequence, this step's (input, output) for the frames before, most
      recent first (``earlier[0]`` is the previous frame's), as many as the effect's
      :meth:`~dreamkit.effect.Effect.remembered_frames` (at most that many exist yet).
    * ``state``: in a frame sequence, a dict the step keeps from frame to frame (the same object
      for every frame of one sequence; an empty one for a single image), for what an effect
      carries along besides the images (``fast_style``: where its noise has moved to).
    """

    device: torch.device
    seed: int
    progress_bars: Progress = field(default_factory=SilentProgress)
    source: str | None = None
    step_index: int = 0
    frame_index: int = 0
    host: Any = None
    previous_input: torch.Tensor | None = None
    previous_output: torch.Tensor | None = None
    earlier: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    state: dict[str, Any] = field(default_factory=dict)
    artifacts: Any = None
    results: list[dict[str, Any]] = field(default_factory=list)
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        if self.host is None:
            raise TypeError("RunContext needs the run's plugin host: RunContext(..., host=host) "
                            "(dreamkit.get_host() is the process-wide one)")
        self.generator = torch.Generator("cpu")
        self.reseed()

    def reseed(self) -> None:
        """Reset ``generator`` for the current step and frame."""
        self.generator.manual_seed(derive_seed(self.seed, self.step_index, self.frame_index))

    def progress(self, total: int, desc: str) -> ContextManager[ProgressBar]:
        """``with context.progress(total, "octave 1") as bar: bar.update(1); bar.show(loss=0.3)``:
        a bar of the run's front end (terminal, web page, silent); only what
        :class:`~dreamkit.progress.ProgressBar` declares may be used."""
        return self.progress_bars.bar(total, desc)

    def save_artifact(self, name: str, image: torch.Tensor) -> None:
        """Keep an image made on the way (an intermediate step) as ``name`` (``x.png``), where the
        run's front end keeps artifacts; nothing happens when it keeps none."""
        if self.artifacts is not None:
            self.artifacts.save(name, image)

    def add_result(self, record: dict[str, Any]) -> None:
        """Record an analysis result (plain JSON-serialisable dict) for the current frame.

        The record is tagged with the effect that produced it (``"effect"`` key) by the pipeline.
        """
        import json

        try:
            json.dumps(record)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"analysis results must be JSON-serialisable: {exc}") from None
        self.results.append(dict(record))
