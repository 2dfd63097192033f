"""What the jobs of a batch do, apart from where they run.

Engines decide *where* jobs run (this process, Ray actors); a :class:`Work` says *what* each job
does, and is plain data that the Ray engine sends to its actors. :class:`PipelineWork` runs a
pipeline and writes images (``dreamkit run``); other commands bring their own (the retrieval
plugin's indexing embeds images), and get progress, failed records, Ray and its retries for free.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Protocol, Sequence

from ..pipeline import Pipeline
from ..plugins import PluginHost
from .jobs import BatchSettings, Job, JobRunner, base_record, batch_size_for


class Runner(Protocol):
    """Runs jobs in one process; models load once, on the first job that needs them."""

    def run_chunk(self, jobs: Sequence[Any], *, reraise: bool = False) -> Iterable[dict[str, Any]]:
        """One record per job, in order (as each is ready); a failure is a ``failed`` record
        (``reraise``: raised)."""

    def close(self) -> None:
        """Release what the runner holds open."""


class Work(ABC):
    """What every job of a batch does. Subclasses are picklable data with a ``settings``
    (:class:`~.jobs.BatchSettings`) and a ``job_type``: jobs have an ``item``
    (:class:`~.inputs.InputItem`, the input they work on) and travel as ``to_dict()`` /
    ``job_type.from_dict()``."""

    settings: BatchSettings
    job_type: ClassVar[type]

    @abstractmethod
    def runner(self, host: PluginHost | None) -> Runner:
        """A runner for this process (``host``: the plugin host, ``None`` for the default one)."""

    def job_to_dict(self, job: Any) -> dict[str, Any]:
        """A job as JSON-able data (to send it to another process)."""
        return job.to_dict()

    def job_from_dict(self, data: dict[str, Any]) -> Any:
        """The inverse of :meth:`job_to_dict`."""
        return self.job_type.from_dict(data)

    def chunk_size(self) -> int:
        """How many jobs a runner is handed at once (more when it batches them)."""
        return 1

    def chunks(self, jobs: Sequence[Any]) -> list[list[Any]]:
        """The groups of jobs runners are handed, each to one runner in one go, in input order:
        :meth:`chunk_size` at a time."""
        size = self.chunk_size()
        return [list(jobs[start:start + size]) for start in range(0, len(jobs), size)]

    def with_settings(self, **changes: Any) -> "Work":
        """A copy with some settings changed (the Ray engine picks each actor's device)."""
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))  # type: ignore[type-var]

    def lost_record(self, job: Any, error: str) -> dict[str, Any]:
        """The record of a job that never came back (its worker died every time)."""
        item = job.item
        return {**base_record(item.path, "failed", self.settings.seed, item.video_frame), "error": error}

    def cleanup(self, jobs: Sequence[Any]) -> None:
        """Remove what killed workers may have left half-written (nothing by default)."""


@dataclasses.dataclass
class PipelineWork(Work):
    """``dreamkit run``'s work: run ``pipeline`` on each input and write its outputs. Pickled as the
    pipeline's config: a Ray actor rebuilds it from its own plugins."""

    pipeline: Pipeline
    settings: BatchSettings = BatchSettings()
    job_type: ClassVar[type] = Job

    def runner(self, host: PluginHost | None) -> JobRunner:
        return JobRunner(self.pipeline, self.settings, host)

    def chunk_size(self) -> int:
        return batch_size_for(self.pipeline)

    def chunks(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """As :meth:`Work.chunks`, except that with a :attr:`~dreamkit.Pipeline.sequential`
        pipeline the frames of one video sequence are one chunk, in frame order (one runner
        carries the sequence; different videos, and the chunks of a long video split with
        ``--chunk-frames``, run in parallel)."""
        if not self.pipeline.sequential:
            return super().chunks(jobs)
        videos: dict[Any, list[Job]] = {}
        order: list[Any] = []  # videos in input order, after the images
        others: list[Job] = []
        for job in jobs:
            if job.item.video_frame is None:
                others.append(job)
                continue
            sequence = (job.item.path, job.item.first_frame)
            if sequence not in videos:
                videos[sequence] = []
                order.append(sequence)
            videos[sequence].append(job)
        chunks = super().chunks(others)
        return chunks + [sorted(videos[sequence], key=lambda job: job.item.video_frame) for sequence in order]

    def cleanup(self, jobs: Sequence[Job]) -> None:
        from .outputs import remove_stale_temporaries

        remove_stale_temporaries([job.plan for job in jobs])

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.pipeline.to_config(), "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.pipeline = Pipeline.from_config(state["config"])
        self.settings = state["settings"]
