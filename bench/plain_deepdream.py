"""A DeepDream written the way a competent PyTorch user writes it: the reference for bench/deepdream.py.

    python bench/plain_deepdream.py IMAGE OUT.png --weights mobilenet_v2-b0353104.pth [--max-side 512]

Plain PyTorch and torchvision only (no dreamkit import), default process settings: torchvision's
MobileNetV2 with the same ImageNet weights, ``eval()``, ``requires_grad_(False)`` on every parameter
(frozen: no weight gradients), a forward hook on ``features.12``, the whole model called,
``torch.roll`` jitter, ``F.interpolate`` octaves with detail transfer (as the original notebook),
and the gradient normalised by its mean absolute value. Same numbers as the ``deepdream`` effect's
defaults: 4 octaves x 1.4, 10 steps, step 0.005, jitter 32, fp32, seed 0.

It prints one JSON line: ``effect_s`` (image loaded → result, model loading included, as in the
``deepdream`` effect), ``steps`` (seconds of every finest-octave step) and ``total_s``.
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

LAYER, OCTAVES, SCALE, STEPS, STEP_SIZE, JITTER = "features.12", 4, 1.4, 10, 0.005, 32
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(path: str, max_side: int | None) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def model_with_hook(weights: str, layer: str = LAYER, frozen: bool = True):
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval().requires_grad_(not frozen)  # frozen: no weight gradients (bench/ladder.py turns it off)
    captured = {}
    model.get_submodule(layer).register_forward_hook(lambda module, args, out: captured.__setitem__("a", out))

    def activation_of(image: torch.Tensor) -> torch.Tensor:
        model((image - MEAN) / STD)
        return captured["a"]

    return activation_of


def deepdream(image: torch.Tensor, activation_of, times: list[float]) -> torch.Tensor:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("output")
    parser.add_argument("--weights", required=True, help="torchvision's mobilenet_v2-b0353104.pth")
    parser.add_argument("--max-side", type=int, default=None, help="shrink the input first (as -e resize:max_side=N)")
    args = parser.parse_args()
    image = load(args.image, args.max_side)
    begin = time.perf_counter()  # as for the effect: the model is made after the image is loaded
    activation_of = model_with_hook(args.weights)
    times: list[float] = []
    result = deepdream(image, activation_of, times)
    effect = time.perf_counter() - begin
    pixels = (result[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(args.output)
    print(json.dumps({"effect_s": effect, "steps": times, "total_s": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
