"""The Ray engine: jobs run in a pool of Ray actors (Ray Data, ``ActorPoolStrategy``).

Each actor builds its :class:`~.work.Work`'s runner once (models load once per actor) and runs jobs
through it exactly as the local engine does, reading inputs and writing outputs itself: on a
cluster, the inputs and the output folder must be on storage every node sees at the same path
(as for Ray Data's own ``read_*`` functions). Records come back to this process, which writes the
report. A bad input is a ``failed`` record as locally. An actor that dies (a crash, the OOM killer)
is restarted and its job retried; a job whose actor dies on every try is reported as failed and
the run goes on (Ray Data's ``max_errored_blocks``).

Never asks for what the cluster does not have: Ray waits forever for GPUs that are not there, and
more actors than CPUs never start.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterator, Sequence

from ..errors import DreamkitError
from ..plugins import PluginHost
from .work import Work

#: How often a dead actor is restarted and a job on it retried.
RETRIES = 2


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError:
        raise DreamkitError("--engine ray needs Ray Data: pip install 'dreamkit[ray]'") from None
    return ray


class Worker:
    """A Ray actor's callable: one :class:`~.work.Work`'s runner, built once (models load once per
    actor); a chunk of jobs in (one row), their records out as each is ready (a generator: a
    video's frames stream back while the rest of it runs)."""

    def __init__(self, work: Work, threads: int) -> None:
        from ..runtime import configure

        configure(threads)  # as `dreamkit run` does: threads, and freed memory kept for reuse
        self.work = work
        self.runner = work.runner(None)

    def __call__(self, batch: dict[str, Any]) -> Iterator[dict[str, list[str]]]:
        for text in batch["chunk"]:
            jobs = [self.work.job_from_dict(data) for data in json.loads(text)]
            for record in self.runner.run_chunk(jobs):
                yield {"record": [json.dumps(record, default=str)]}


@dataclass(frozen=True)
class ActorPlan:
    """How many actors, and what each asks Ray for."""

    workers: int
    threads: int
    gpus_each: float
    device: str


def plan_actors(cpus: int, gpus: float, workers: int | None, device: str) -> ActorPlan:
    """Actors for a cluster of ``cpus`` CPUs and ``gpus`` GPUs, never asking for more than it has.

    With GPUs (and ``device`` auto or cuda): one actor per GPU by default, each with its share of
    one GPU. Without: CPUs / 2 actors. Every actor gets CPUs / actors threads."""
    if device not in ("auto", "cpu", "cuda"):
        raise DreamkitError(f"--device {device} is not allowed with --engine ray; expected auto, cpu or cuda "
                            "(Ray gives each actor its GPU)")
    if device == "cuda" and gpus < 1:
        raise DreamkitError(f"--device {device} asks for a GPU but the Ray cluster has none; use --device cpu or auto")
    use_gpu = gpus >= 1 and device != "cpu"
    workers = workers or (max(1, int(gpus)) if use_gpu else max(1, cpus // 2))
    if workers > cpus:
        raise DreamkitError(f"--workers {workers} asks for more actors than the Ray cluster's {cpus} CPUs; "
                            f"use --workers {max(cpus, 1)} or fewer")
    return ActorPlan(workers, max(1, cpus // workers), min(1.0, gpus / workers) if use_gpu else 0.0,
                     "cuda" if use_gpu else "cpu")


class RayEngine:
    """Run jobs on Ray: a local instance, or the cluster at ``address`` (``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``); an already connected session (``ray.init`` by the caller) is used as is."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise DreamkitError(f"--workers {workers} is not allowed; expected a positive integer")
        self.workers = workers
        self.address = address

    def run(self, jobs: Sequence[Any], work: Work, host: PluginHost | None, *, reraise: bool = False) -> Iterator[dict]:
        ray = import_ray()
        started = self._connect(ray)
        try:
            if jobs:
                yield from self._run(ray, jobs, work)
        finally:  # (Ctrl-C included) actors stopped first, then what a killed one left is swept
            if started:
                ray.shutdown()
            work.cleanup(jobs)

    def _run(self, ray: Any, jobs: Sequence[Any], work: Work) -> Iterator[dict]:
        resources = ray.cluster_resources()
        actors = plan_actors(int(resources.get("CPU", 0)), float(resources.get("GPU", 0)), self.workers,
                             work.settings.device)
        worker_args = {"work": work.with_settings(device=actors.device, progress=False), "threads": actors.threads}
        chunks = work.chunks(jobs)
        missing = yield from self._map(ray, chunks, work, actors, worker_args)
        if missing and len(chunks) < len(jobs):  # a group whose actor died on every try: again one by one, to find the culprit
            missing = yield from self._map(ray, [[job] for job in missing], work, actors, worker_args)
        for job in missing:
            yield work.lost_record(job, f"the Ray worker running it died {RETRIES + 1} times (a crash, or killed "
                                        "for memory); see the Ray logs")

    def _map(self, ray: Any, chunks: Sequence[Sequence[Any]], work: Work, actors: ActorPlan,
             worker_args: dict[str, Any]) -> Generator[dict, None, list[Any]]:
        """Yield the records of the jobs in ``chunks`` (each chunk to one actor in one go) run on
        the actor pool; return the jobs that came back with no record (their actor died on every try)."""
        returned: set[tuple[str, Any]] = set()
        blocks = len(chunks)
        # No more actors than groups (idle ones make Ray warn). One task in flight per actor: an
        # actor that dies takes only its own job (or group) with it, never the next one queued on
        # it, which would use up that job's retries too. Ray prints worker deaths on stdout: keep
        # stdout for records (--json).
        with _data_context(ray), redirect_stdout(sys.stderr):
            dataset = ray.data.from_items([{"chunk": json.dumps([work.job_to_dict(job) for job in chunk])}
                                           for chunk in chunks], override_num_blocks=blocks)
            dataset = dataset.map_batches(Worker, batch_size=1, fn_constructor_kwargs=worker_args,
                                          compute=ray.data.ActorPoolStrategy(size=min(actors.workers, blocks),
                                                                            max_tasks_in_flight_per_actor=1),
                                          num_cpus=actors.threads, num_gpus=actors.gpus_each, **_bounded_retries())
            for row in dataset.iter_rows():
                record = json.loads(row["record"])
                returned.add((record["input"], record["video_frame"]))
                yield record
        return [job for chunk in chunks for job in chunk if (str(job.item.path), job.item.video_frame) not in returned]

    def _connect(self, ray: Any) -> bool:
        """Connect (True) or use the caller's session (False)."""
        return connect_ray(ray, self.address)


def connect_ray(ray: Any, address: str | None) -> bool:
    """Start a local Ray instance (``address`` None) or join the cluster at ``address``: True; or
    use the session the caller already opened with ``ray.init``: False (then it is not ours to shut down)."""
    if ray.is_initialized():
        return False
    # Ray's C++ core logs at ERROR that actor constructor arguments live in the object store
    # (always so for Ray Data's actors): noise to a user. RAY_BACKEND_LOG_LEVEL set by the user wins.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        with _own_sigterm():
            ray.init(num_cpus=os.cpu_count(), **quiet)
        return True
    _check_reachable(address)
    _use_auth_token()
    try:
        with _own_sigterm():
            ray.init(address=address, **({} if address.startswith("ray://") else quiet))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DreamkitError(f"--ray-address {address}: cannot join the Ray cluster: {exc} (a cluster started "
                            "with `ray start` needs its token: copy the head node's ~/.ray/auth_token here, "
                            "or set RAY_AUTH_TOKEN)") from None
    return True


@contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler across ``ray.init``: Ray's core installs one that dumps
    a stack and aborts (exit -6), where ``dreamkit run`` stops cleanly (summary, report, exit 143)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _use_auth_token() -> None:
    """Ray 2.60's ``ray start`` turns on token authentication and writes ~/.ray/auth_token, but a
    driver joining with ``ray.init(address=...)`` sends the token only in token mode: turn it on
    when a token is there (``RAY_AUTH_MODE`` set by the user wins)."""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
        from ray._raylet import Config  # Ray reads its config once, at import: read it again

        Config.initialize("")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with a clear message, where ``ray.init`` would retry for a minute."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise DreamkitError(f"--ray-address {address!r} is not allowed; expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise DreamkitError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                            "start one with `ray start --head`, or check the address") from None


def _bounded_retries() -> dict[str, int]:
    """Ray Data restarts dead actors and retries their tasks forever by default: one input that
    kills its actor every time (a decoder crash, the OOM killer) would hang the run. Bounding it
    is only possible through ``map_batches``' extra remote args, deprecated for removal in Ray
    2.64 (our extra pins 2.60); the warning says nothing the user can act on."""
    return {"max_restarts": RETRIES, "max_task_retries": RETRIES}


@contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Skip (and let us report) jobs whose actor died on every try, instead of failing the run;
    no Ray progress bars or execution logs (ours counts images)."""
    import warnings

    context = ray.data.DataContext.get_current()
    saved = context.max_errored_blocks, context.enable_progress_bars
    context.max_errored_blocks, context.enable_progress_bars = -1, False
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            yield
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved
        data_log.setLevel(level)
