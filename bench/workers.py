"""Benchmark workers: each rung runs in a fresh process of its own (its own allocator state, threads,
caches and peak RSS), rungs alternating.

``run`` starts ``python SCRIPT ARGS...``: a cold process, as a user's would be. On a 2-core CPU ~6 s of
each is importing torch and torchvision (torchvision.ops imports torch._dynamo) before it measures
anything, which is most of a tiny smoke run. With ``DREAMKIT_BENCH_WARM_WORKERS=1`` (the suite's smoke
runs, tests/test_bench.py) workers fork instead from a multiprocessing forkserver that imported torch,
torchvision and dreamkit once: the same script and arguments, a new process, seconds sooner.
Not for figures: a forked worker inherits the server's malloc state, and it took ~300 page faults per
step where a cold one took none (a MobileNetV2 step at 256 px ~10% slower, AMD EPYC, 2 threads).
Whole-process timings (``dreamkit run`` against a plain script) always start real processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import runpy
import subprocess
import sys
import tempfile

#: The environment variable that turns on warm (forked) workers: for smoke runs, not figures.
WARM = "DREAMKIT_BENCH_WARM_WORKERS"
#: Imported once by the forkserver, inherited by every worker.
PRELOAD = ["torch", "torchvision", "dreamkit"]

_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _main(script: str, args: list[str], stdout: str, stderr: str) -> None:
    """In the worker: stdout and stderr to the given files, then the script as ``__main__``."""
    for fd, path in ((1, stdout), (2, stderr)):
        with open(path, "w") as file:
            os.dup2(file.fileno(), fd)
    sys.argv = [script, *args]
    sys.path.insert(0, str(pathlib.Path(script).parent))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run(script: str | os.PathLike, *args: str) -> subprocess.CompletedProcess:
    """Run ``script args...`` in a new worker process; its output and return code, as ``subprocess.run``
    with ``capture_output=True, text=True`` gives them."""
    if os.environ.get(WARM) != "1":
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="dreamkit-bench-worker-") as tmp:
        stdout, stderr = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        process = _forkserver().Process(target=_main, args=(str(script), list(args), stdout, stderr))
        process.start()
        process.join()
        return subprocess.CompletedProcess([str(script), *args], process.exitcode,
                                           pathlib.Path(stdout).read_text(), pathlib.Path(stderr).read_text())


def run_json(script: str | os.PathLike, *args: str) -> dict:
    """The JSON object a worker printed on its last line; exits naming the worker if it failed."""
    done = run(script, *args)
    if done.returncode != 0:
        raise SystemExit(f"worker {pathlib.Path(script).name} {' '.join(args)} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
