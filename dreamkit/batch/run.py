"""Running a planned batch on an engine: records as they come, the report, the summary."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import ImageLoadError
from ..plugins import PluginHost
from .engines import Engine, LocalEngine
from .plan import BatchPlan

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
    ``known``, ``total``, ``single_input()`` and ``work``; known ones first, then jobs as the engine finishes them),
    counting them in ``summary``. A batch of a single input raises its error instead, as the
    one-image command always did."""
    engine = engine or LocalEngine()
    summary = summary if summary is not None else BatchSummary(plan.total)
    single = plan.single_input()
    if single and plan.known and plan.known[0]["status"] == "failed":
        raise ImageLoadError(plan.known[0]["error"])
    from tqdm import tqdm

    stream = stream or sys.stderr
    enabled = progress if progress is not None else stream.isatty()
    with tqdm(total=plan.total, desc="images", unit="img", file=stream, disable=not enabled or plan.total < 2,
              dynamic_ncols=True, leave=False) as bar:
        records = engine.run(plan.jobs, plan.work, host, reraise=single)
        for record in chain(plan.known, records):
            summary.add(record)
            bar.update(1)
            yield record


class ReportWriter:
    """The JSON-lines report: one line per record, flushed as it is written (a crash or Ctrl-C
    keeps what was done). Replaced by each run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
