"""Accelerated ops vs their PyTorch references, measured side by side in one process.

    .venv/bin/python bench/ops.py [--threads 1 2] [--repeats 20]

Allocator: ``dreamkit.runtime.configure()`` is applied first (glibc keeps freed memory), for our
ops and the references alike, so fresh outputs are not page-faulted in on every call. Each pair is
timed interleaved (ours, reference, ours, ...) and the medians compared. Bandwidth is bytes read
plus bytes written per second, against ``copy_`` into a preallocated tensor of the same size
(measured here too): the most a one-pass op can move.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dreamkit.ops import jitter
from dreamkit.runtime import configure


def interleaved(functions, repeats, budget_s=0.3):
    """Median seconds of each function, calls interleaved so noise hits all alike. Small shapes get
    more repeats (about ``budget_s`` per function) so thread wake-ups do not dominate the median."""
    for _ in range(3):
        for function in functions:
            function()
    start = time.perf_counter()
    functions[0]()
    repeats = max(repeats, min(2000, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def bench_jitter(shape, repeats):
    x = torch.rand(shape)
    out = torch.empty_like(x)
    ours, roll, copy = interleaved([
        lambda: jitter(x, 37, -101),
        lambda: torch.roll(x, (37, -101), dims=(-2, -1)),
        lambda: out.copy_(x),
    ], repeats)
    moved = 2 * x.numel() * x.element_size()
    return ours, roll, copy, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20, help="at least this many timed calls per function")
    args = parser.parse_args()
    settings = configure()
    print(f"torch {torch.__version__}; allocator keeps freed memory: {settings.keep_freed_memory} ({settings.reason})")
    print(f"{'op':<8} {'shape':<20} {'thr':>3} {'ours ms':>8} {'ref ms':>8} {'speedup':>8} {'GB/s':>6} {'copy_ GB/s':>10} {'of copy_':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape in [(1, 3, 2048, 2048), (1, 32, 1024, 1024), (1, 3, 1024, 1024), (1, 3, 517, 731)]:
            ours, roll, copy, moved = bench_jitter(shape, args.repeats)
            print(f"{'jitter':<8} {str(shape):<20} {threads:>3} {ours * 1e3:>8.2f} {roll * 1e3:>8.2f} {roll / ours:>7.2f}x "
                  f"{moved / ours / 1e9:>6.1f} {moved / copy / 1e9:>10.1f} {copy / ours:>7.0%}", flush=True)


if __name__ == "__main__":
    main()
