"""The batch engines against a plain loop, side by side: ``classify`` over a folder of images.

    .venv/bin/python bench/batch.py [--count 64] [--rounds 3] [--workers 1,2] [--no-ray]

``--count`` small photos (crops of the sample photos of scikit-image and matplotlib, 320×240,
written as PNG files before any timing) are classified and written back out:

* reference: what a user writes by hand: a loop that opens each file with Pillow, runs torchvision's
  MobileNetV2 (the same verified weights, eval, inference mode) after its weights' own transforms,
  takes softmax and top-5, and saves the image as PNG with the labels in a text chunk.
* reference-batched: the same, but the model sees 16 images at a time (files are still decoded
  and saved one by one): what batching analysis effects could buy.
* local: ``plan_batch`` + ``run_batch`` with the local engine, as ``dreamkit run DIR -e classify``
  does (input hashing, recipe, atomic writes, records; classify is batchable, so the engine hands
  it 16 images at a time), in this process.
* ray-N: the Ray engine with N actors on a local Ray instance: Ray's start-up (``ray.init``), the
  time to the first result (actors start, load the model, finish a first group), the whole run
  (without ``ray.init``) and images/s over it.

Local modes run in interleaved rounds (A B C A B C ...), each into a fresh folder; the median
round is reported. Ray runs once per actor count, after them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from analysis import PHOTOS  # noqa: E402


def write_photos(folder: pathlib.Path, count: int) -> list[pathlib.Path]:
    import matplotlib
    import skimage.data
    from PIL import Image

    skimage_dir = pathlib.Path(skimage.data.__file__).parent
    sources = [pathlib.Path(matplotlib.get_data_path()) / "sample_data" / name if name == "grace_hopper.jpg"
               else skimage_dir / name for name in PHOTOS]
    pictures = [Image.open(path).convert("RGB") for path in sources]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        picture = pictures[index % len(pictures)]
        left = (index * 37) % max(1, picture.width - 320)
        top = (index * 23) % max(1, picture.height - 240)
        path = folder / f"photo_{index:03d}.png"
        picture.crop((left, top, left + 320, top + 240)).save(path)
        paths.append(path)
    return paths


def plain_loop(batch_size: int):
    """The hand-written reference (see the module docstring)."""
    import json

    import torch
    import torchvision
    from PIL import Image, PngImagePlugin

    from dreamkit.plugins import get_host

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(get_host().weights.load_state_dict("mobilenet_v2.IMAGENET1K_V1"))
    model.eval()
    transforms = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    to_tensor = torchvision.transforms.functional.pil_to_tensor

    def save(picture, labels, path):
        info = PngImagePlugin.PngInfo()
        info.add_text("labels", json.dumps(labels))
        picture.save(path, pnginfo=info)

    def run(paths, out: pathlib.Path):
        out.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                chunk = paths[start:start + batch_size]
                pictures = [Image.open(path).convert("RGB") for path in chunk]
                batch = torch.stack([transforms(to_tensor(p)) for p in pictures])
                values, indices = model(batch).softmax(1).topk(5)
                for picture, path, v, i in zip(pictures, chunk, values.tolist(), indices.tolist()):
                    save(picture, list(zip(i, v)), out / path.name)

    return run


def ours_local():
    from dreamkit.batch import LocalEngine, plan_batch, run_batch
    from dreamkit.pipeline import Pipeline

    pipeline = Pipeline.from_specs(["classify"])

    def run(paths, out: pathlib.Path):
        plan = plan_batch(pipeline, paths, out)
        records = list(run_batch(plan, LocalEngine(), progress=False))
        assert all(r["status"] == "done" for r in records), records[0]

    return run


def ray_figures(paths, workers: int, root: pathlib.Path) -> tuple[float, float, float]:
    """(ray.init seconds, seconds to the first result, seconds for the whole run) with ``workers``
    actors. Results come back a group (16 images for classify) at a time."""
    import logging

    import ray

    from dreamkit.batch import plan_batch, run_batch
    from dreamkit.batch.ray_engine import RayEngine
    from dreamkit.pipeline import Pipeline

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    started = time.perf_counter() - start
    try:
        plan = plan_batch(Pipeline.from_specs(["classify"]), paths, root / f"ray-{workers}")
        start = time.perf_counter()
        stamps = [time.perf_counter() - start for record in run_batch(plan, RayEngine(workers=workers), progress=False)]
    finally:
        ray.shutdown()
    return started, stamps[0], stamps[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="Ray actor counts to measure")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()

    import torch

    from dreamkit.runtime import configure, cpu_name

    configure(None)  # what `dreamkit run` does; every mode runs under it
    root = pathlib.Path(tempfile.mkdtemp(prefix="dreamkit-bench-batch-"))
    try:
        paths = write_photos(root / "in", args.count)
        modes = {"reference": plain_loop(1), "reference-batched": plain_loop(16), "local": ours_local()}
        for name, run in modes.items():  # warm up: model loaded, allocator grown
            run(paths[:2], root / "warm" / name)
        times: dict[str, list[float]] = {name: [] for name in modes}
        for round_index in range(args.rounds):
            for name, run in modes.items():
                out = root / f"{name}-{round_index}"
                start = time.perf_counter()
                run(paths, out)
                times[name].append(time.perf_counter() - start)
                shutil.rmtree(out)
        print(f"{args.count} images 320×240, classify (MobileNetV2), {args.rounds} rounds, "
              f"{torch.get_num_threads()} threads, {cpu_name()} ({torch.backends.cpu.get_cpu_capability()})")
        print(f"{'mode':<20} {'seconds':>8} {'images/s':>9}  time vs reference, vs reference-batched")
        reference, batched = statistics.median(times["reference"]), statistics.median(times["reference-batched"])
        for name, values in times.items():
            median = statistics.median(values)
            ratio = "" if name == "reference" else f"  {median / reference - 1:+.1%}"
            ratio += f", {median / batched - 1:+.1%}" if name == "local" else ""
            print(f"{name:<20} {median:>8.3f} {args.count / median:>9.1f}{ratio}")
        if args.no_ray:
            return
        print(f"\n{'ray actors':<12} {'ray.init s':>10} {'first result s':>15} {'run s':>7} {'images/s':>9}")
        for workers in (int(w) for w in args.workers.split(",")):
            started, first, total = ray_figures(paths, workers, root)
            print(f"ray-{workers:<8} {started:>10.2f} {first:>15.2f} {total:>7.2f} {args.count / total:>9.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
