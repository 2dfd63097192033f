"""Feature extractor vs the plain torchvision model: forward+backward to the input.

    .venv/bin/python bench/models.py [--sizes 512 1024] [--layer features.11]

The reference is MobileNetV2 as a user would run it for DeepDream: the torchvision model with
the same verified weights, eval mode, a forward hook on the layer, the whole model run, default
settings (trainable weights, default allocator, NCHW fp32), in its own process. Ours is
``FeatureExtractor`` (truncated after the layer, BatchNorm folded, frozen) with
``dreamkit.runtime.configure()`` (glibc keeps freed memory) and channels_last, in fp32 and in
bf16 autocast, also each in its own process. Processes alternate (ref, ours, ours-bf16, ref, ...)
and the median per-step time of each mode is compared, so machine noise hits all modes alike.
The output and input-gradient differences of each mode against the reference are printed beside
the ratios (computed in this process on the same input).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

MODES = ("reference", "ours-fp32", "ours-bf16")


def _objective(activation):
    return activation.float().pow(2).mean()


def reference_model(layer: str):
    """The plain torchvision MobileNetV2 as a user runs it (default settings, verified weights,
    eval mode) with a forward hook on ``layer``: returns ``activation_of(image)``, which runs
    the whole model on a 0..1 image and returns the layer's activation."""
    import torch
    import torchvision

    from dreamkit.plugins import PluginHost

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(PluginHost().weights.load_state_dict("mobilenet_v2.IMAGENET1K_V1", fetch=False))
    model.eval()
    captured = {}
    model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def activation_of(image):
        model((image - mean) / std)
        return captured["a"]

    return activation_of


def build(mode: str, layer: str):
    """Return ``step(image) -> (activation, input gradient)`` for one mode."""
    from dreamkit.models import FeatureExtractor

    if mode == "reference":
        activation_of = reference_model(layer)

        def step(image):
            image = image.detach().requires_grad_(True)
            activation = activation_of(image)
            _objective(activation).backward()
            return activation.detach(), image.grad

        return step
    from dreamkit.runtime import configure

    configure()
    extractor = FeatureExtractor("mobilenet_v2", [layer], channels_last=True, bf16=mode == "ours-bf16")

    def step(image):
        image = image.detach().requires_grad_(True)
        activation = extractor(image)[layer]
        _objective(activation).backward()
        return activation.detach(), image.grad

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


def differences(size: int, layer: str) -> dict[str, tuple[float, float, float]]:
    """Per mode: relative output error, relative gradient error, gradient cosine vs the reference."""
    import torch

    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    ref_out, ref_grad = build("reference", layer)(image)
    result = {}
    for mode in MODES[1:]:
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

    print(f"MobileNetV2 up to {args.layer}, forward+backward to the input; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} steps x {args.rounds} alternating processes")
    print(f"{'size':>6} {'mode':<10} {'ms/step':>9} {'speedup':>8}  {'out rel.err':>11} {'grad rel.err':>12} {'grad cos':>8}")
    for size in args.sizes:
        samples = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                done = subprocess.run([sys.executable, __file__, "--worker", mode, str(size), "--layer", args.layer,
                                       "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
                samples[mode].append(json.loads(done.stdout.strip().splitlines()[-1])["median"])
        diffs = differences(size, args.layer)
        reference = statistics.median(samples["reference"])
        for mode in MODES:
            ms = statistics.median(samples[mode]) * 1000
            ratio = reference / statistics.median(samples[mode])
            errors = "{:>11.4f} {:>12.4f} {:>8.4f}".format(*diffs[mode]) if mode in diffs else f"{'-':>11} {'-':>12} {'-':>8}"
            print(f"{size:>6} {mode:<10} {ms:>9.1f} {ratio:>7.2f}x  {errors}", flush=True)


if __name__ == "__main__":
    main()
