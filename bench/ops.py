"""Accelerated ops vs their PyTorch references, measured side by side in one process.

    .venv/bin/python bench/ops.py [--threads 1 2] [--repeats 20] [--ops jitter gram ...] [--device cuda]

Allocator: ``dreamkit.runtime.configure()`` is applied first (glibc keeps freed memory), for our
ops and the references alike, so fresh outputs are not page-faulted in on every call. Each pair is
timed interleaved (ours, reference, ours, ...) and the medians compared.

Rates: memory-bound ops report bytes read plus written per second against ``copy_`` into a
preallocated tensor of the same size (the most a one-pass op can move); Gram ops report the
GFLOP/s of the full product (2*B*C*C*N, what the reference computes; ours may do half of it)
against the GEMM peak measured here with a large ``mm``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from dreamkit.ops import (_reference, conv3x3, dream_update, gram_matrix, gram_mse_loss, instance_norm, jitter,
                          octave_resample)
from dreamkit.runtime import configure

DEVICE = torch.device("cpu")  # set by --device


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


STYLE_SHAPES = [(1, 64, 512, 512), (1, 128, 256, 256), (1, 256, 128, 128), (1, 512, 64, 64), (1, 512, 32, 32)]


def interleaved(functions, repeats, budget_s=0.3):
    """Median seconds of each function, calls interleaved so noise hits all alike. Small shapes get
    more repeats (about ``budget_s`` per function) so thread wake-ups do not dominate the median."""
    for _ in range(3):
        for function in functions:
            function()
    sync()
    start = time.perf_counter()
    functions[0]()
    sync()
    repeats = max(repeats, min(2000, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            sync()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def copy_seconds(numel, repeats):
    source, target = torch.rand(numel, device=DEVICE), torch.empty(numel, device=DEVICE)
    return interleaved([lambda: target.copy_(source)], repeats)[0]


def gemm_peak_flops(repeats):
    a, b, out = (torch.randn(1024, 1024, device=DEVICE) for _ in range(3))
    return 2 * 1024**3 / interleaved([lambda: torch.mm(a, b, out=out)], repeats)[0]


# Each case: (op, shape, ours, reference, amount, kind) with kind "bytes" or "flops".
def jitter_cases():
    for shape in [(1, 3, 2048, 2048), (1, 32, 1024, 1024), (1, 3, 1024, 1024), (1, 3, 517, 731)]:
        x = torch.rand(shape, device=DEVICE)
        yield ("jitter", str(shape), lambda x=x: jitter(x, 37, -101),
               lambda x=x: torch.roll(x, (37, -101), dims=(-2, -1)), 2 * x.numel() * 4, "bytes")


def gram_cases():
    for shape in STYLE_SHAPES:
        x = torch.rand(shape, device=DEVICE)
        features = x.reshape(shape[0], shape[1], -1)
        flops = 2 * shape[0] * shape[1] ** 2 * features.shape[2]
        yield ("gram", str(shape), lambda x=x: gram_matrix(x, normalize=False),
               lambda f=features: torch.bmm(f, f.transpose(1, 2)), flops, "flops")


def gram_loss_cases():
    for shape in STYLE_SHAPES:
        x = torch.rand(shape, device=DEVICE, requires_grad=True)
        target = _reference.gram_matrix(torch.rand(shape, device=DEVICE))

        def ours(x=x, target=target):
            return torch.autograd.grad(gram_mse_loss(x, target), x)

        def reference(x=x, target=target):
            return torch.autograd.grad(_reference.gram_mse_loss(x, target), x)

        flops = 3 * 2 * shape[1] ** 2 * shape[2] * shape[3]  # reference: forward + 2 backward GEMMs
        yield ("gram_mse", str(shape), ours, reference, flops, "flops")


def resample_cases():
    for side in (1024, 2048):
        x = torch.rand(1, 3, side, side, device=DEVICE)
        for factor in (1.4, 1 / 1.4):
            size = (round(side * factor),) * 2
            moved = (x.numel() + 3 * size[0] * size[1]) * 4
            label = f"{(1, 3, side, side)}->{size[0]}"
            yield ("resample", label, lambda x=x, s=size: octave_resample(x, s),
                   lambda x=x, s=size: F.interpolate(x, size=s, mode="bilinear", align_corners=False), moved, "bytes")
            # The op's definition: resize, then roll the result (what a user writes without it).
            yield ("resample+shift", label, lambda x=x, s=size: octave_resample(x, s, (37, -101)),
                   lambda x=x, s=size: torch.roll(F.interpolate(x, size=s, mode="bilinear", align_corners=False),
                                                  (37, -101), dims=(-2, -1)), moved, "bytes")


def dream_update_cases():
    for shape in [(1, 3, 1024, 1024), (1, 3, 2048, 2048), (1, 3, 517, 731)]:
        image, grad = torch.rand(shape, device=DEVICE), torch.randn(shape, device=DEVICE)
        moved = 4 * image.numel() * 4  # grad read twice, image read once, output written
        yield ("dream_update", str(shape), lambda i=image, g=grad: dream_update(i, g, (37, -101), 0.01, (0.0, 1.0)),
               lambda i=image, g=grad: _reference.dream_update(i, g, (37, -101), 0.01, (0.0, 1.0)), moved, "bytes")
        ours_work, their_work = image.clone(), image.clone()
        yield ("dream_update_", str(shape),
               lambda w=ours_work, g=grad: dream_update(w, g, (37, -101), 0.01, (0.0, 1.0), inplace=True),
               lambda w=their_work, g=grad: inplace_torch_update(w, g, (37, -101), 0.01), moved, "bytes")


def conv3x3_cases():
    # classic style network's residual convolutions at 512 and 1024 px (128 channels at 1/4), a
    # batch, and a thinner one. Reference: F.conv2d (oneDNN's direct convolution on the CPU).
    for shape in [(1, 128, 130, 130), (1, 128, 258, 258), (4, 128, 66, 66), (1, 64, 130, 130)]:
        x = torch.rand(shape, device=DEVICE)
        weight, bias = torch.randn(shape[1], shape[1], 3, 3, device=DEVICE) * 0.03, torch.zeros(shape[1], device=DEVICE)
        flops = 2 * shape[0] * shape[1] ** 2 * 9 * (shape[2] - 2) * (shape[3] - 2)  # a direct convolution's
        yield ("conv3x3", str(shape), lambda x=x, w=weight, b=bias: conv3x3(x, w, b),
               lambda x=x, w=weight, b=bias: F.conv2d(x, w, b), flops, "flops")


def instance_norm_cases():
    # classic style network's normalisation layers at 512 px (32, 64, 128 channels at 1, 1/2, 1/4
    # resolution) and a batch. Reference: what a user writes, F.instance_norm then an in-place ReLU.
    for shape in [(1, 32, 512, 512), (1, 64, 256, 256), (1, 128, 128, 128), (4, 128, 64, 64)]:
        x = torch.randn(shape, device=DEVICE)
        weight, bias = torch.rand(shape[1], device=DEVICE) + 0.5, torch.randn(shape[1], device=DEVICE) * 0.1
        moved = 3 * x.numel() * 4  # read for the statistics, read and written for the result
        yield ("instance_norm", str(shape), lambda x=x, w=weight, b=bias: instance_norm(x, w, b),
               lambda x=x, w=weight, b=bias: F.relu(F.instance_norm(x, weight=w, bias=b), inplace=True), moved, "bytes")


def inplace_torch_update(image, grad, shift, step_size):
    """The in-place update as a user writes it with torch ops: roll back, scale, add, clamp."""
    g = torch.roll(grad, (-shift[0], -shift[1]), dims=(-2, -1))
    g.mul_(step_size / (g.abs().mean() + 1e-8))
    return image.add_(g).clamp_(0.0, 1.0)


CASES = {"jitter": jitter_cases, "gram": gram_cases, "gram_mse": gram_loss_cases,
         "resample": resample_cases, "dream_update": dream_update_cases, "conv3x3": conv3x3_cases,
         "instance_norm": instance_norm_cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20, help="at least this many timed calls per function")
    parser.add_argument("--ops", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (then --threads only sets the CPU side)")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of timed calls per function at least (small shapes get more repeats)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    settings = configure()
    print(f"torch {torch.__version__}; allocator keeps freed memory: {settings.keep_freed_memory} ({settings.reason})")
    print(f"{'op':<15} {'shape':<28} {'thr':>3} {'ours ms':>8} {'ref ms':>8} {'speedup':>8} {'rate':>12} {'of peak':>8}")
    speedups: dict[tuple[str, int], list[float]] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak_flops = gemm_peak_flops(args.repeats)
        print(f"-- {DEVICE.type}, {threads} thread(s): GEMM peak {peak_flops / 1e9:.0f} GFLOP/s (1024^3 mm)")
        for name in args.ops:
            for op, shape, ours_fn, reference_fn, amount, kind in CASES[name]():
                ours, reference = interleaved([ours_fn, reference_fn], args.repeats, args.budget)
                if kind == "bytes":
                    peak = amount / copy_seconds(amount // 8, args.repeats)  # copy_ moves numel*4 bytes twice
                    rate = f"{amount / ours / 1e9:.1f} GB/s"
                else:
                    peak = peak_flops
                    rate = f"{amount / ours / 1e9:.0f} GFLOP/s"
                speedups.setdefault((op, threads), []).append(reference / ours)
                print(f"{op:<15} {shape:<28} {threads:>3} {ours * 1e3:>8.2f} {reference * 1e3:>8.2f} "
                      f"{reference / ours:>7.2f}x {rate:>12} {amount / ours / peak:>7.0%}", flush=True)
    print("geometric mean speedup per op and thread count:")
    for (op, threads), values in speedups.items():
        print(f"  {op:<15} {threads} thr: {math.exp(sum(map(math.log, values)) / len(values)):.2f}x")


if __name__ == "__main__":
    main()
