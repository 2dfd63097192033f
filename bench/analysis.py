"""Images per second for classify and face detection, against a plain loop, side by side.

    .venv/bin/python bench/analysis.py [--count 32] [--rounds 3]

``--count`` sample-sized photos (the real sample photos of scikit-image and matplotlib, cycled;
decoded once, before any timing) go through:

* classify, reference: a plain loop calling torchvision's MobileNetV2 (same verified weights, eval,
  inference mode) after its weights' own transforms, softmax and top-5: what a user writes by hand.
* classify, ours: ``Pipeline([Classify()]).run(image)`` per image (context, hooks, records), and
  ``Classify().predict(images)`` (batches of 32).
* faces, reference: a plain loop calling the MTCNN cascade directly. Ours: ``Pipeline([Detect()])``.

Each round runs every mode once over all images, in turn (A B C D E A B C D E ...); the median
round time per mode is reported with the pipeline's overhead against its reference.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "horse.png",
          "hubble_deep_field.jpg", "retina.jpg", "grace_hopper.jpg")


def sample_images(count: int):
    import matplotlib
    import skimage.data

    from dreamkit import load_image

    skimage_dir = pathlib.Path(skimage.data.__file__).parent
    paths = [pathlib.Path(matplotlib.get_data_path()) / "sample_data" / name if name == "grace_hopper.jpg"
             else skimage_dir / name for name in PHOTOS]
    decoded = [load_image(path) for path in paths]
    return [decoded[i % len(decoded)] for i in range(count)]


def plain_classifier():
    """torchvision's MobileNetV2 with the same verified weights, and its weights' transforms."""
    import torch
    import torchvision

    from dreamkit.plugins import get_host

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(get_host().weights.load_state_dict("mobilenet_v2.IMAGENET1K_V1"))
    model.eval()
    transforms = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()

    def run(images):
        with torch.inference_mode():
            for image in images:
                probabilities = model(transforms(image[0])[None]).softmax(1)
                probabilities.topk(5)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from dreamkit import Pipeline
    from dreamkit.runtime import configure
    from dreamkit_classify import Classify
    from dreamkit_detect import MTCNN, Detect

    configure(None)  # what `dreamkit run` does; both sides of every pair run under it
    images = sample_images(args.count)
    classify_pipeline, detect_pipeline = Pipeline([Classify()]), Pipeline([Detect()])
    mtcnn = MTCNN.from_registry()

    def ours_classify(batch):
        for image in batch:
            classify_pipeline.run(image, device="cpu")

    def ours_faces(batch):
        for image in batch:
            detect_pipeline.run(image, device="cpu")

    def plain_faces(batch):
        for image in batch:
            mtcnn.detect(image)

    modes = {
        "classify-reference": plain_classifier(),
        "classify-ours": ours_classify,
        "classify-ours-batched": lambda batch: Classify().predict(batch, batch_size=32),
        "faces-reference": plain_faces,
        "faces-ours": ours_faces,
    }
    for run in modes.values():  # warm up: models loaded, caches filled, allocator grown
        run(images[:2])
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, run in modes.items():
            start = time.perf_counter()
            run(images)
            times[name].append(time.perf_counter() - start)

    print(f"{args.count} images, {args.rounds} rounds, {torch.get_num_threads()} threads (median round)")
    print(f"{'mode':<24} {'seconds':>8} {'images/s':>9}  vs reference")
    for name, values in times.items():
        median = statistics.median(values)
        reference = statistics.median(times[name.split("-")[0] + "-reference"])
        ratio = "" if name.endswith("reference") else f"  overhead {median / reference - 1:+.1%}"
        print(f"{name:<24} {median:>8.3f} {args.count / median:>9.1f}{ratio}")


if __name__ == "__main__":
    main()
