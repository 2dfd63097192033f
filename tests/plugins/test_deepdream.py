"""The built-in deepdream effect, with the real offline MobileNetV2 weights on sample photos."""

import copy
import importlib
import logging
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from dreamkit import DreamkitError, ParameterError, Pipeline, load_image, memo
from dreamkit_deepdream import DeepDream, Settings, dream, octave_sizes, plan_tiles, zoom
from dreamkit.tiling import (Geometry, activation_counts, auto_tile_size, feature_shapes, owned_regions,
                             pass_bytes_per_pixel)
from dreamkit_deepdream.tiles import jittered_gradient

# The package exports the function ``dream``, which hides its module of the same name.
dream_module = importlib.import_module("dreamkit_deepdream.dream")
tiling_module = importlib.import_module("dreamkit.tiling")


@pytest.fixture(scope="module")
def photo(samples):
    """chelsea.png shrunk to 96 x 144: small enough for many dreams in a test run."""
    image = load_image(samples / "chelsea.png")
    return F.interpolate(image, size=(96, 144), mode="bilinear", antialias=True)


def small(**params):
    values = {"octaves": 2, "steps": 4, **params}
    return DeepDream(**values)


def dream_with(effect, image, seed=0):
    return Pipeline([effect]).run(image, device="cpu", seed=seed).image


def objective_of(effect, image):
    objective, extractor, _ = effect.build_objective(torch.device("cpu"))
    objective.counts = activation_counts(extractor, *image.shape[-2:])
    with torch.no_grad():
        return float(objective(extractor(image)))


def test_objective_rises_over_steps(photo):
    effect = DeepDream()
    objective, extractor, geometry = effect.build_objective(torch.device("cpu"))
    settings = Settings(octaves=1, steps=8, jitter=0, step_size=0.005)
    _, history = dream(photo, extractor, objective, geometry, settings, torch.Generator().manual_seed(0))
    values = [record.objective for record in history]
    assert len(values) == 8
    assert values[-1] > 1.5 * values[0]
    assert sum(b > a for a, b in zip(values, values[1:])) >= 6


def test_result_changes_the_image_within_range(photo):
    out = dream_with(small(), photo)
    assert out.shape == photo.shape and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    change = (out - photo).abs().mean()
    assert 0.01 < change < 0.25  # visibly dreamed, yet the photo survives
    assert objective_of(DeepDream(), out) > 1.3 * objective_of(DeepDream(), photo)  # 8 steps only


def test_same_seed_same_dream_other_seed_other_dream(photo):
    first, again, other = (dream_with(small(), photo, seed) for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.01


def test_channel_targeting_raises_that_channel_most(photo):
    effect = small(channels=["7"], steps=6)
    out = dream_with(effect, photo)
    objective, extractor, _ = effect.build_objective(torch.device("cpu"))
    with torch.no_grad():
        before = extractor(photo)["features.12"][0].square().mean(dim=(1, 2))
        after = extractor(out)["features.12"][0].square().mean(dim=(1, 2))
    gain = after / before.clamp_min(1e-6)
    assert gain[7] > 3 * gain.median() and gain[7] == gain.max()


def test_layer_specific_channels_and_weights(photo):
    effect = small(layers=["features.7", "features.12"], layer_weights=[0.5, 1.0], channels=["features.7:3", "5"])
    objective, _, _ = effect.build_objective(torch.device("cpu"))
    assert [(t.layer, t.weight, t.channels) for t in objective.terms] == [("features.7", 0.5, [3, 5]),
                                                                         ("features.12", 1.0, [5])]


def test_guided_dream_raises_the_match_to_the_guide(photo, samples, tmp_path):
    guide = samples / "coffee.png"
    effect = small(guide=str(guide), steps=6)
    before, after = objective_of(effect, photo), objective_of(effect, dream_with(effect, photo))
    assert after > 1.5 * before
    unguided = dream_with(small(steps=6), photo)
    assert objective_of(effect, unguided) < after  # the guide's pull, not just any dream


def test_class_targeting_raises_the_class_logit(photo):
    effect = small(classes=["goldfish"], steps=6, layers=["features.12"])
    objective, extractor, _ = effect.build_objective(torch.device("cpu"))
    out = dream_with(effect, photo)
    with torch.no_grad():
        logits_before = extractor(photo)[objective.logits_layer][0]
        logits_after = extractor(out)[objective.logits_layer][0]
    assert objective.logits_layer == "classifier.1" and objective.classes == [1]
    assert logits_after[1] - logits_before[1] > 5


def float64_dream_parts(effect):
    """The effect's objective, a float64 copy of its (shared, cached) extractor, and its geometry.

    Tiled and untiled passes are the same sums grouped differently, so they agree up to rounding;
    in float32 that rounding (a few ulps, different per CPU and per convolution algorithm) can flip
    a ReLU6 at its boundary and move single gradient entries by ~1% of the largest. In float64 the
    flips vanish and the identity can be checked tightly, on any CPU."""
    objective, extractor, geometry = effect.build_objective(torch.device("cpu"))
    return objective, copy.deepcopy(extractor).double(), geometry


def test_tiled_gradient_equals_the_whole_image_gradient(photo):
    objective, extractor, geometry = float64_dream_parts(DeepDream(layers=["features.7", "features.12"]))
    image = F.interpolate(photo, size=(200, 296), mode="bilinear").double()
    objective.counts = activation_counts(extractor, 200, 296)
    whole = plan_tiles(200, 296, 0, geometry)
    tiles = plan_tiles(200, 296, 64, geometry)
    assert len(whole) == 1 and len(tiles) == 4 * 5
    grad_whole, value_whole = jittered_gradient(extractor, objective, image, (13, -21), whole, geometry)
    grad_tiled, value_tiled = jittered_gradient(extractor, objective, image, (13, -21), tiles, geometry)
    # float64 sums of ~1e6 terms: relative rounding far below 1e-10.
    assert value_tiled == pytest.approx(value_whole, rel=1e-10)
    torch.testing.assert_close(grad_tiled, grad_whole, rtol=0, atol=1e-10 * grad_whole.abs().max().item())
    # The check can fail: halos one receptive field too small leave visible seams.
    short = Geometry(geometry.strides, geometry.radius - geometry.halo)
    grad_short, _ = jittered_gradient(extractor, objective, image, (13, -21), plan_tiles(200, 296, 64, short), short)
    assert (grad_short - grad_whole).abs().max() > 1e-3 * grad_whole.abs().max()


def test_owned_regions_partition_every_layer(photo):
    effect = DeepDream(layers=["features.3", "features.12"])
    _, extractor, geometry = effect.build_objective(torch.device("cpu"))
    height, width = 130, 250
    counts = activation_counts(extractor, height, width)
    for layer in ("features.3", "features.12"):
        owned = 0
        for tile in plan_tiles(height, width, 48, geometry):
            (y0, y1), (x0, x1) = tile.crop
            with torch.no_grad():
                features = extractor(torch.zeros(1, 3, y1 - y0, x1 - x0))
            rows, columns = owned_regions(tile, features, geometry, height, width)[layer]
            owned += (rows.stop - rows.start) * (columns.stop - columns.start)
        assert owned == counts[layer]


def test_tiled_and_untiled_dreams_agree(photo):
    # Many steps amplify rounding (each step's normalisation and ReLU6 decisions feed the next), so
    # a float32 comparison would hold only on the CPU it was tuned on. In float64 every step's tiled
    # gradient equals the untiled one to ~1e-13 (test above), and the whole dream must agree as tightly.
    objective, extractor, geometry = float64_dream_parts(DeepDream())
    settings = Settings(octaves=2, steps=4)
    image = photo.double()
    untiled, _ = dream(image, extractor, objective, geometry, replace(settings, tile_size=0), torch.Generator().manual_seed(0))
    tiled, _ = dream(image, extractor, objective, geometry, replace(settings, tile_size=48), torch.Generator().manual_seed(0))
    assert len(plan_tiles(96, 144, 48, geometry)) > 1
    assert (untiled - image).abs().mean() > 0.01  # it did dream
    assert (tiled - untiled).abs().max() < 1e-9


def test_pass_memory_estimate_bounds_what_autograd_keeps():
    _, extractor, _ = DeepDream().build_objective(torch.device("cpu"))
    image = torch.rand(1, 3, 192, 256, generator=torch.Generator().manual_seed(0)).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        value = extractor(image)["features.12"].square().mean()
    kept = sum(saved)
    estimate = pass_bytes_per_pixel(extractor) * 192 * 256
    assert kept <= estimate <= 2.5 * kept  # an upper bound, and not a wild one


def test_tiles_only_where_memory_needs_them(monkeypatch):
    objective, extractor, geometry = DeepDream().build_objective(torch.device("cpu"))
    per_pixel = pass_bytes_per_pixel(extractor)
    assert auto_tile_size(extractor, 683, 1024, 768 * 2**20, geometry) == 0  # the README's claim
    budget = int(per_pixel * 300 * 300)
    core = auto_tile_size(extractor, 1000, 1000, budget, geometry)
    assert core % geometry.align == 0 and core >= geometry.align
    assert (core + 2 * geometry.halo) ** 2 * per_pixel <= budget or core == geometry.align
    assert (core + geometry.align + 2 * geometry.halo) ** 2 * per_pixel > budget  # the largest that fits

    planned = []
    real_plan = tiling_module.plan_tiles
    monkeypatch.setattr(dream_module, "plan_tiles", lambda *a: planned.append(a[2]) or real_plan(*a))
    image = torch.rand(1, 3, 160, 200, generator=torch.Generator().manual_seed(0))
    dream_with(DeepDream(octaves=1, steps=1), image)
    dream_with(DeepDream(octaves=1, steps=1, memory_mb=256), torch.rand(1, 3, 640, 640))
    assert planned[0] == 0 and planned[1] > 0  # in one piece, then in tiles


def test_an_untiled_dream_never_measures_the_receptive_field(photo, monkeypatch):
    tiling_module.extractor_geometry.cache_clear()
    monkeypatch.setattr(tiling_module, "measure_geometry", lambda *a: pytest.fail("probed without tiles"))
    dream_with(small(layers=["features.9"]), photo)


def test_the_receptive_field_is_measured_once_and_remembered(fresh_memo, monkeypatch):
    memo.forget("receptive-field")
    tiling_module.extractor_geometry.cache_clear()
    _, _, geometry = DeepDream(layers=["features.5"]).build_objective(torch.device("cpu"))
    measured = geometry.halo
    tiling_module.extractor_geometry.cache_clear()
    monkeypatch.setattr(tiling_module, "measure_geometry", lambda *a: pytest.fail("measured again"))
    _, _, again = DeepDream(layers=["features.5"]).build_objective(torch.device("cpu"))
    assert again.halo == measured and again.strides == {"features.5": 8}


def test_the_meta_copy_stays_out_of_the_extractor():
    _, extractor, _ = DeepDream().build_objective(torch.device("cpu"))
    feature_shapes(extractor, 64, 64)
    assert all(t.device.type == "cpu" for t in extractor.state_dict().values())
    assert all(p.device.type == "cpu" for p in extractor.parameters())
    extractor.to("cpu")  # a meta submodule would make this fail


def test_geometry_matches_mobilenet_v2_arithmetic():
    _, _, geometry = DeepDream(layers=["features.10"]).build_objective(torch.device("cpu"))
    assert geometry.strides == {"features.10": 16} and geometry.radius == 85  # receptive field 171 px
    assert geometry.halo % geometry.align == 0 and geometry.halo >= geometry.radius + geometry.align


def test_small_images_run_with_fewer_octaves(caplog):
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO, logger="dreamkit.deepdream"):
        out = dream_with(DeepDream(octaves=5, steps=2), image)
    assert out.shape == image.shape
    assert "1 octave(s) instead of 5" in caplog.text
    assert octave_sizes(300, 451, 4, 1.4, 32) == [(300, 451), (214, 322), (153, 230), (109, 164)]
    for size in [(1, 1), (31, 2)]:  # smaller than the network's stride: still a (tiny) dream
        tiny = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
        out = dream_with(DeepDream(steps=2), tiny)
        assert out.shape == tiny.shape and (out != tiny).any() and 0 <= out.min() and out.max() <= 1


def test_zoom_sequence_frames(photo):
    frames = Pipeline([small(frames=3, zoom=1.1, octaves=1, steps=2)]).run(photo, device="cpu").frames
    assert len(frames) == 3
    assert all(frame.image.shape == photo.shape for frame in frames)
    assert (frames[1].image - frames[0].image).abs().mean() > 0.01
    zoomed = zoom(photo, 2.0)
    torch.testing.assert_close(zoomed[..., 24:72, 36:108].mean(), photo[..., 36:60, 54:90].mean(), atol=0.02, rtol=0)


def test_intermediate_saves_are_artifacts_of_the_run(photo, tmp_path):
    Pipeline([small(octaves=2, steps=3, save_every=2)]).run(photo, device="cpu", artifacts=tmp_path / "steps")
    names = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert names == ["dream-f0000-o1-s0002.png", "dream-f0000-o2-s0001.png", "dream-f0000-o2-s0003.png"]
    Pipeline([small(octaves=2, steps=3, save_every=2)]).run(photo, device="cpu")  # no place given: dropped


def test_fast_mode_is_fp32_unless_bf16_pays_here(photo, caplog):
    fp32 = dream_with(small(), photo)
    with caplog.at_level(logging.INFO, logger="dreamkit.models"):
        fast = dream_with(small(fast=True), photo)
    _, extractor, _ = small(fast=True).build_objective(torch.device("cpu"))
    assert "fast mode for mobilenet_v2: " in caplog.text
    if extractor.bf16:  # chosen by measurement on this CPU: close, not equal
        assert 0 < (fast - fp32).abs().mean() < 0.05
    else:  # never slower than fp32: it *is* fp32
        assert torch.equal(fast, fp32)


@pytest.mark.parametrize("params, match", [
    ({"layers": ["features.99"]}, r"backbone 'mobilenet_v2' has no layer 'features.99'.*close matches"),
    ({"octaves": 0}, r"parameter 'octaves' = 0 is not allowed.*>= 1"),
    ({"step_size": -0.1}, r"parameter 'step_size' = -0.1 is not allowed.*> 0"),
    ({"channels": ["400"]}, r"channel 400 is out of range for layer 'features.12' \(96 channels: 0..95\)"),
    ({"channels": ["features.3:1"]}, r"names layer 'features.3', which is not in layers \['features.12'\]"),
    ({"channels": ["x"]}, r"'x' is not N or LAYER:N"),
    ({"classes": ["goldfsh"]}, r"'goldfsh' is not one of the 1000 class names; did you mean goldfish"),
    ({"layer_weights": [1.0, 2.0]}, r"give one weight per layer \(1 layers\)"),
    ({"save_dir": "steps/"}, r"unknown parameter 'save_dir'"),
    ({"guide": "/no/such/guide.png"}, r"parameter 'guide' = '/no/such/guide.png' is not allowed; no such file"),
    ({"mode": "max"}, r"parameter 'mode' = 'max' is not allowed"),
])
def test_bad_parameters(photo, params, match):
    with pytest.raises(ParameterError, match=match):
        dream_with(DeepDream(**params), photo)


def test_unknown_backbone_names_close_ones(photo):
    with pytest.raises(DreamkitError, match=r"unknown backbone 'mobilenet_v9' \(did you mean mobilenet_v2"):
        dream_with(DeepDream(backbone="mobilenet_v9"), photo)


def test_cli_dream_and_bad_parameter(cli, samples, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli("run", samples / "chelsea.png", "-e", "resize:max_side=96", "-e", "deepdream:octaves=2,steps=2",
                       "-o", out)
    assert code == 0, err
    assert (out / "chelsea.png").is_file()
    code, _, err = cli("run", samples / "chelsea.png", "-e", "deepdream:channels=[999]", "-o", tmp_path / "bad")
    assert code == 2 and "channel 999 is out of range" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_cli_zoom_sequence_writes_frames_and_animation(cli, samples, tmp_path):
    code, _, err = cli("run", samples / "coffee.png", "-e", "resize:max_side=64",
                       "-e", "deepdream:octaves=1,steps=1,frames=3", "-o", tmp_path / "zoom")
    assert code == 0, err
    written = sorted(p.relative_to(tmp_path / "zoom").as_posix() for p in (tmp_path / "zoom").rglob("*.*"))
    assert len([name for name in written if name.endswith(".png")]) == 3
    assert any(name.endswith((".gif", ".webp")) for name in written)


def test_a_4096_pixel_image_runs_in_tiles():
    image = torch.rand(1, 3, 4096, 4096, generator=torch.Generator().manual_seed(0))
    out = dream_with(DeepDream(octaves=1, steps=1, jitter=0), image)
    assert out.shape == image.shape and (out != image).float().mean() > 0.5


def test_a_video_dream_carries_its_hallucinations_along_the_motion(samples, monkeypatch):
    """A panning clip (3 px a frame, so the true motion is known): with the default carry (0.8)
    each frame starts from the previous dream moved along the flow and dreams only the faded part
    ((1 - carry) x steps). The warping error (each output against the previous output moved by the
    true motion) falls below half that of frames dreamed on their own, while the dream keeps its
    strength (mean change from the input: at least 0.7x of a lone dream's). A first frame or a
    lone image is dreamed as before. Controls: carrying at full steps makes the dream grow (the
    reason the steps shrink); no carry keeps the flicker."""
    pytest.importorskip("cv2")
    from dreamkit.flow import warp

    big = load_image(samples / "chelsea.png")[..., 100:200, 100:230]
    frames = [big[..., 10:74, 4 + 3 * i:100 + 3 * i] for i in range(4)]
    true_backward = torch.zeros(64, 96, 2)
    true_backward[..., 0] = 3

    def warping_error(outputs):
        return sum(float((b - warp(a, true_backward))[..., :92].abs().mean())
                   for a, b in zip(outputs, outputs[1:])) / (len(outputs) - 1)

    def strength(outputs):  # of the carried frames
        return sum(float((o - f).abs().mean()) for o, f in zip(outputs[1:], frames[1:])) / (len(frames) - 1)

    def dreamed(effect):
        return [f.image for f in Pipeline([effect]).run(frames, device="cpu", seed=1).frames]

    alone = [Pipeline([DeepDream(weights="default", octaves=2, steps=5)]).run(f, device="cpu", seed=1).image
             for f in frames]
    carried = dreamed(DeepDream(weights="default", octaves=2, steps=5))
    assert DeepDream().carry == 0.8
    # measured: warping error 0.38x, strength 0.93x
    assert warping_error(carried) < 0.5 * warping_error(alone)
    assert strength(carried) > 0.7 * strength(alone)
    assert torch.equal(carried[0], alone[0])  # the first frame has nothing to carry
    lone = Pipeline([DeepDream(weights="default", octaves=2, steps=5)]).run(frames[1], device="cpu", seed=1)
    assert torch.equal(lone.image, alone[1])
    import dreamkit_deepdream.effect as effect_module

    # the control: the same carry at full steps adds a whole dream on top of the carried one
    monkeypatch.setattr(effect_module, "replace", lambda settings, **changes: settings)
    grown = dreamed(DeepDream(weights="default", octaves=2, steps=5))
    assert strength(grown) > 1.2 * strength(alone), (strength(grown), strength(alone))
    assert warping_error(dreamed(DeepDream(weights="default", octaves=2, steps=5, carry=0))) > \
        0.8 * warping_error(alone)
