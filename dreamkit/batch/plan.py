"""Planning a batch: everything decided before the first image is processed.

Usage errors (output folder not writable, outputs that would replace an input, outputs made by
another recipe without ``--overwrite``) stop the run here, with nothing written. Bad *inputs* do
not: they become ``failed`` records and the rest of the batch runs. Outputs already made by this
very job (same recipe and input hash) become ``skipped`` records: that is how a re-run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

from ..errors import OutputError
from ..pipeline import Pipeline
from ..recipe import describe_input
from .encode import VideoAssembler, video_of
from .inputs import InputProblem, list_inputs
from .jobs import BatchSettings, Job, base_record, results_by_frame
from .outputs import OutputPlan, assign_outputs, check_writable, output_suffix
from .resume import State, existing_state
from .video import FrameRange
from .work import PipelineWork


@dataclass
class BatchPlan:
    """What a batch will do: ``jobs`` to run, and the records already known (inputs that could
    not be listed, ignored files, outputs already done)."""

    pipeline: Pipeline
    settings: BatchSettings
    outdir: Path
    jobs: list[Job] = field(default_factory=list)
    known: list[dict[str, Any]] = field(default_factory=list)

    @property
    def work(self) -> PipelineWork:
        """What each job does: run the pipeline, write the outputs."""
        return PipelineWork(self.pipeline, self.settings)

    @property
    def total(self) -> int:
        """Records the run will produce: one per input, listed problem and ignored file."""
        return len(self.jobs) + len(self.known)

    def video_assembler(self) -> VideoAssembler:
        """What encodes each video input once all its frames are done (at ``settings.crf``)."""
        videos = VideoAssembler(self.settings.crf, keep_frames=self.settings.keep_frames)
        videos.expect(self)
        return videos

    def single_input(self) -> bool:
        """Exactly one input and nothing else: it keeps the one-image command's exit codes."""
        return self.total == 1


def plan_batch(
    pipeline: Pipeline,
    sources: Sequence[str | Path],
    outdir: str | Path,
    *,
    settings: BatchSettings = BatchSettings(),
    fmt: str = "png",
    overwrite: bool = False,
    recursive: bool = False,
    list_files: Sequence[str | Path] = (),
    stdin: IO[str] | None = None,
) -> BatchPlan:
    """List the inputs, name the outputs, and sort each input into run / skip / failed."""
    outdir = Path(outdir)
    output_suffix(fmt)
    check_writable(outdir)
    listing = list_inputs(sources, recursive=recursive, list_files=list_files, exclude=outdir, stdin=stdin,
                          frames=FrameRange(settings.video_start, settings.video_duration, settings.video_chunk))
    plan = BatchPlan(pipeline, settings, outdir)
    plan.known += [_problem_record(problem, settings.seed) for problem in listing.problems]
    plan.known += [{**base_record(path, "ignored", settings.seed), "error": "not an image or video file name"}
                   for path in listing.ignored]
    outputs = assign_outputs(listing.items, outdir, fmt)
    video_frames = _video_frames(outputs) if not settings.keep_frames else {}
    foreign = []
    for output in outputs:
        video = video_of(output.image.parent) if output.item.video_frame is not None else None
        if not output.existing() and not (video is not None and video.exists()):
            plan.jobs.append(Job(output))
        elif overwrite:
            plan.jobs.append(Job(output, replace=True))
        else:
            wanted = _identity_of(pipeline, settings, output)
            if wanted is None:  # the input cannot be read now: its job fails and says why; the output stays
                plan.jobs.append(Job(output))
                continue
            existing = existing_state(output, wanted, video_frames=video_frames.get(video))
            if existing.state is State.DONE:
                plan.known.append(_skipped_record(output, existing.frames, settings.seed))
            elif existing.state in (State.INCOMPLETE, State.STALE):  # ours, unfinished or made from files since changed
                plan.jobs.append(Job(output, replace=True))
            elif existing.state is State.DAMAGED:
                plan.known.append({**base_record(output.item.path, "failed", settings.seed, output.item.video_frame),
                                   "error": f"its output {existing.problem}; pass --overwrite to redo it"})
            elif (blocking := existing.blocking or output.existing()[0]) not in foreign:
                foreign.append(blocking)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise OutputError(f"{foreign[0]} exists already and was not made by this recipe from this "
                          f"input{more}; pass --overwrite to replace, or choose another output folder")
    return plan


def _video_frames(outputs: list[OutputPlan]) -> dict[Path, set[int]]:
    """The frames of each video this run makes, by the video's path."""
    frames: dict[Path, set[int]] = {}
    for output in outputs:
        if output.item.video_frame is not None:
            frames.setdefault(video_of(output.image.parent), set()).add(output.item.video_frame)
    return frames


def finished_record(plan: BatchPlan, job: Job) -> dict[str, Any] | None:
    """The ``done`` record of ``job`` if its outputs are on disk, complete and made by it, else
    ``None``: after an interruption, what a worker finished but never reported (a Ray actor
    writes its outputs before its records travel back) still gets its record."""
    wanted = _identity_of(plan.pipeline, plan.settings, job.plan)
    existing = existing_state(job.plan, wanted) if wanted is not None else None
    if existing is None or existing.state is not State.DONE:
        return None
    record = _skipped_record(job.plan, existing.frames, plan.settings.seed)
    record["status"] = "done"
    return record


def _identity_of(pipeline: Pipeline, settings: BatchSettings, output: OutputPlan) -> dict[str, Any] | None:
    """What decides the job's pixels, as its recipe would record it; ``None`` when the input
    cannot be read (its job will fail and say why)."""
    from ..resources import resources_of

    item = output.item
    try:
        source = describe_input(item.path, settings.background, video_frame=item.video_frame,
                                first_frame=item.first_frame)
    except OSError:
        return None
    return {"pipeline": pipeline.to_config(), "seed": settings.seed, "input": source,
            "resources": resources_of(pipeline)}


def _problem_record(problem: InputProblem, seed: int) -> dict[str, Any]:
    return {**base_record(problem.source, "failed", seed), "error": problem.reason}


def _skipped_record(output: OutputPlan, frames: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    record = base_record(output.item.path, "skipped", seed, output.item.video_frame)
    record["frames"] = frames
    record["animation"] = None if frames[0]["output"] == str(output.image) else str(output.animation)
    record["results"] = results_by_frame(frames)
    return record
