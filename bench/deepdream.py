"""DeepDream: dreamkit against a competent plain-PyTorch DeepDream, with the ladder of what each change buys.

    .venv/bin/python bench/deepdream.py [--sizes 512 1024] [--rounds 3] [--ladder-rounds 1]
                                        [--no-process] [--memory-side 4096]

The reference is ``bench/plain_deepdream.py``: torchvision's MobileNetV2 with the same verified
weights, ``eval()``, every parameter frozen, a forward hook on ``features.12``, the whole model
called, ``torch.roll`` jitter, ``F.interpolate`` octaves with detail transfer, default process
settings; the same 4 octaves x 1.4, 10 steps, step size 0.005, jitter 32, fp32, on the same photo
(chelsea.png resized to 640x427 and shown at 512 px with ``resize:max_side=512``, and to 1024x683).
Ours is the ``deepdream`` effect with its defaults (one piece up to its memory budget: neither side
tiles these sizes).

Each rung of the ladder runs in its own process, rungs alternating (A B C ... A B C ...), so machine
noise hits them alike. The rungs of bench/ladder.py (unfrozen, frozen = THE REFERENCE, truncated,
bn-folded, allocator, channels-last, out-of-place) run the reference's own loop with that model;
every ratio is against ``frozen``. Then:

    ours          the deepdream effect: all of the above + fused jitter/resample/update ops,
                  no set-up it does not need (no receptive-field probe unless it tiles)
    ours-fast     fast=true (bf16 only where it is measured to pay on this CPU)

"effect s" is the image loaded → result time (model loading included, on both sides); "step s" the
median finest-octave step. With --process, whole processes are also timed: ``dreamkit run`` against
``python bench/plain_deepdream.py`` (imports, weights, saving the PNG). Peak memory: one process
dreams a --memory-side square image with default settings and ``steps=1`` and reports its max RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import workers
from ladder import REFERENCE, RUNGS, activation, describe_cpu, weights_path

from dreamkit.progress import Progress

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "out"
LAYER = "features.12"
LADDER = (*RUNGS, "ours", "ours-fast")
PHOTO_SIZES = {512: (640, 427), 1024: (1024, 683)}  # photo written for each --sizes value


def photo_path(size: int) -> pathlib.Path:
    """chelsea.png resized (Lanczos) to the photo of that size, written once to bench/out/."""
    import skimage.data
    from PIL import Image

    width, height = PHOTO_SIZES.get(size, (size, round(size * 2 / 3)))
    path = OUT / f"photo-{width}x{height}.png"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        with Image.open(pathlib.Path(skimage.data.__file__).parent / "chelsea.png") as image:
            image.convert("RGB").resize((width, height), Image.LANCZOS).save(path)
    return path


def effect_input(size: int):
    """The image the effect step receives: the photo, shrunk to ``size`` on its longer side as
    ``resize:max_side`` does (the plain script shrinks with PIL: same size, same work)."""
    from dreamkit import Pipeline, load_image
    from dreamkit_basic import Resize

    image = load_image(photo_path(size))
    return Pipeline([Resize(max_side=size)]).run(image, device="cpu").image if max(image.shape[-2:]) > size else image


class StepClock(Progress):
    """Stands in for the run's progress bars: records the time between the effect's step ticks."""

    def __init__(self) -> None:
        self.octaves: list[list[float]] = []

    @contextlib.contextmanager
    def bar(self, total: int, desc: str):
        intervals: list[float] = []
        self.octaves.append(intervals)
        last = [time.perf_counter()]

        class Tick:
            def update(self, n: int = 1) -> None:
                now = time.perf_counter()
                intervals.append(now - last[0])
                last[0] = now

            def show(self, **values) -> None:
                pass

            def preview(self, image) -> None:
                pass

        yield Tick()


def ours(image, times: list[float], fast: bool):
    """The deepdream effect's own step, as a pipeline runs it (after `dreamkit run`'s start-up tuning)."""
    import torch

    from dreamkit.context import RunContext
    from dreamkit.plugins import get_host
    from dreamkit.runtime import configure
    from dreamkit_deepdream import DeepDream

    configure()
    clock = StepClock()
    result = DeepDream(fast=fast).apply(image, RunContext(torch.device("cpu"), 0, clock, host=get_host()))
    times.extend(clock.octaves[-1])
    return result


def worker(rung: str, size: int) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    if rung == "memory":
        from dreamkit.runtime import configure
        from dreamkit_deepdream import DeepDream

        configure()
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        from dreamkit import Pipeline

        Pipeline([DeepDream(steps=1)]).run(image, device="cpu", seed=0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"peak_rss": peak, "seconds": time.perf_counter() - start}))
        return
    image = effect_input(size)
    from dreamkit.plugins import get_host

    get_host()  # `dreamkit run` loads its plugins before it loads an image: not part of the effect
    times: list[float] = []
    start = time.perf_counter()
    if rung.startswith("ours"):
        result = ours(image, times, fast=rung == "ours-fast")
    else:
        import plain_deepdream as plain

        result = plain.deepdream(image, activation(rung, LAYER), times)
    effect = time.perf_counter() - start
    OUT.mkdir(exist_ok=True)
    torch.save(result, OUT / f"{rung}-{size}.pt")
    print(json.dumps({"effect": effect, "step": statistics.median(times)}))


def whole_process(kind: str, size: int, weights: str) -> float:
    """Wall seconds of a whole process: ``dreamkit run`` or the plain script, same photo and size."""
    photo = photo_path(size)
    OUT.mkdir(exist_ok=True)
    resize = ["-e", f"resize:max_side={size}"] if max(PHOTO_SIZES.get(size, (size,))) > size else []
    if kind == "dreamkit":
        command = [str(pathlib.Path(sys.executable).with_name("dreamkit")), "run", str(photo), *resize, "-e",
                   "deepdream", "-o", str(OUT / f"run-{size}"), "--overwrite", "--quiet"]
    else:
        command = [sys.executable, str(HERE / "plain_deepdream.py"), str(photo), str(OUT / f"plain-{size}.png"),
                   "--weights", weights, *(["--max-side", str(size)] if resize else [])]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=3, help="processes of the reference and ours (alternating)")
    parser.add_argument("--ladder-rounds", type=int, default=1, help="processes of each middle rung (0: skip them)")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process timings")
    parser.add_argument("--memory-side", type=int, default=4096, help="0 skips the memory run")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    import torch

    print(f"DeepDream, MobileNetV2 {LAYER}, 4 octaves x 10 steps, fp32 unless noted; chelsea.png")
    print(f"CPU: {describe_cpu()}")
    weights = weights_path()
    for size in args.sizes:
        samples: dict[str, list[dict]] = {rung: [] for rung in LADDER}
        for round_ in range(max(args.rounds, args.ladder_rounds)):
            for rung in LADDER:
                key_rung = rung in (REFERENCE, "ours", "ours-fast")
                if round_ < (args.rounds if key_rung else args.ladder_rounds):
                    samples[rung].append(workers.run_json(__file__, "--worker", rung, str(size)))
        reference = {k: statistics.median(s[k] for s in samples[REFERENCE]) for k in ("effect", "step")}
        width, height = effect_input(size).shape[-1], effect_input(size).shape[-2]
        print(f"\n{width}x{height} (medians of {args.rounds} processes for frozen/ours, {args.ladder_rounds} per "
              f"middle rung)")
        print(f"{'rung':<14} {'effect s':>9} {'vs ref':>7} {'step s':>8} {'vs ref':>7}")
        for rung in LADDER:
            if not samples[rung]:
                continue
            effect = statistics.median(s["effect"] for s in samples[rung])
            step = statistics.median(s["step"] for s in samples[rung])
            print(f"{rung:<14} {effect:>9.2f} {reference['effect'] / effect:>6.2f}x {step:>8.3f} "
                  f"{reference['step'] / step:>6.2f}x", flush=True)
        a, b = torch.load(OUT / f"ours-{size}.pt"), torch.load(OUT / f"ours-fast-{size}.pt")
        diff = (a - b).abs() * 255
        print(f"ours-fast vs ours: max {diff.max():.1f} / mean {diff.mean():.2f} (0..255)")
        if not args.no_process:
            times: dict[str, list[float]] = {"plain": [], "dreamkit": []}
            for _ in range(args.rounds):
                for kind in times:
                    times[kind].append(whole_process(kind, size, weights))
            plain, ours_s = (statistics.median(times[k]) for k in ("plain", "dreamkit"))
            print(f"whole process: plain script {plain:.2f} s, dreamkit run {ours_s:.2f} s: {plain / ours_s:.2f}x")
    if args.memory_side:
        result = workers.run_json(__file__, "--worker", "memory", str(args.memory_side))
        print(f"\npeak RSS of a {args.memory_side}x{args.memory_side} dream (default settings, steps=1): "
              f"{result['peak_rss'] / 2**30:.2f} GiB ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
