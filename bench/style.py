"""Style transfer per-iteration time against a competent plain-PyTorch reference, with the ladder,
and the peak memory of a 4096x4096 stylisation.

    .venv/bin/python bench/style.py [--sizes 256 512] [--backbones mobilenet_v2 vgg19] [--big 4096]
                                    [--default-run 1024]

The reference is bench/plain_style.py: the PyTorch tutorial's algorithm written well (backbone cut
after the last used layer, frozen, eval, autograd Gram + MSE, the same layers, loss terms, weights
and L-BFGS settings as the effect, fp32). MobileNetV2 with its real weights, VGG-19 with random
weights (its real ones are not available offline; the time does not depend on them). Content
chelsea.png and style ihc.png, both resized to SIZE x SIZE. Rungs, each adding one change:

    reference      plain_style.py in a default process
    allocator      + glibc keeps freed memory (dreamkit.runtime.keep_freed_memory)
    extractor      + dreamkit's FeatureExtractor (BatchNorm folded, channels_last, out-of-place
                     activations), Gram still through autograd
    ours           + the style effect's loss (dreamkit.ops.gram_mse_loss: one-GEMM backward) and
                     optimiser loop: what `style` runs
    ours-fast      + fast=True (bfloat16 only where measured to pay on this CPU; else identical)
    ours-smoothed  the MobileNetV2 default (softmax smoothing before the Gram matrices): more work
                     than the reference, shown for what the default costs, not compared for speed
    effect-default the `style` effect itself as a user runs it (its defaults, scales=1): the memory
                     budget is half the available memory, so an image that fits runs in one piece
    effect-768     the same with memory_mb=768 (the old fixed default): tiles where a pass would
                     need more; the pair shows what tiling costs (neural-style-pt, run unchanged on
                     the same content, style, size and threads, took 3.08 s per iteration with
                     VGG-19 at 512 px on an AMD EPYC, 2 threads: issue 28's figure, not re-run here)

``--modes`` runs a subset (the reference always runs: ratios are against it).

``--default-run SIDE`` then runs ``dreamkit run`` on a SIDE x SIDE photo with the style effect's
defaults untouched (100 iterations, the scales it picks for the size, the machine's memory budget)
and prints its wall time beside the cost predicted from the effect-default per-iteration times of
the same run (MobileNetV2, at each scale's size: give those sizes in ``--sizes``).

Each mode runs in its own process, modes alternating; the per-iteration times are medians. The
first and last loss of every mode are printed: the same numbers on both sides show the same work.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workers  # noqa: E402

MODES = ("reference", "allocator", "extractor", "ours", "ours-fast", "ours-smoothed", "effect-default", "effect-768")
REFERENCE = "reference"
WARMUP = 2


def sample(name: str) -> pathlib.Path:
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent / name


def images(size: int):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    def load(name):
        image = np.array(Image.open(sample(name)).convert("RGB"))
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        return F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)

    return load("chelsea.png"), load("ihc.png")


def settings(backbone: str):
    from dreamkit_style.effect import DEFAULT_LAYERS, Style

    style_layers, content_layers = DEFAULT_LAYERS[backbone]
    default = {name: param.default for name, param in Style.params.items()}  # the effect's default weights
    return ({layer: 1.0 for layer in style_layers}, {layer: 1.0 for layer in content_layers},
            default["style_weight"], default["content_weight"], default["tv_weight"], default["history"])


def weights_file(backbone: str) -> str | None:
    if backbone != "mobilenet_v2":
        return None
    from dreamkit.plugins import PluginHost

    return str(PluginHost().weights.resolve("mobilenet_v2.IMAGENET1K_V1", fetch=False))


def worker(mode: str, backbone: str, size: int, iterations: int) -> None:
    """Run in a subprocess: print the per-iteration times, losses and peak RSS as JSON."""
    content, style = images(size)
    style_layers, content_layers, style_weight, content_weight, tv_weight, history = settings(backbone)
    stamps: list[float] = []
    losses: list[float] = []

    def on_iteration(iteration, *rest):
        stamps.append(time.perf_counter())
        value = rest[-1]
        losses.append(value if isinstance(value, float) else value.total)

    weights = weights_file(backbone)
    if mode.startswith("effect-"):
        effect_run(mode, backbone, content, iterations, stamps, losses)
    elif mode in ("reference", "allocator", "extractor"):
        import plain_style

        if mode != "reference":
            from dreamkit.runtime import keep_freed_memory

            keep_freed_memory()
        if mode == "extractor":
            from dreamkit.models import FeatureExtractor

            features = FeatureExtractor(backbone, list(dict.fromkeys([*style_layers, *content_layers])),
                                        "random" if weights is None else "default")
        else:
            features = plain_style.Features(backbone, weights, list(dict.fromkeys([*style_layers, *content_layers])))
        loss = plain_style.Loss(features, content, style, style_layers, content_layers, style_weight, content_weight,
                                tv_weight)
        stamps.append(time.perf_counter())
        plain_style.stylise(loss, content, iterations + WARMUP, history=history, on_iteration=on_iteration)
    else:
        from dreamkit.models import shared_extractor
        from dreamkit.plugins import PluginHost
        from dreamkit.runtime import keep_freed_memory
        from dreamkit.tiling import Geometry, plan_tiles
        from dreamkit_style.effect import SMOOTHING, Style
        from dreamkit_style.loss import StyleLoss, StyleTarget, add_image_terms
        from dreamkit_style.optimize import optimise

        keep_freed_memory()
        extractor = shared_extractor(PluginHost(), backbone, "random" if weights is None else "default",
                                     tuple(dict.fromkeys([*style_layers, *content_layers])), mode == "ours-fast", "cpu")
        temperatures = {}
        if mode == "ours-smoothed":
            effect = Style(style=[str(sample("ihc.png"))], backbone=backbone, smoothing=SMOOTHING)
            temperatures = effect._temperatures(extractor, [style], style_layers)
        loss = StyleLoss(extractor, style_layers, content_layers, style_weight=style_weight,
                         content_weight=content_weight, temperatures=temperatures)
        geometry = Geometry({}, 0)
        whole = plan_tiles(size, size, 0, geometry)
        loss.set_targets(content, [StyleTarget(loss.gram_targets(style, whole, geometry))], whole, geometry)

        def evaluate(x):
            parts, grad = loss.value_and_grad(x, whole, geometry)
            parts.image = add_image_terms(x, grad, tv_weight, None, 0.0)
            return parts, grad

        stamps.append(time.perf_counter())
        optimise(content, evaluate, method="lbfgs", iterations=iterations + WARMUP, learning_rate=0.0,
                 history=history, on_iteration=on_iteration)
    steps = [b - a for a, b in zip(stamps, stamps[1:])][WARMUP:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"median": statistics.median(steps), "first": losses[0], "last": losses[-1], "peak_mib": peak}))


def effect_run(mode: str, backbone: str, content, iterations: int, stamps: list, losses: list) -> None:
    """The style effect as a user runs it (``Style.stylise`` with its defaults, one scale), timed
    through its progress bar: one tick per L-BFGS iteration."""
    from contextlib import contextmanager

    from dreamkit.context import RunContext
    from dreamkit.plugins import PluginHost
    from dreamkit.runtime import keep_freed_memory
    from dreamkit_style.effect import Style

    class Clock:
        def update(self, count: int = 1) -> None:
            stamps.append(time.perf_counter())

        def show(self, **values) -> None:
            losses.append(float(values.get("style", 0.0)) + float(values.get("content", 0.0)))

        def preview(self, image) -> None:
            pass

    class Clocks:
        @contextmanager
        def bar(self, total: int, desc: str):
            yield Clock()

    keep_freed_memory()
    effect = Style(style=[str(sample("ihc.png"))], backbone=backbone,
                   weights="random" if weights_file(backbone) is None else "default", scales=1,
                   iterations=iterations + WARMUP, memory_mb=768 if mode == "effect-768" else None)
    stamps.append(time.perf_counter())
    effect.stylise(content, RunContext(content.device, 0, Clocks(), host=PluginHost()))


def big_run(side: int, iterations: int) -> None:
    """Stylise a side x side photo with the CLI (default memory budget: exact tiles) and report
    the wall time and the peak RSS of that process."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp) / "big.png"
        Image.open(sample("chelsea.png")).convert("RGB").resize((side, side), Image.BICUBIC).save(source)
        dreamkit = pathlib.Path(sys.executable).parent / "dreamkit"
        command = [str(dreamkit), "run", str(source), "-e",
                   f"style:style={sample('ihc.png')},iterations={iterations},scales=1", "-o", str(pathlib.Path(tmp) / "out"),
                   "-q"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if done.returncode != 0:
            raise SystemExit(f"the {side}x{side} run failed:\n{done.stderr}")
        written = (pathlib.Path(tmp) / "out" / "big.png").exists()
    print(f"{side}x{side} style, {iterations} L-BFGS iterations at full size, memory_mb=768 (exact tiles): "
          f"{seconds:.0f} s, peak RSS {peak / 1024:.2f} GiB, output written: {written}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--backbones", nargs="*", default=["mobilenet_v2", "vgg19"])
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations per process (after 2 warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per mode (alternating)")
    parser.add_argument("--big", type=int, default=0, metavar="SIDE", help="also stylise a SIDE x SIDE image (e.g. 4096)")
    parser.add_argument("--big-iterations", type=int, default=3)
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES, help="modes to run (default: all)")
    parser.add_argument("--default-run", type=int, default=0, metavar="SIDE",
                        help="also time `dreamkit run` with the style defaults on a SIDE x SIDE photo against the "
                             "cost predicted from this run's effect-default figures")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "BACKBONE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), args.iterations)
        return
    from ladder import describe_cpu

    print(f"Gatys per-iteration time (L-BFGS), medians of {args.iterations} iterations x {args.rounds} alternating "
          f"processes; speedup against '{REFERENCE}'")
    print(f"CPU: {describe_cpu()}")
    print(f"{'size':>5} {'backbone':<13} {'mode':<14} {'ms/iter':>9} {'speedup':>8} {'first loss':>11} {'last loss':>11} "
          f"{'peak MiB':>9}")
    per_iteration: dict[tuple[str, str, int], float] = {}
    for backbone in args.backbones:
        modes = [m for m in MODES if (m in args.modes or m == REFERENCE)
                 and not (m == "ours-smoothed" and backbone.startswith("vgg"))]
        for size in args.sizes:
            samples = {mode: [] for mode in modes}
            details = {}
            for _ in range(args.rounds):
                for mode in modes:
                    result = workers.run_json(__file__, "--worker", mode, backbone, str(size), "--iterations",
                                              str(args.iterations))
                    samples[mode].append(result["median"])
                    details[mode] = result
            reference = statistics.median(samples[REFERENCE])
            for mode in modes:
                median = statistics.median(samples[mode])
                per_iteration[(backbone, mode, size)] = median
                info = details[mode]
                print(f"{size:>5} {backbone:<13} {mode:<14} {median * 1000:>9.1f} {reference / median:>7.2f}x "
                      f"{info['first']:>11.4g} {info['last']:>11.4g} {info['peak_mib']:>9.0f}", flush=True)
    if args.big:
        big_run(args.big, args.big_iterations)
    if args.default_run:
        default_run(args.default_run, per_iteration)


def default_run(side: int, per_iteration: dict[tuple[str, str, int], float]) -> None:
    """``dreamkit run`` with the style defaults on a side x side photo: wall time, the scales the
    output's record shows, and the prediction: Σ over scales of 100 x the effect-default
    per-iteration time at that size (the rest is start-up, weights, PNG writing)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp) / "photo.png"
        Image.open(sample("chelsea.png")).convert("RGB").resize((side, side), Image.BICUBIC).save(source)
        report = pathlib.Path(tmp) / "report.jsonl"
        command = [str(pathlib.Path(sys.executable).parent / "dreamkit"), "run", str(source), "-e",
                   f"style:style={sample('ihc.png')}", "-o", str(pathlib.Path(tmp) / "out"), "-q", "--report", str(report)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"the {side}x{side} default run failed:\n{done.stderr}")
        record = next(json.loads(line) for line in report.read_text().splitlines() if '"done"' in line)
    (result,) = [r for r in record["frames"][0]["results"] if r.get("effect") == "style"]
    sizes = [max(scale["size"]) for scale in result["scales"]]
    missing = [size for size in sizes if ("mobilenet_v2", "effect-default", size) not in per_iteration]
    print(f"{side}x{side} style with its defaults (`dreamkit run`): {seconds:.1f} s wall; scales {sizes}, tiles "
          f"{[scale['tiles'] for scale in result['scales']]}")
    if missing:
        print(f"  (no prediction: run with --sizes {' '.join(map(str, sizes))} --modes effect-default)")
        return
    predicted = sum(100 * per_iteration[("mobilenet_v2", "effect-default", size)] for size in sizes)
    print(f"  predicted from the effect-default figures above: {predicted:.1f} s of iterations; measured "
          f"{seconds:.1f} s ({seconds - predicted:+.1f} s start-up, weights, Gram targets, writing)")


if __name__ == "__main__":
    main()
