"""The web page's jobs: one queue and one worker thread per device, so two users never run two
models on one GPU at once; progress as events; cancel.

A job runs ``Pipeline.run`` exactly as ``dreamkit run`` would (same seed derivation, same recipe),
and writes its result into the server's own folder, named by the job id only.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import shutil
import threading
import time
import traceback
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from dreamkit import hookimpl
from dreamkit.progress import Progress
from dreamkit.errors import DreamkitError
from dreamkit.pipeline import Pipeline

from .gallery import THUMB_SIDE
from .pictures import small_picture

#: Job ids are 32 hex digits: checked before any lookup, never used as a path by themselves.
JOB_ID_LENGTH = 32


class Cancelled(Exception):
    """The user cancelled the job (raised inside the run at the next progress tick or step)."""


@dataclass
class Job:
    """One run of a pipeline on one image, and everything the page shows about it."""

    id: str
    pipeline: Pipeline
    #: The input, still encoded on disk (decoded when the job starts; see :class:`~.submit.Submission`).
    image: Path
    source: dict[str, Any]
    seed: int
    device: torch.device
    folder: Path
    status: str = "queued"  # queued, running, done, failed, cancelled
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    created: float = field(default_factory=time.time)
    #: Uploaded files the pipeline's parameters name: deleted once the job has finished.
    files: list[Path] = field(default_factory=list)
    #: Intermediate images shown while it runs (``previews/NNN.png`` in its folder), in order.
    previews: list[Path] = field(default_factory=list)
    _changed: threading.Lock = field(default_factory=threading.Lock)
    #: Event streams waiting for this job's next event: (their event loop, their asyncio.Event).
    _waiters: list[tuple[Any, asyncio.Event]] = field(default_factory=list)

    def emit(self, event: dict[str, Any]) -> None:
        with self._changed:
            self.events.append({**event, "job": self.id, "time": round(time.time() - self.created, 3)})
            waiters = list(self._waiters)
        for loop, woken in waiters:  # from the worker thread into each stream's loop
            loop.call_soon_threadsafe(woken.set)

    async def wait(self, seen: int, timeout: float) -> list[dict[str, Any]]:
        """Events after the first ``seen``, waiting up to ``timeout`` seconds for one. A waiting
        stream costs no thread: any number of them wait on the event loop."""
        woken = asyncio.Event()
        waiter = (asyncio.get_running_loop(), woken)
        with self._changed:
            if len(self.events) > seen:
                return self.events[seen:]
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(woken.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._changed:
                self._waiters.remove(waiter)
        with self._changed:
            return self.events[seen:]

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def check_cancel(self) -> None:
        if self.cancel_requested:
            raise Cancelled()


#: Seconds between two previews of a job, and their longest side in pixels.
PREVIEW_INTERVAL = 1.0
PREVIEW_SIDE = 320


class _WebBar:
    """A :class:`~dreamkit.progress.ProgressBar` whose ticks become the job's events."""

    def __init__(self, job: Job, total: int, desc: str) -> None:
        self.job, self.total, self.desc = job, total, desc
        self.done = 0
        self.values: dict[str, Any] = {}
        self._last_preview = -PREVIEW_INTERVAL

    def update(self, count: int = 1) -> None:
        self.job.check_cancel()  # where a long step notices Cancel
        self.done += count
        self._emit()

    def show(self, **values: Any) -> None:
        self.values = {key: round(value, 6) if isinstance(value, float) else value for key, value in values.items()}

    def preview(self, image: Any) -> None:
        """Keep a small PNG of the work so far and tell the page, at most every PREVIEW_INTERVAL
        seconds (an effect may offer one every iteration)."""
        now = time.monotonic()
        if now - self._last_preview < PREVIEW_INTERVAL:
            return
        self._last_preview = now
        from .pictures import small_picture

        picture = small_picture(image() if callable(image) else image, PREVIEW_SIDE)
        path = self.job.folder / "previews" / f"{len(self.job.previews):03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
        self.job.previews.append(path)
        self.job.emit({"type": "preview", "desc": self.desc, "preview": len(self.job.previews) - 1,
                       "width": picture.width, "height": picture.height})

    def _emit(self) -> None:
        self.job.emit({"type": "progress", "desc": self.desc, "done": self.done, "total": self.total,
                       **({"values": self.values} if self.values else {})})


class _WebProgress(Progress):
    """Progress bars that become events of the current job (and the place cancelling bites)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    @contextmanager
    def bar(self, total: int, desc: str) -> Iterator[_WebBar]:
        bar = _WebBar(self.job, total, desc)
        bar._emit()
        yield bar


_current = threading.local()
log = logging.getLogger("dreamkit")
_every_queue: "weakref.WeakSet[JobQueues]" = weakref.WeakSet()
#: How long process exit waits for running jobs to notice they are cancelled.
EXIT_WAIT_SECONDS = 10.0


@atexit.register
def _stop_running_jobs() -> None:
    for queues in list(_every_queue):
        queues.stop_running(EXIT_WAIT_SECONDS)


class StepEvents:
    """A plugin the server registers on its host: ``dreamkit_run_step`` wrapped to announce each
    step of the job running on this thread (and to cancel between steps)."""

    @hookimpl(wrapper=True)
    def dreamkit_run_step(self, effect: Any, image: Any, context: Any) -> Any:
        job: Job | None = getattr(_current, "job", None)
        if job is not None and context.frame_index == 0:
            job.check_cancel()
            job.emit({"type": "step", "step": context.step_index, "effect": effect.name,
                      "steps": len(job.pipeline.steps)})
        return (yield)


class JobQueues:
    """A FIFO queue and a worker thread per device; jobs are kept (with their files) until the
    server stops, at most ``keep`` of them (the oldest finished ones go first)."""

    def __init__(self, folder: Path, host: Any, keep: int = 200, max_pixels: int | None = None,
                 gallery: Any = None) -> None:
        self.folder = folder
        self.host = host
        #: Where finished runs are kept for the page's history (a :class:`~.gallery.Gallery`), or None.
        self.gallery = gallery
        self.keep = keep
        self.max_pixels = max_pixels
        self.jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue[Job]] = {}
        self._waiting: dict[str, list[Job]] = {}
        self._lock = threading.Lock()
        self._runners: set[threading.Thread] = set()
        _every_queue.add(self)

    def stop_running(self, timeout: float) -> None:
        """Ask the running jobs to stop (at their next step or progress update) and wait up to
        ``timeout`` seconds for their threads: at exit, so that no job is cut off inside a kernel
        while the process tears its libraries down."""
        for job in list(self.jobs.values()):
            if job.status == "running":
                self.cancel(job)
        deadline = time.monotonic() + timeout
        for runner in list(self._runners):
            runner.join(max(0.0, deadline - time.monotonic()))

    def waiting(self) -> int:
        """How many jobs wait to start, on every device."""
        with self._lock:
            return sum(len(jobs) for jobs in self._waiting.values())

    def submit(self, pipeline: Pipeline, image: Path, source: dict[str, Any], seed: int,
               device: torch.device, files: list[Path] | None = None) -> Job:
        job_id = uuid.uuid4().hex
        job = Job(job_id, pipeline, image, source, seed, device, self.folder / job_id, files=list(files or []))
        with self._lock:
            self._forget_old()
            self.jobs[job_id] = job
            key = str(device)
            if key not in self._queues:
                self._queues[key] = queue.Queue()
                self._waiting[key] = []
                threading.Thread(target=self._work, args=(key,), name=f"dreamkit-web-{key}", daemon=True).start()
            self._waiting[key].append(job)
            self._queues[key].put(job)
        job.emit({"type": "queued", "position": self.position(job)})
        return job

    def position(self, job: Job) -> int:
        """1 for the next job to run on its device, 0 once it runs or is finished."""
        with self._lock:
            waiting = self._waiting.get(str(job.device), [])
            return waiting.index(job) + 1 if job in waiting else 0

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if _valid_id(job_id) else None

    def cancel(self, job: Job) -> None:
        job.cancel_requested = True
        with self._lock:
            waiting = self._waiting.get(str(job.device), [])
            if job in waiting:  # not started: it never will
                waiting.remove(job)
                job.status = "cancelled"
        if job.status == "cancelled":
            for path in job.files:  # it never runs: its uploads are not needed
                path.unlink(missing_ok=True)
            job.emit({"type": "cancelled"})
            self._announce_positions(str(job.device))

    def _work(self, key: str) -> None:
        while True:
            job = self._queues[key].get()
            with self._lock:
                if job not in self._waiting[key]:
                    continue  # cancelled while waiting
                self._waiting[key].remove(job)
            self._announce_positions(key)
            # Each job on a thread of its own that ends with it: an OpenMP thread team belongs to
            # the thread that started it, and while a parked thread keeps one, libgomp counts more
            # threads than cores and throttles every other thread's parallel regions (measured
            # here: a float64 MobileNetV2 pass on the main thread 4x slower after one job).
            runner = threading.Thread(target=self._run, args=(job,), name=f"dreamkit-web-{key}-job", daemon=True)
            self._runners.add(runner)
            runner.start()
            runner.join()
            self._runners.discard(runner)

    def _announce_positions(self, key: str) -> None:
        with self._lock:
            waiting = list(self._waiting.get(key, []))
        for position, job in enumerate(waiting, 1):
            job.emit({"type": "queued", "position": position})

    def _run(self, job: Job) -> None:
        from .results import write_result

        job.status = "running"
        job.emit({"type": "started", "device": str(job.device)})
        _current.job = job
        status, event = "failed", {"type": "failed", "error": "internal error: the job ended without a result"}
        try:
            image = _decoded(job, self.max_pixels)
            input_picture = small_picture(image, THUMB_SIDE) if self.gallery is not None else None
            result = job.pipeline.run(image, seed=job.seed, device=job.device, progress=_WebProgress(job),
                                      source=job.source["name"], host=self.host, artifacts=job.folder / "steps")
            del image
            job.check_cancel()
            job.result = write_result(job, result)
            if self.gallery is not None:
                job.result["history"] = self._keep(job, input_picture)
            status, event = "done", {"type": "done", "result": job.result}
        except Cancelled:
            status, event = "cancelled", {"type": "cancelled"}
        except DreamkitError as exc:
            job.error = str(exc)
            status, event = "failed", {"type": "failed", "error": job.error}
        except Exception as exc:  # noqa: BLE001 (a bug or out of memory: this job fails, the server goes on)
            job.error = f"internal error: {type(exc).__name__}: {exc}"
            status, event = "failed", {"type": "failed", "error": job.error, "traceback": traceback.format_exc()}
            if job.device.type == "cuda":
                torch.cuda.empty_cache()
        finally:
            _current.job = None
            for path in job.files:  # the uploads: the result and its recipe are what stays
                path.unlink(missing_ok=True)
            # The end is said only now: whoever sees it finds the uploads already gone.
            job.status = status
            job.emit(event)

    def _keep(self, job: Job, input_picture: Any) -> str | None:
        """Add a finished job to the history; a gallery that cannot be written (a full disk) costs
        the history entry, never the result."""
        try:
            return self.gallery.add(job, input_picture)
        except OSError as exc:
            log.warning("web: could not keep job %s in the history at %s: %s", job.id, self.gallery.folder, exc)
            return None

    def _forget_old(self) -> None:
        finished = [job for job in self.jobs.values() if job.finished]
        for job in sorted(finished, key=lambda j: j.created)[: max(0, len(self.jobs) - self.keep + 1)]:
            self.jobs.pop(job.id, None)
            shutil.rmtree(job.folder, ignore_errors=True)  # its files, a sequence's frames folder too


def _decoded(job: Job, max_pixels: int | None) -> torch.Tensor:
    """The job's input decoded now (its header was checked when it was sent); errors name the
    client's file, never the server's copy."""
    from dreamkit.io import load_image

    try:
        return load_image(job.image, max_pixels=max_pixels)
    except DreamkitError as exc:
        raise DreamkitError(str(exc).replace(str(job.image), job.source["name"])) from None


def _valid_id(job_id: str) -> bool:
    return len(job_id) == JOB_ID_LENGTH and all(c in "0123456789abcdef" for c in job_id)
