"""One job of a batch: load one input, run the pipeline, write its outputs, return its record.

Both engines run jobs through :class:`JobRunner` (the local engine in this process, the Ray
engine in its actors), so outputs, recipes and records are the same whichever ran them. A bad
input or a failing effect makes a ``failed`` record, never an exception that stops the batch.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..context import resolve_device
from ..errors import DreamkitError
from ..io import load_image, max_pixels_from_env
from ..pipeline import Pipeline
from ..plugins import PluginHost
from ..recipe import describe_input, make_recipe
from ..weights import sha256_of
from .outputs import OutputPlan, write_result
from .video import FrameReader

log = logging.getLogger("dreamkit")


@dataclass(frozen=True)
class BatchSettings:
    """How every job of a batch runs (plain data: the Ray engine sends it to its actors)."""

    seed: int = 0
    device: str = "auto"
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int | None = None
    frame_duration_ms: int = 80
    #: Per-step progress bars of long effects (the batch's own bar is the engine's).
    progress: bool | None = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    """One input with its output plan; ``replace`` allows replacing existing outputs (``--overwrite``,
    or this job's own incomplete outputs)."""

    plan: OutputPlan
    replace: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "replace": self.replace}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        return cls(OutputPlan.from_dict(data["plan"]), data["replace"])


def base_record(path: Any, status: str, seed: int, video_frame: int | None = None) -> dict[str, Any]:
    """The fields every record has, whatever happened to the input at ``path``."""
    return {"input": str(path), "video_frame": video_frame, "status": status, "seed": seed,
            "frames": [], "animation": None, "results": [], "error": None, "seconds": 0.0}


def results_by_frame(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All frames' analysis records, each tagged with its frame index."""
    return [{**r, "frame": index} for index, frame in enumerate(frames) for r in frame["results"]]


class JobRunner:
    """Runs jobs with one pipeline; models load once, on the first job that needs them."""

    def __init__(self, pipeline: Pipeline, settings: BatchSettings, host: PluginHost | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.host = host
        self.device = resolve_device(settings.device)
        self.max_pixels = settings.max_pixels or max_pixels_from_env()
        self._frames = FrameReader()
        self._video_hash: tuple[Any, str] | None = None

    def __call__(self, job: Job, *, reraise: bool = False) -> dict[str, Any]:
        """Run ``job``; a failure becomes a ``failed`` record (``reraise``: the exception itself,
        for a run of one input, which keeps the single-image command's exit codes)."""
        plan = job.plan
        record = base_record(plan.item.path, "done", self.settings.seed, plan.item.video_frame)
        start = time.perf_counter()
        try:
            image = self._load(plan)
            source = describe_input(plan.item.path, self.settings.background, video_frame=plan.item.video_frame,
                                    sha256=self._sha256(plan))
            result = self.pipeline.run(image, seed=self.settings.seed, device=self.device,
                                       progress=self.settings.progress, source=plan.item.path.name, host=self.host)
            recipe = make_recipe(self.pipeline, self.settings.seed, self.device, source)
            record.update(write_result(result, plan, recipe, overwrite=job.replace,
                                       frame_duration_ms=self.settings.frame_duration_ms))
            record["results"] = results_by_frame(record["frames"])
        except KeyboardInterrupt:
            raise
        except DreamkitError as exc:
            if reraise:
                raise
            record.update(status="failed", error=str(exc))
        except Exception as exc:  # a bug or out of memory on one input: report it, go on with the rest
            if reraise:
                raise
            record.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc())
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        record["seconds"] = round(time.perf_counter() - start, 4)
        return record

    def _load(self, plan: OutputPlan) -> torch.Tensor:
        item = plan.item
        if item.video_frame is None:
            return load_image(item.path, background=self.settings.background, max_pixels=self.max_pixels)
        return self._frames.read(item.path, item.video_frame, self.max_pixels)

    def _sha256(self, plan: OutputPlan) -> str:
        """The input's sha256; a video's is computed once for all its frames."""
        item = plan.item
        if item.video_frame is None:
            return sha256_of(item.path)
        stat = item.path.stat()
        key = (item.path, stat.st_size, stat.st_mtime_ns)
        if self._video_hash is None or self._video_hash[0] != key:
            self._video_hash = (key, sha256_of(item.path))
        return self._video_hash[1]

    def close(self) -> None:
        self._frames.close()
