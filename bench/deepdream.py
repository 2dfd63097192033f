"""DeepDream per-step time vs a straightforward plain-PyTorch DeepDream, and peak memory.

    .venv/bin/python bench/deepdream.py [--sizes 512 1024] [--rounds 2] [--memory-side 4096]

Reference: what a user writes from the original notebook in plain PyTorch: the whole torchvision
MobileNetV2 with the same verified weights, eval mode, default settings (trainable weights,
default allocator, fp32 NCHW), a forward hook on the layer, ``torch.roll`` jitter,
``F.interpolate`` octaves with detail transfer, and torch ops for the normalised update. Ours:
the ``deepdream`` effect's own loop (``dream()``, as ``dreamkit run`` runs it: runtime tuning
applied), in fp32 and in its fast mode (bf16 autocast + channels_last). Same layer, octaves,
steps, step size and seed. Each mode runs in its own process, alternating (A B C A B C ...); the
time of every step of the finest octave is recorded and the medians compared.

Peak memory: one more process dreams a ``--memory-side`` square image with default settings
except ``steps=1`` (the peak does not depend on the number of steps) and reports its max RSS.
The fast mode's final image is compared with fp32 (max and mean absolute pixel difference, 0..255);
both are written to ``bench/out/`` to look at.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

LAYER, OCTAVES, SCALE, STEPS, STEP_SIZE, JITTER = "features.12", 4, 1.4, 10, 0.005, 32
MODES = ("reference", "ours-fp32", "ours-fast")
OUT = pathlib.Path(__file__).resolve().parent / "out"


def photo(size: int):
    import skimage.data
    import torch.nn.functional as F

    from dreamkit import load_image

    image = load_image(pathlib.Path(skimage.data.__file__).parent / "astronaut.png")
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)


def reference_dream(image, times: list[float]):
    """The plain-PyTorch DeepDream (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from models import reference_model  # bench/models.py: the same plain model, hooked

    activation_of = reference_model(LAYER)
    generator = torch.Generator().manual_seed(0)
    height, width = image.shape[-2:]
    sizes = [(round(height / SCALE**i), round(width / SCALE**i)) for i in range(OCTAVES)]
    bases = [image] + [F.interpolate(image, size=s, mode="bilinear", antialias=True) for s in sizes[1:]]
    detail = torch.zeros_like(bases[-1])
    for octave, (size, base) in enumerate(zip(reversed(sizes), reversed(bases))):
        if octave:
            detail = F.interpolate(detail, size=size, mode="bilinear")
        current = (base + detail).clamp(0, 1)
        for _ in range(STEPS):
            start = time.perf_counter()
            sy, sx = (int(torch.randint(-JITTER, JITTER + 1, (1,), generator=generator)) for _ in range(2))
            rolled = torch.roll(current, (sy, sx), dims=(-2, -1)).requires_grad_(True)
            activation_of(rolled).pow(2).mean().backward()
            grad = torch.roll(rolled.grad, (-sy, -sx), dims=(-2, -1))
            current = (current + STEP_SIZE * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1)
            if octave == OCTAVES - 1:
                times.append(time.perf_counter() - start)
        detail = current - base
    return current


def ours_dream(image, times: list[float], fast: bool, **overrides):
    import torch

    from dreamkit.runtime import configure
    from dreamkit_deepdream import DeepDream, dream

    configure()  # what `dreamkit run` does at start-up
    effect = DeepDream(layers=[LAYER], fast=fast, **overrides)
    objective, extractor, geometry = effect.build_objective(torch.device("cpu"))
    settings = effect.settings()
    last = [time.perf_counter()]
    per_octave: dict[int, list[float]] = {}  # small images may get fewer octaves than asked
    # Intervals between steps; an octave's first one also holds its set-up, which the median drops.

    def on_step(_, record):
        now = time.perf_counter()
        per_octave.setdefault(record.octave, []).append(now - last[0])
        last[0] = now

    result, _ = dream(image, extractor, objective, geometry, settings, torch.Generator().manual_seed(0),
                      on_step=on_step)
    times.extend(per_octave[max(per_octave)])
    return result


def worker(mode: str, size: int) -> None:
    import torch

    image = photo(size)
    times: list[float] = []
    if mode == "reference":
        result = reference_dream(image, times)
    elif mode == "memory":
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        ours_dream(image, times, False, steps=1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"peak_rss": peak, "seconds": time.perf_counter() - start}))
        return
    else:
        result = ours_dream(image, times, mode == "ours-fast")
        OUT.mkdir(exist_ok=True)
        torch.save(result, OUT / f"{mode}-{size}.pt")
        from dreamkit import save_image

        save_image(result, OUT / f"{mode}-{size}.png", overwrite=True)
    print(json.dumps({"median_step": statistics.median(times), "steps": len(times)}))


def run(mode: str, size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(size)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the modes per size")
    parser.add_argument("--memory-side", type=int, default=4096, help="0 skips the memory run")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    import torch

    print(f"DeepDream on MobileNetV2 {LAYER}, {OCTAVES} octaves x {STEPS} steps, astronaut.png; "
          "median time of a finest-octave step, each mode in its own process, alternated")
    print(f"{'size':>5} {'reference s':>12} {'ours fp32 s':>12} {'speedup':>8} {'ours fast s':>12} {'speedup':>8} "
          f"{'fast vs fp32 max/mean px':>25}")
    for size in args.sizes:
        medians: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                medians[mode].append(run(mode, size)["median_step"])
        ref, fp32, fast = (statistics.median(medians[m]) for m in MODES)
        a, b = torch.load(OUT / f"ours-fp32-{size}.pt"), torch.load(OUT / f"ours-fast-{size}.pt")
        diff = (a - b).abs() * 255
        print(f"{size:>5} {ref:>12.3f} {fp32:>12.3f} {ref / fp32:>7.2f}x {fast:>12.3f} {ref / fast:>7.2f}x "
              f"{diff.max():>12.1f} / {diff.mean():.2f}", flush=True)
    if args.memory_side:
        result = run("memory", args.memory_side)
        print(f"peak RSS of a {args.memory_side}x{args.memory_side} dream (default settings, steps=1): "
              f"{result['peak_rss'] / 2**30:.2f} GiB ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
