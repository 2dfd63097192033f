"""Whether bfloat16 actually pays for a feature extractor on this machine ("fast" modes).

bf16 is not faster everywhere. Measured on this project's machines (MobileNetV2 forward+backward
to the input, channels_last): on an AMD EPYC with AVX-512 bf16 about 1.3-2x faster; on an Intel
Xeon with AVX-512 bf16 slightly slower than fp32; on an AVX2-only EPYC about 40x *slower* (oneDNN
has no bf16 convolutions there, and torch falls back to its slow reference convolution). CPU
flags do not separate the first two, so the choice is measured: the first time a (backbone,
layers) pair asks on a CPU, both precisions are timed on a small image and bf16 is chosen only if
it is clearly faster. The answer is kept (:mod:`dreamkit.memo`, table ``precision``) keyed by the
CPU, thread count and torch version, so the same machine always makes the same choice (and a replay
of a fast recipe computes in the same precision).
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Callable

import torch

from .memo import remembered
from .runtime import cpu_name

log = logging.getLogger("dreamkit.precision")

#: bf16 must be at least this much faster than fp32 to be chosen (noise margin).
REQUIRED_GAIN = 1.15


def machine_key() -> str:
    """What a timing depends on besides the model and torch: CPU, vector capability, threads."""
    return f"{cpu_name()}|{torch.backends.cpu.get_cpu_capability()}|threads={torch.get_num_threads()}"


def bf16_kernels(device: torch.device) -> bool:
    """Whether ``device`` has bfloat16 convolution kernels (on a CPU without them oneDNN falls back
    to a reference convolution tens of times slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def bf16_pays(device: torch.device, model_key: str, time_pass: Callable[[bool], float]) -> tuple[bool, str]:
    """``(use_bf16, reason)`` for a model on ``device``.

    ``time_pass(bf16)`` runs one representative forward+backward pass in that precision and
    returns its seconds; it is called only on CPUs that have bf16 convolution kernels, and only
    the first time ``model_key`` is asked on this machine.
    """
    if device.type == "cuda":
        supported = bf16_kernels(device)
        return supported, "CUDA GPU with bf16" if supported else "this GPU has no bf16"
    if device.type != "cpu":
        return False, f"no bf16 policy for {device.type}"
    if not bf16_kernels(device):
        return False, f"no bf16 convolution kernels on this CPU ({torch.backends.cpu.get_cpu_capability()})"
    def measure() -> dict:
        fp32, bf16 = _timed(time_pass)
        return {"fp32_s": fp32, "bf16_s": bf16, "bf16": fp32 / bf16 >= REQUIRED_GAIN}

    entry = remembered("precision", f"{machine_key()}|{model_key}", measure)
    verdict = "chosen" if entry["bf16"] else "not chosen"
    return bool(entry["bf16"]), (f"bf16 {verdict}: measured {entry['fp32_s'] * 1e3:.0f} ms fp32 vs "
                                 f"{entry['bf16_s'] * 1e3:.0f} ms bf16 per pass on this CPU")


def _timed(time_pass: Callable[[bool], float], repeats: int = 3) -> tuple[float, float]:
    for bf16 in (False, True):  # warm-up: first calls pay allocation and oneDNN primitive creation
        time_pass(bf16)
    samples: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):  # alternate, so machine noise hits both alike
        for bf16 in (False, True):
            samples[bf16].append(time_pass(bf16))
    return statistics.median(samples[False]), statistics.median(samples[True])


def time_extractor_pass(make: Callable[[bool], torch.nn.Module], device: torch.device,
                        side: int = 256) -> Callable[[bool], float]:
    """A ``time_pass`` for :func:`bf16_pays` from ``make(bf16) -> extractor`` (a dict of
    activations): the seconds of one forward+backward to the input on a ``side``² image."""
    extractors: dict[bool, torch.nn.Module] = {}
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)

    def time_pass(bf16: bool) -> float:
        if bf16 not in extractors:
            extractors[bf16] = make(bf16)
        start = time.perf_counter()
        x = image.clone().requires_grad_()
        total = sum(a.float().square().mean() for a in extractors[bf16](x).values())
        torch.autograd.grad(total, x)
        return time.perf_counter() - start

    return time_pass
