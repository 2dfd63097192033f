"""Every built-in effect end to end on a CUDA GPU, compared with its CPU result (skipped without a GPU).

Tolerances, and why: the same network on another device sums in another order, and cuDNN may use
TF32 for float32 convolutions, so float32 activations differ by ~1e-3 relative. Exact identities
(a dream step's gradient, tiled or not) are compared in float64, tightly; results built on top of
float32 passes are compared by what they mean (the same labels, boxes within a pixel or two, a
dream that is the same picture) rather than bit for bit.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from dreamkit import Pipeline, load_image
from dreamkit_classify import Classify
from dreamkit_deepdream import DeepDream, Settings, dream, plan_tiles
from dreamkit.tiling import activation_counts
from dreamkit_deepdream.tiles import jittered_gradient
from dreamkit_detect import Detect

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def photo(samples):
    image = load_image(samples / "chelsea.png")
    return F.interpolate(image, size=(96, 144), mode="bilinear", antialias=True)


def run(effect, image, device):
    return Pipeline([effect]).run(image, device=device, seed=0).frames[0]


def test_deepdream_step_gradient_on_cuda_equals_cpu_in_float64(photo):
    objective, extractor, geometry = DeepDream(layers=["features.7", "features.12"]).build_objective(torch.device("cpu"))
    image = F.interpolate(photo, size=(200, 296), mode="bilinear").double()
    objective.counts = activation_counts(extractor, 200, 296)
    cpu = copy.deepcopy(extractor).double()
    gpu = copy.deepcopy(extractor).double().cuda()
    for tile_size in (0, 64):  # untiled, and tiled with halos
        tiles = plan_tiles(200, 296, tile_size, geometry)
        grad_cpu, value_cpu = jittered_gradient(cpu, objective, image, (13, -21), tiles, geometry)
        grad_gpu, value_gpu = jittered_gradient(gpu, objective, image.cuda(), (13, -21), tiles, geometry)
        assert value_gpu == pytest.approx(value_cpu, rel=1e-10)
        torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, rtol=0, atol=1e-10 * grad_cpu.abs().max().item())


@pytest.mark.parametrize("tile_size", [0, 48])
def test_deepdream_float64_dream_on_cuda_equals_cpu(photo, tile_size):
    objective, extractor, geometry = DeepDream().build_objective(torch.device("cpu"))
    settings = Settings(octaves=2, steps=3, tile_size=tile_size)
    cpu, _ = dream(photo.double(), copy.deepcopy(extractor).double(), objective, geometry, settings,
                   torch.Generator().manual_seed(0))
    gpu, _ = dream(photo.double().cuda(), copy.deepcopy(extractor).double().cuda(), objective, geometry, settings,
                   torch.Generator().manual_seed(0))
    assert (gpu.cpu() - cpu).abs().max() < 1e-8


@pytest.mark.parametrize("params", [{"tile_size": 0}, {"tile_size": 48}, {}])
def test_deepdream_effect_runs_on_cuda_like_on_cpu(photo, params):
    effect = DeepDream(octaves=2, steps=4, **params)
    cpu, gpu = run(effect, photo, "cpu").image, run(effect, photo, "cuda").image
    gpu = gpu.cpu()
    assert 0 <= gpu.min() and gpu.max() <= 1
    assert (gpu - photo).abs().mean() > 0.01  # it dreamed
    # float32 (and TF32) rounding grows over steps; the same dream stays far closer than another seed's
    other_seed = Pipeline([effect]).run(photo, device="cpu", seed=1).image
    assert (gpu - cpu).abs().mean() < 0.25 * (other_seed - cpu).abs().mean()


def test_classify_on_cuda_gives_the_cpu_labels(samples):
    for name, label in (("chelsea.png", "Egyptian cat"), ("coffee.png", "espresso")):
        image = load_image(samples / name)
        cpu, gpu = (run(Classify(), image, device).results[0]["predictions"] for device in ("cpu", "cuda"))
        assert [p["label"] for p in gpu[:3]] == [p["label"] for p in cpu[:3]] and gpu[0]["label"] == label
        assert gpu[0]["probability"] == pytest.approx(cpu[0]["probability"], abs=0.01)


def test_detect_faces_on_cuda_finds_the_cpu_face(samples):
    image = load_image(samples / "astronaut.png")
    cpu, gpu = (run(Detect(what="faces"), image, device).results[0]["detections"] for device in ("cpu", "cuda"))
    assert len(gpu) == len(cpu) == 1
    assert max(abs(a - b) for a, b in zip(gpu[0]["box"], cpu[0]["box"])) < 2.0


def test_coco_detector_with_random_weights_runs_on_cuda(samples):
    image = load_image(samples / "coffee.png")
    effect = Detect(what="objects", weights="random", score_threshold=0.0, max_detections=5)
    cpu, gpu = (run(effect, image, device).results[0] for device in ("cpu", "cuda"))
    height, width = image.shape[-2:]
    assert gpu["count"] == len(gpu["detections"]) > 0
    for detection in gpu["detections"]:
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    # the best-scoring box is the same one (random weights still give a deterministic ranking)
    assert max(abs(a - b) for a, b in zip(gpu["detections"][0]["box"], cpu["detections"][0]["box"])) < 2.0


def test_style_tiled_gradient_on_cuda_equals_cpu_in_float64(samples):
    from dreamkit.models import FeatureExtractor
    from dreamkit.tiling import extractor_geometry
    from dreamkit_style import StyleLoss, StyleTarget

    style_layers, content_layers = {"features.2": 1.0, "features.7": 1.0}, {"features.7": 1.0}
    layers = list(dict.fromkeys([*style_layers, *content_layers]))
    cpu = FeatureExtractor("mobilenet_v2", layers).double()
    gpu = copy.deepcopy(cpu).cuda()
    geometry = extractor_geometry(cpu, tuple(layers))
    generator = torch.Generator().manual_seed(0)
    content, x, style = (torch.rand(1, 3, 120, 160, generator=generator, dtype=torch.float64) for _ in range(3))
    grads = []
    for extractor, device in ((cpu, "cpu"), (gpu, "cuda")):
        loss = StyleLoss(extractor, style_layers, content_layers, style_weight=10, content_weight=1,
                         temperatures={"features.2": 2.0, "features.7": 1.0})
        tiles = plan_tiles(120, 160, 48, geometry)
        grams = loss.gram_targets(style.to(device), tiles, geometry)
        loss.set_targets(content.to(device), [StyleTarget(grams)], tiles, geometry)
        grads.append(loss.value_and_grad(x.to(device), tiles, geometry)[1].cpu())
    assert (grads[1] - grads[0]).abs().max() <= 1e-9 * grads[0].abs().max()


def test_style_on_cuda_is_the_cpu_picture(samples, photo):
    from dreamkit_style import Style

    effect = Style(style=[str(samples / "ihc.png")], iterations=10, scales=1, optimizer="adam")
    cpu, gpu = (run(effect, photo, device).image.cpu() for device in ("cpu", "cuda"))
    # Adam's sign-like first steps turn float32 differences (cuDNN, TF32) into +-lr at a few pixels;
    # the picture is the same where it matters: the mean change is small against the stylisation.
    assert (gpu - cpu).abs().mean() < 0.1 * (cpu - photo).abs().mean()
