"""Feature extractor vs the plain torchvision model: forward+backward to the input, with the ladder.

    .venv/bin/python bench/models.py [--sizes 512 1024] [--layer features.11]

The reference is MobileNetV2 as a competent user runs it for DeepDream: torchvision's model with
the same verified weights, eval mode, every parameter frozen, a forward hook on the layer, the whole
model run, default process settings. The rungs of bench/ladder.py add one change each (truncated,
BatchNorm folded, allocator, channels_last, out-of-place activations); ``ours`` is
``dreamkit.models.FeatureExtractor`` (all of them) and ``ours-bf16`` the same with ``bf16=True``
(its weights in bfloat16: on a CPU without bf16 convolution kernels this is far slower, which is
why ``deepdream``'s fast mode measures before it picks bf16). Each mode runs in its own process,
modes alternating, and the median per-step times are compared. Output and input-gradient
differences against the reference are printed beside the ratios (same input, this process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import workers
from ladder import REFERENCE, RUNGS, activation, describe_cpu

MODES = (*RUNGS, "ours", "ours-bf16")


def _objective(activation):
    return activation.float().pow(2).mean()


def build(mode: str, layer: str):
    """Return ``step(image) -> (activation, input gradient)`` for one mode."""
    if mode in RUNGS:
        activation_of = activation(mode, layer)
    else:
        from dreamkit.models import FeatureExtractor
        from dreamkit.runtime import configure

        configure()
        extractor = FeatureExtractor("mobilenet_v2", [layer], bf16=mode == "ours-bf16")

        def activation_of(image):
            return extractor(image)[layer]

    def step(image):
        image = image.detach().requires_grad_(True)
        out = activation_of(image)
        (grad,) = __import__("torch").autograd.grad(_objective(out), image)
        return out.detach(), grad

    return step


def worker(mode: str, size: int, layer: str, repeats: int) -> None:
    """Run in a subprocess: print the median seconds per step as JSON."""
    import torch

    step = build(mode, layer)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        step(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(image)
        times.append(time.perf_counter() - start)
    print(json.dumps({"median": statistics.median(times)}))


def differences(size: int, layer: str, modes) -> dict[str, tuple[float, float, float]]:
    """Per mode: relative output error, relative gradient error, gradient cosine vs the reference."""
    import torch

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    ref_out, ref_grad = build(REFERENCE, layer)(image)
    result = {}
    for mode in modes:
        if mode == REFERENCE:
            continue
        out, grad = build(mode, layer)(image)
        out_err = float((out.float() - ref_out).norm() / ref_out.norm())
        grad_err = float((grad - ref_grad).norm() / ref_grad.norm())
        cosine = float(torch.nn.functional.cosine_similarity(grad.double().flatten(), ref_grad.double().flatten(), dim=0))
        result[mode] = (out_err, grad_err, cosine)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--layer", default="features.11")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per mode (alternating)")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.layer, args.repeats)
        return
    import torch

    modes = list(MODES)
    print(f"MobileNetV2 up to {args.layer}, forward+backward to the input; medians of {args.repeats} steps x "
          f"{args.rounds} alternating processes; speedup against '{REFERENCE}'")
    print(f"CPU: {describe_cpu()}")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        modes.remove("ours-bf16")
        print("ours-bf16 skipped: this CPU has no bf16 convolution kernels (torch falls back to a ~40x slower path)")
    print(f"{'size':>6} {'mode':<13} {'ms/step':>9} {'speedup':>8}  {'out rel.err':>11} {'grad rel.err':>12} {'grad cos':>8}")
    for size in args.sizes:
        samples = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                result = workers.run_json(__file__, "--worker", mode, str(size), "--layer", args.layer,
                                          "--repeats", str(args.repeats))
                samples[mode].append(result["median"])
        diffs = differences(size, args.layer, modes)
        reference = statistics.median(samples[REFERENCE])
        for mode in modes:
            ms = statistics.median(samples[mode]) * 1000
            ratio = reference / statistics.median(samples[mode])
            errors = "{:>11.4f} {:>12.4f} {:>8.4f}".format(*diffs[mode]) if mode in diffs else f"{'-':>11} {'-':>12} {'-':>8}"
            print(f"{size:>6} {mode:<13} {ms:>9.1f} {ratio:>7.2f}x  {errors}", flush=True)


if __name__ == "__main__":
    main()
