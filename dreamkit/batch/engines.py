"""Batch engines decide where each job runs; what a job does is :class:`~.jobs.JobRunner`'s.

* :class:`LocalEngine`: in this process, one job after another (models load once).
* :class:`~.ray_engine.RayEngine`: in a pool of Ray actors, on this machine or a cluster.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from typing import Any

from ..plugins import PluginHost
from .work import Work


class Engine(Protocol):
    name: str

    def run(self, jobs: Sequence[Any], work: Work, host: PluginHost | None, *, reraise: bool = False) -> Iterator[dict]:
        """Run every job as ``work`` says and yield its record (in any order)."""


class LocalEngine:
    """Every job in this process, in input order (in groups when the work batches them)."""

    name = "local"

    def run(self, jobs: Sequence[Any], work: Work, host: PluginHost | None, *, reraise: bool = False) -> Iterator[dict]:
        runner = work.runner(host)
        try:
            for chunk in work.chunks(jobs):
                yield from runner.run_chunk(chunk, reraise=reraise)
        finally:
            runner.close()


def make_engine(name: str, *, workers: int | None = None, address: str | None = None) -> Engine:
    """``local`` or ``ray`` (``workers``/``address`` are Ray's)."""
    from ..errors import DreamkitError

    if name == "local":
        if workers is not None or address is not None:
            raise DreamkitError("--workers and --ray-address need --engine ray")
        return LocalEngine()
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(workers=workers, address=address)
    raise DreamkitError(f"engine {name!r} is not allowed; expected local or ray")
