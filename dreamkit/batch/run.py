"""Running a planned batch on an engine: records as they come, the report, the summary."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import EnvironmentFailure, ImageLoadError, OutputError, environment_failure
from ..plugins import PluginHost
from .engines import Engine, LocalEngine
from .plan import BatchPlan

log = logging.getLogger("dreamkit.batch")

STATUSES = ("done", "skipped", "failed", "ignored")


def record_label(record: dict[str, Any]) -> str:
    """How messages name a record's input: its path, and ``#frame=N`` for a video frame."""
    frame = record.get("video_frame")
    return record["input"] if frame is None else f"{record['input']}#frame={frame}"


@dataclass
class BatchSummary:
    """Counts by status, and whether the run was interrupted (failures are named as they happen)."""

    total: int
    counts: Counter = field(default_factory=Counter)
    interrupted: bool = False
    #: Why the run stopped early (an :class:`~dreamkit.errors.EnvironmentFailure`), if it did.
    stopped: str | None = None
    started: float = field(default_factory=time.perf_counter)

    def add(self, record: dict[str, Any]) -> None:
        self.counts[record["status"]] += 1

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    @property
    def not_started(self) -> int:
        return self.total - sum(self.counts.values())

    def describe(self) -> str:
        """``12 done, 3 skipped, 1 failed in 4.2 s`` (+ what an interruption left undone)."""
        parts = [f"{self.counts[s]} {s}" for s in STATUSES if self.counts[s] or s in ("done", "failed")]
        text = ", ".join(parts) + f" in {time.perf_counter() - self.started:.1f} s"
        if self.interrupted:
            text = f"interrupted: {text}; {self.not_started} not started (run the same command again to finish)"
        elif self.stopped:
            text = f"{text}; {self.not_started} not started"
        return text


def run_batch(
    plan: BatchPlan,
    engine: Engine | None = None,
    *,
    host: PluginHost | None = None,
    progress: bool | None = None,
    summary: BatchSummary | None = None,
    stream: IO[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every record of ``plan`` (a :class:`~.plan.BatchPlan`, or any plan with ``jobs``,
    ``known``, ``total``, ``single_input()``, ``work`` and ``video_assembler()``, which may return
    None; known ones first, then jobs as the engine finishes them), counting them in ``summary``;
    each video input whose frames are all done is encoded at the end. A batch of a single input
    raises its error instead, as the one-image command always did."""
    engine = engine or LocalEngine()
    summary = summary if summary is not None else BatchSummary(plan.total)
    single = plan.single_input()
    if single and plan.known and plan.known[0]["status"] == "failed":
        raise ImageLoadError(plan.known[0]["error"])
    from tqdm import tqdm

    stream = stream or sys.stderr
    enabled = progress if progress is not None else stream.isatty()
    frames = bool(plan.jobs) and all(getattr(job.item, "video_frame", None) is not None for job in plan.jobs)
    with tqdm(total=plan.total, desc="frames" if frames else "images", unit="frame" if frames else "img", file=stream,
              disable=not enabled or plan.total < 2,
              dynamic_ncols=True, leave=False) as bar:
        records = engine.run(plan.jobs, plan.work, host, reraise=single)
        videos = plan.video_assembler()  # None: the plan's records are not pictures (an index build)
        try:
            for record in chain(plan.known, records):
                summary.add(record)
                bar.update(1)
                if videos is not None:
                    videos.add(record)
                yield record
                if record.get("fatal"):  # the disk is full (or the like): schedule nothing more
                    raise EnvironmentFailure(record["error"])
            for made in videos.finish() if videos is not None else []:
                log.info("%s: %d frames at %g fps%s", made["video"], made["frames"], made["fps"],
                         ", audio copied" if made["audio"] else "")
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()  # the engine stops its workers now, not when garbage collected


class ReportWriter:
    """The JSON-lines report: one line per record, each written whole and at once (a crash, a kill
    or Ctrl-C keeps what was done). Replaced by each run. A line that cannot be written (the disk is
    full) is cut off again, so the file stays valid JSON lines, and the run stops
    (:class:`~dreamkit.errors.EnvironmentFailure`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise OutputError(f"--report {self.path}: cannot write it: {exc.strerror or exc}") from None
        self._size = 0

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=str) + "\n").encode()
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError as exc:
            os.ftruncate(self._fd, self._size)  # no half line: the report stays valid
            if environment_failure(exc) is not None:
                raise EnvironmentFailure(f"--report {self.path}: {exc.strerror or exc}") from exc
            raise
        self._size += len(line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
