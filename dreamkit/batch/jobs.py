"""One job of a batch: load one input, run the pipeline, write its outputs, return its record.

:class:`InputRunner` loads inputs and reports failures for any kind of work; :class:`JobRunner`
is ``dreamkit run``'s (a pipeline, then outputs). Both engines run jobs through them (the local
engine in this process, the Ray engine in its actors), so outputs, recipes and records are the same whichever ran them. A bad
input or a failing effect makes a ``failed`` record, never an exception that stops the batch.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ..context import resolve_device
from ..errors import DreamkitError, environment_failure
from ..io import load_image, max_pixels_from_env
from ..pipeline import Pipeline
from ..plugins import PluginHost
from ..recipe import describe_input, make_recipe
from ..weights import sha256_of
from .encode import DEFAULT_CRF
from .outputs import OutputPlan, write_result
from .video import FrameReader

log = logging.getLogger("dreamkit")

#: Inputs a batched group holds decoded at once, in pixels (float32 RGB: 12 bytes a pixel, ~380 MB).
MAX_BATCH_PIXELS = 32_000_000
#: How many inputs the engines hand a pipeline with a batchable step at once.
BATCH_SIZE = 16


def batch_size_for(pipeline: Pipeline) -> int:
    """:data:`BATCH_SIZE` when some step is ``batchable`` (``classify``), else 1."""
    return BATCH_SIZE if any(step.batchable for step in pipeline.steps) else 1


@dataclass(frozen=True)
class BatchSettings:
    """How every job of a batch runs (plain data: the Ray engine sends it to its actors)."""

    seed: int = 0
    device: str = "auto"
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int | None = None
    frame_duration_ms: int = 80
    #: The quality of videos made from video inputs' frames (x264's CRF: 0 lossless .. 51).
    crf: int = DEFAULT_CRF
    #: Keep a video input's PNG frames once its video is made (``--frames``); else only the video stays.
    keep_frames: bool = False
    #: The part of each video input to run (seconds; ``video_duration`` None: to the end).
    video_start: float = 0.0
    video_duration: float | None = None
    #: Frames per chunk of a long video (0: one sequence; see :class:`~.video.FrameRange`).
    video_chunk: int = 0
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

    @property
    def item(self) -> Any:
        """The :class:`~.inputs.InputItem` this job works on."""
        return self.plan.item

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


class InputRunner:
    """Runs jobs on inputs (anything with an ``item``: an :class:`~.inputs.InputItem`): loads each
    input, hands groups of loaded images to :meth:`_run_group`, and turns any failure into a
    ``failed`` record. Subclasses say what a group's work is: :class:`JobRunner` runs a pipeline."""

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.max_pixels = settings.max_pixels or max_pixels_from_env()
        self._frames = FrameReader()
        self._video_hash: tuple[Any, str] | None = None
        #: Why this runner stopped taking work (an :class:`~dreamkit.errors.EnvironmentFailure`), if it did.
        self.stopped: str | None = None

    def __call__(self, job: Any, *, reraise: bool = False) -> dict[str, Any]:
        """Run ``job``; a failure becomes a ``failed`` record (``reraise``: the exception itself,
        for a run of one input, which keeps the single-image command's exit codes)."""
        return next(iter(self.run_chunk([job], reraise=reraise)))

    def run_chunk(self, jobs: Sequence[Any], *, reraise: bool = False) -> Iterable[dict[str, Any]]:
        """Run several jobs, handing their loaded images to :meth:`_run_group` together; decoded
        images are held at most :data:`MAX_BATCH_PIXELS` at a time. A record's ``seconds`` is its
        share of its group's time."""
        records: list[dict[str, Any]] = []
        group: list[tuple[Any, dict[str, Any], Any]] = []
        pixels = 0
        start = time.perf_counter()
        for job in jobs:
            if self.stopped:
                break
            record = base_record(job.item.path, "done", self.settings.seed, job.item.video_frame)
            records.append(record)
            loaded = self._guard(record, reraise, lambda: self._load(job.item))
            if loaded is None:
                continue
            group.append((job, record, loaded))
            pixels += loaded.shape[-1] * loaded.shape[-2]
            if pixels >= MAX_BATCH_PIXELS:
                self._run_group(group, reraise)
                group, pixels = [], 0
        if group:
            self._run_group(group, reraise)
        records = [record for record in records if record["status"] is not None]  # None: not started (stopped)
        share = round((time.perf_counter() - start) / max(1, len(records)), 4)
        for record in records:
            record["seconds"] = share
        return records

    def _run_group(self, group: list[tuple[Any, dict[str, Any], Any]], reraise: bool) -> None:
        """Do the work on a group of (job, record, loaded image): fill in or fail each record."""
        raise NotImplementedError

    def _guard(self, record: dict[str, Any], reraise: bool, work: Callable[[], Any]) -> Any:
        """``work()``, or ``None`` with ``record`` marked failed (KeyboardInterrupt passes)."""
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 (a bad input or a bug on one input: report, go on)
            self._fail(record, exc, reraise)
            return None

    def _fail(self, record: dict[str, Any], exc: Exception, reraise: bool) -> None:
        environment = environment_failure(exc)
        if environment is not None:  # the disk is full: no later job can succeed either
            if reraise:
                raise environment from exc
            self.stopped = str(environment)
            record.update(status="failed", error=str(environment), fatal=True)
            return
        if reraise:
            raise exc
        if isinstance(exc, DreamkitError):
            record.update(status="failed", error=str(exc))
            return
        record.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(exc)))
        if self.device.type == "cuda":  # out of memory on one input must not fail the next ones
            torch.cuda.empty_cache()

    def _load(self, item: Any) -> torch.Tensor:
        if item.video_frame is None:
            return load_image(item.path, background=self.settings.background, max_pixels=self.max_pixels)
        return self._frames.read(item.path, item.video_frame, self.max_pixels)

    def _sha256(self, item: Any) -> str:
        """The input's sha256; a video's is computed once for all its frames."""
        if item.video_frame is None:
            return sha256_of(item.path)
        stat = item.path.stat()
        key = (item.path, stat.st_size, stat.st_mtime_ns)
        if self._video_hash is None or self._video_hash[0] != key:
            self._video_hash = (key, sha256_of(item.path))
        return self._video_hash[1]

    def close(self) -> None:
        self._frames.close()


class JobRunner(InputRunner):
    """Runs ``dreamkit run``'s jobs with one pipeline: each input through the pipeline (the
    batchable steps seeing a group together, :meth:`Pipeline.run_many`), then its outputs written."""

    def __init__(self, pipeline: Pipeline, settings: BatchSettings, host: PluginHost | None = None) -> None:
        super().__init__(settings)
        self.pipeline = pipeline.resolved(host)  # once: a Ray actor's pipeline arrives as plain config
        self.host = host

    def run_chunk(self, jobs: Sequence[Job], *, reraise: bool = False) -> Iterable[dict[str, Any]]:
        """As :meth:`InputRunner.run_chunk`; a chunk of one video's frames with a sequential
        pipeline (:meth:`~.work.PipelineWork.chunks`) runs as one frame sequence."""
        if self.pipeline.sequential and jobs and all(job.item.video_frame is not None and job.item.path == jobs[0].item.path
                                                     for job in jobs):
            return self._run_sequence(jobs, reraise)
        return super().run_chunk(jobs, reraise=reraise)

    def _run_group(self, group: list[tuple[Job, dict[str, Any], Any]], reraise: bool) -> None:
        results = self.pipeline.run_many([image for _, _, image in group], seed=self.settings.seed, device=self.device,
                                         progress=self.settings.progress, host=self.host,
                                         sources=[job.plan.item.path.name for job, _, _ in group],
                                         artifacts=[job.plan.artifacts for job, _, _ in group],
                                         frame_indices=[job.item.video_frame or 0 for job, _, _ in group])
        for (job, record, _), result in zip(group, results):
            if self.stopped:
                record["status"] = None  # not started: the run stops
                continue
            if isinstance(result, Exception):
                self._fail(record, result, reraise)
            else:
                self._guard(record, reraise, lambda: self._write(job, result, record))

    def _run_sequence(self, jobs: Sequence[Job], reraise: bool) -> Iterator[dict[str, Any]]:
        """Frames of one video through one :class:`~dreamkit.pipeline.FrameSequence`, from the
        sequence's first frame (the video's, or ``--start``'s) to the last job's, yielding each job's record when its frame is
        written. Frames without a job (done by an earlier run) are run again but not written, so
        every frame sees the same previous frame as in a run of the whole video, and a replay
        (which runs frames 0..N) gives its pixels."""
        wanted = {job.item.video_frame: job for job in jobs}
        path, first = jobs[0].item.path, jobs[0].item.first_frame
        sequence = self.pipeline.sequence(seed=self.settings.seed, device=self.device, progress=self.settings.progress,
                                          source=path.name, host=self.host, start=first)
        for index in range(first, max(wanted) + 1):
            if self.stopped:
                return
            job = wanted.get(index)
            start = time.perf_counter()
            record = base_record(path, "done", self.settings.seed, index)
            fails = reraise and job is not None  # a frame only warming up the sequence fails quietly
            image = self._guard(record, fails, lambda: self._frames.read(path, index, self.max_pixels))
            if image is not None:
                result = self._guard(record, fails, lambda: sequence.push(image, job.plan.artifacts if job else None))
                if result is not None and job is not None:
                    self._guard(record, reraise, lambda: self._write(job, result, record))
            if job is not None:
                record["seconds"] = round(time.perf_counter() - start, 4)
                yield record

    def _write(self, job: Job, result: Any, record: dict[str, Any]) -> None:
        item = job.plan.item
        source = describe_input(item.path, self.settings.background, video_frame=item.video_frame,
                                sha256=self._sha256(item), first_frame=item.first_frame)
        recipe = make_recipe(self.pipeline, self.settings.seed, self.device, source)
        record.update(write_result(result, job.plan, recipe, overwrite=job.replace,
                                   frame_duration_ms=self.settings.frame_duration_ms))
        record["results"] = results_by_frame(record["frames"])
