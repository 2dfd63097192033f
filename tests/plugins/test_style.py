"""The built-in style effect, with the real offline MobileNetV2 weights on sample photos (small sizes)."""

import importlib

import pytest
import torch
import torch.nn.functional as F

from dreamkit import ParameterError, Pipeline, load_image, save_image
from dreamkit.context import RunContext
from dreamkit.models import FeatureExtractor
from dreamkit.tiling import Geometry, extractor_geometry, plan_tiles
from dreamkit_style import Style, StyleLoss, StyleTarget, colour_stats, match_colour, rgb_to_ycbcr, ycbcr_to_rgb

effect_module = importlib.import_module("dreamkit_style.effect")


def shrink(image, side):
    scale = side / max(image.shape[-2:])
    size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True).clamp(0, 1)


@pytest.fixture(scope="module")
def photo(samples):
    """chelsea.png at 96 x 64."""
    return shrink(load_image(samples / "chelsea.png"), 96)


@pytest.fixture(scope="module")
def styles(samples, tmp_path_factory):
    """Two very different styles at 128 px: ihc.png (blue-brown cells) and retina.jpg (red, black)."""
    folder = tmp_path_factory.mktemp("styles")
    paths = []
    for name in ("ihc.png", "retina.jpg"):
        path = folder / (name.split(".")[0] + ".png")
        save_image(shrink(load_image(samples / name), 128), path)
        paths.append(str(path))
    return paths


def stylise(effect, image, seed=0):
    return effect.stylise(image, RunContext(torch.device("cpu"), seed, host=_host()))


def quick(styles, **params):
    return Style(**{"style": [styles[0]], "iterations": 30, "scales": 1, **params})


def style_loss_to(style_path, image, backbone="mobilenet_v2"):
    """The plain normalised style loss of ``image`` against one style (a yardstick for tests)."""
    effect = Style(style=[style_path])
    extractor, style_layers, content_layers = effect.network(torch.device("cpu"), _host())
    loss = StyleLoss(extractor, style_layers, content_layers, style_weight=1.0, content_weight=0.0,
                     temperatures=effect._temperatures(extractor, effect.style_images(image.device), style_layers))
    whole = plan_tiles(*image.shape[-2:], 0, Geometry({}, 0))
    style = load_image(style_path)  # at its own size, shrunk to the image (the effect's default)
    style = shrink(style, min(max(style.shape[-2:]), max(image.shape[-2:])))
    grams = loss.gram_targets(style, plan_tiles(*style.shape[-2:], 0, Geometry({}, 0)), Geometry({}, 0))
    loss.set_targets(image, [StyleTarget(grams)], whole, Geometry({}, 0))
    return loss.value_and_grad(image, whole, Geometry({}, 0))[0].style


def palette_start(image, style_path):
    """Where the default (color=style) starts: the photo recoloured to the style's palette."""
    from dreamkit_style.colour import in_style_palette

    return in_style_palette(image, [load_image(style_path)], [1.0], [None])


def saturated(image):
    """The share of values at the ends of 0..1 (colour confetti is mostly there)."""
    return float(((image < 0.02) | (image > 0.98)).float().mean())


def _host():
    from dreamkit.plugins import get_host

    return get_host()


# -- the optimisation works ------------------------------------------------------------------

def test_style_loss_falls_to_a_tenth_while_content_stays_bounded(photo, styles):
    effect = quick(styles, iterations=60)
    result, history = stylise(effect, photo)
    start, end = history[0].loss, history[-1].loss
    assert end.style <= 0.1 * start.style
    # The content term (weight 1, normalised per layer: 1.0 would mean "as far as all-zero
    # activations") stays a fraction of that in each layer and of the style it traded for.
    assert 0 < end.content < 0.5 * len(effect.layer_names()[1]) and end.content < start.style
    assert result.shape == photo.shape and 0 <= result.min() and result.max() <= 1
    assert (result - photo).abs().mean() > 0.02  # visibly changed


def test_adam_and_noise_start_are_seeded(photo, styles):
    effect = quick(styles, optimizer="adam", init="noise", iterations=5)
    first, _ = stylise(effect, photo, seed=3)
    again, _ = stylise(effect, photo, seed=3)
    other, _ = stylise(effect, photo, seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    _, history = stylise(quick(styles, optimizer="adam", iterations=40, learning_rate=0.03), photo)
    assert history[-1].loss.style < 0.5 * history[0].loss.style


def test_from_noise_the_photo_comes_back(photo, styles):
    """The content term holds the layout from a start that is not the photo: from noise the
    low-passed luminance correlates with the photo's (in the style's palette). With MobileNetV2's
    deep content layer alone (the old default) it did not: the stride-16 features discard the
    layout. Measured here: 0.70 now, 0.33 with features.11 alone; for dense textures (gravel,
    retina) from noise it stays lower (0.35 here for retina; see the README)."""
    import torch.nn.functional as F

    start = palette_start(photo, styles[0])

    def layout(**params):
        out, _ = stylise(quick(styles, init="noise", iterations=100, **params), photo)
        low = [F.avg_pool2d(i.mean(1, keepdim=True), 8).flatten() for i in (out, start)]
        return float(torch.corrcoef(torch.stack(low))[0, 1])

    assert layout() > 0.55 and layout(content_layers=["features.11"]) < 0.45


def test_init_from_an_image_file(photo, styles, tmp_path):
    start = torch.full_like(photo, 0.5)
    save_image(start, tmp_path / "grey.png")
    effect = quick(styles, init=str(tmp_path / "grey.png"), iterations=1, content_weight=0, style_weight=0, tv_weight=0)
    result, _ = stylise(effect, photo)
    torch.testing.assert_close(result, start, atol=1 / 255, rtol=0)  # nothing pulls it away: it stays the start


def test_coarse_to_fine_scales(photo, styles, monkeypatch):
    assert effect_module._scale_sizes(300, 400, 3) == [(75, 100), (150, 200), (300, 400)]
    assert effect_module._scale_sizes(100, 400, 3) == [(100, 400)]  # 50 px is below the smallest scale
    sizes = []
    real = effect_module.optimise
    monkeypatch.setattr(effect_module, "optimise", lambda x, *a, **k: sizes.append(tuple(x.shape[-2:])) or real(x, *a, **k))
    image = shrink(photo, 160)
    _, history = stylise(quick(styles, scales=2, iterations=2), image)
    assert sizes == [(53, 80), (107, 160)][-len(sizes):] and len(sizes) in (1, 2)
    assert [r.scale for r in history] == [i for i in range(len(sizes)) for _ in range(2)]


def test_the_default_scales_follow_the_size_and_the_receptive_field(photo, styles):
    """Halve while the coarser image is at least the deepest layer's receptive field (MobileNetV2:
    radius 149, 299 px): one scale up to 597 px, two to 1195, at most four."""
    from types import SimpleNamespace

    field = SimpleNamespace(radius=149)
    assert [effect_module._scales_for(side, field) for side in (96, 256, 512, 598, 1024, 2048, 8192)] == \
        [1, 1, 1, 2, 2, 3, 4]
    assert effect_module._scales_for(1024, SimpleNamespace(radius=85)) == 3  # VGG-19: 171 px
    _, history = stylise(quick(styles, scales=None, iterations=2), photo)
    assert {r.scale for r in history} == {0}  # 96 px: one scale


def test_style_scale_sets_the_style_image_size(photo, styles, monkeypatch):
    seen = []
    real = StyleLoss.gram_targets
    monkeypatch.setattr(StyleLoss, "gram_targets", lambda self, image, *a: seen.append(image.shape[-2:]) or real(self, image, *a))
    stylise(quick(styles, iterations=1, style_scale=0.5), photo)
    stylise(quick(styles, iterations=1, style_scale=2.0), photo)
    assert [max(s) for s in seen] == [48, 192]  # the longest side: 0.5 and 2 x the image's 96


def test_by_default_the_style_keeps_its_own_pattern_size(photo, styles, monkeypatch):
    """The default never enlarges the style (a 512 px style enlarged to a 1024 px output had its
    patterns doubled and faded): a 128 px style is used at 128 px for a 256 px output, shrunk to
    96 px for a 96 px one, and at every coarser scale in the same proportion."""
    seen = []
    real = StyleLoss.gram_targets
    monkeypatch.setattr(StyleLoss, "gram_targets", lambda self, image, *a: seen.append(max(image.shape[-2:])) or real(self, image, *a))
    stylise(quick(styles, iterations=1), photo)
    stylise(quick(styles, iterations=1), shrink(photo, 256))
    assert seen == [96, 128]
    seen.clear()
    stylise(quick(styles, iterations=1, scales=2), shrink(photo, 256))
    assert seen == [64, 128]  # the 128 px coarse scale sees the style at half size too


# -- blending, colour, masks ----------------------------------------------------------------

def test_blend_weights_move_the_result_between_two_styles(photo, styles):
    to_a, to_b = [], []
    for weights in ([1.0, 0.0], [0.5, 0.5], [0.0, 1.0]):
        result, _ = stylise(quick(styles, style=styles, style_weights=weights, iterations=40), photo)
        to_a.append(style_loss_to(styles[0], result))
        to_b.append(style_loss_to(styles[1], result))
    assert to_a[0] < to_a[1] < to_a[2]
    assert to_b[0] > to_b[1] > to_b[2]


def test_ycbcr_round_trip():
    image = torch.rand(1, 3, 8, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-12, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.3)
    torch.testing.assert_close(rgb_to_ycbcr(grey)[0, :, 0, 0], torch.tensor([0.3, 0.5, 0.5]), atol=1e-6, rtol=0)


def test_luminance_only_keeps_the_contents_chroma(photo, styles):
    kept, _ = stylise(quick(styles, style=[styles[1]], color="luminance"), photo)
    plain, _ = stylise(quick(styles, style=[styles[1]]), photo)
    chroma = lambda image: rgb_to_ycbcr(image)[:, 1:]  # noqa: E731
    luma = lambda image: rgb_to_ycbcr(image)[:, :1]  # noqa: E731
    # Exact up to the 0..1 clamp of the recombined pixels (where the new luminance pushes out of gamut).
    assert (chroma(kept) - chroma(photo)).abs().mean() < 1e-3
    assert (chroma(plain) - chroma(photo)).abs().mean() > 0.01  # control: the red style does recolour
    assert (luma(kept) - luma(photo)).abs().mean() > 0.02  # and the luminance was stylised


def test_the_styles_colours_come_with_it(photo, styles):
    """color=style (the default) gives the style's palette: the output's mean colour moves at
    least 4/5 of the way from the photo's to the style's (from a start in the photo's colours it
    moved 0.04-0.29 of the way: the deep content layers barely see colour)."""
    for style in styles:
        result, _ = stylise(quick(styles, style=[style]), photo)
        photo_mean, style_mean, result_mean = (x.mean((0, 2, 3)) for x in (photo, load_image(style), result))
        towards = style_mean - photo_mean
        assert float((result_mean - photo_mean) @ towards / (towards @ towards)) > 0.8, style


def test_a_masked_style_brings_its_colours_to_its_region_only():
    from dreamkit_style.colour import in_style_palette

    content = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    red = torch.zeros(1, 3, 6, 6)
    red[:, 0] = torch.linspace(0.5, 1, 36).view(6, 6)
    mask = torch.zeros(8, 10)
    mask[:, :5] = 1
    start = in_style_palette(content, [red], [1.0], [mask])
    assert torch.equal(start[..., 5:], content[..., 5:])  # no mask: the photo's colours
    assert start[:, 0, :, :5].mean() > 0.6 and start[:, 1:, :, :5].abs().max() < 0.05


def test_palette_axes_hold_only_the_colours_no_style_has():
    from dreamkit_style.colour import along_axes, palette_axes

    generator = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 1, 20, 30, generator=generator).expand(1, 3, 20, 30)
    colourful = torch.rand(1, 3, 20, 30, generator=generator)
    axes = palette_axes([grey], [1.0])
    torch.testing.assert_close(axes, torch.full((3, 3), 1 / 3), atol=1e-6, rtol=0)  # onto (1, 1, 1)/√3
    step = torch.randn(1, 3, 5, 5, generator=generator)
    projected = along_axes(axes, step)
    assert float((projected - projected.mean(1, keepdim=True)).abs().max()) < 1e-6  # no chroma left
    torch.testing.assert_close(projected.mean(1), step.mean(1))  # the grey part is kept whole
    assert palette_axes([colourful], [1.0]) is None  # every axis used: steps are not touched
    assert palette_axes([grey, colourful], [1.0, 0.5]) is None  # a blend uses the colours of both
    assert palette_axes([torch.full((1, 3, 4, 4), 0.3)], [1.0]) is None  # one flat colour: no axes to speak of
    # Two grey styles of different brightness: their means differ along grey only.
    assert palette_axes([grey, grey * 0.5], [1.0, 1.0]) is not None


def test_a_grey_style_gives_a_grey_picture(photo, styles, tmp_path):
    """Grey in, grey out: unconstrained, the optimiser put colour speckle the Gram matrices do not
    see into a grey style's result (astronaut x gravel at 512 px: chroma std 0.026)."""
    grey = tmp_path / "grey-style.png"
    save_image(load_image(styles[1]).mean(1, keepdim=True).expand(1, 3, -1, -1), grey)
    chroma = lambda image: float((image - image.mean(1, keepdim=True)).abs().max())  # noqa: E731
    for optimizer in ("lbfgs", "adam"):
        result, _ = stylise(quick(styles, style=[str(grey)], optimizer=optimizer), photo)
        assert chroma(result) < 1e-5, optimizer
    colourful, _ = stylise(quick(styles, style=[styles[1]]), photo)
    assert chroma(colourful) > 0.1  # control: a colourful style brings colour


@pytest.mark.slow
def test_a_flat_corner_is_stylised_like_the_rest(samples, monkeypatch):
    """Deep convolutions padded with zeros read a flat bright corner as a strong edge: the style
    gradient there was 30x the image's median and the corner filled with noise. The roughness
    (mean absolute horizontal luminance difference) of astronaut's top-right sky at 384 px, against
    the whole image's: 0.78x replicated; zero edges 1.6x (2.7x at 512 px)."""
    image = shrink(load_image(samples / "astronaut.png"), 384)

    def corner_roughness() -> float:
        out, _ = stylise(Style(style=[str(samples / "gravel.png")], iterations=30), image, seed=1)
        steps = (out.mean(1)[..., 1:] - out.mean(1)[..., :-1]).abs()
        return float(steps[..., :38, -38:].mean() / steps.mean())

    assert corner_roughness() < 1.0
    monkeypatch.setattr(effect_module, "REPLICATE_MIN_CELLS", 10**6)  # control: zero edges everywhere
    assert corner_roughness() > 1.3


def test_replicated_edges_keep_tiles_exact():
    """Replicated edges are local to the image's edge, like zero padding: tiles with halos still
    give the whole image's gradient (float64, as in the test above), through features.11 (stride 16)."""
    style_layers, content_layers = {"features.4": 1.0, "features.11": 1.0}, {"features.11": 1.0}
    layers = list(dict.fromkeys([*style_layers, *content_layers]))
    extractor = FeatureExtractor("mobilenet_v2", layers, replicate_from_stride=16).double()
    assert extractor.replicated > 0
    geometry = extractor_geometry(extractor, tuple(layers))
    generator = torch.Generator().manual_seed(1)
    content, x = (torch.rand(1, 3, 160, 224, generator=generator, dtype=torch.float64) for _ in range(2))
    loss = StyleLoss(extractor, style_layers, content_layers, style_weight=10, content_weight=1)
    grams = loss.gram_targets(content.flip(-1), plan_tiles(160, 224, 0, geometry), geometry)
    whole, tiles = plan_tiles(160, 224, 0, geometry), plan_tiles(160, 224, 64, geometry)
    assert len(tiles) > 1
    loss.set_targets(content, [StyleTarget(grams)], whole, geometry)
    _, grad = loss.value_and_grad(x, whole, geometry)
    loss.set_targets(content, [StyleTarget(grams)], tiles, geometry)
    _, tiled = loss.value_and_grad(x, tiles, geometry)
    assert (tiled - grad).abs().max() <= 1e-10 * grad.abs().max()


def test_colour_matching_gives_the_style_the_contents_mean_and_covariance(photo, styles):
    style = load_image(styles[1])
    matched = match_colour(style, photo, clamp=False)
    mean, cov = colour_stats(matched)
    want_mean, want_cov = colour_stats(photo)
    torch.testing.assert_close(mean, want_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(cov, want_cov, atol=1e-5, rtol=1e-4)
    before_mean, _ = colour_stats(style)
    assert (before_mean - want_mean).abs().max() > 0.1  # the red retina really was far from the cat
    clamped_mean, _ = colour_stats(match_colour(style, photo))
    assert (clamped_mean - want_mean).abs().max() < 0.05


def test_colour_match_mode_runs_on_the_matched_style(photo, styles, monkeypatch):
    used = []
    real = effect_module.match_colour
    monkeypatch.setattr(effect_module, "match_colour", lambda s, c: used.append(1) or real(s, c))
    result, _ = stylise(quick(styles, style=[styles[1]], color="match", iterations=10), photo)
    assert used == [1]
    plain, _ = stylise(quick(styles, style=[styles[1]], iterations=10), photo)
    red = lambda image: float(image[:, 0].mean() - image[:, 1:].mean())  # noqa: E731
    assert red(result) < red(plain)  # the retina's red was traded for the cat's colours


def test_a_mask_confines_the_style_to_its_region(photo, styles, tmp_path):
    mask = torch.zeros(1, 3, *photo.shape[-2:])
    mask[..., :48] = 1
    save_image(mask, tmp_path / "left.png")
    result, _ = stylise(quick(styles, masks=[str(tmp_path / "left.png")], iterations=40), photo)
    change = (result - photo).abs().mean(1)[0]
    assert change[:, 56:].mean() < 0.35 * change[:, :40].mean()  # the unstyled right half stays near the photo


def test_two_masks_give_each_style_its_half(photo, styles, tmp_path):
    left = torch.zeros(1, 3, *photo.shape[-2:])
    left[..., :48] = 1
    save_image(left, tmp_path / "left.png")
    save_image(1 - left, tmp_path / "right.png")
    result, _ = stylise(quick(styles, style=styles, masks=[str(tmp_path / "left.png"), str(tmp_path / "right.png")],
                              iterations=40), photo)
    left_half, right_half = result[..., :, 8:40], result[..., :, 56:88]
    assert style_loss_to(styles[0], left_half) < style_loss_to(styles[1], left_half)
    assert style_loss_to(styles[1], right_half) < style_loss_to(styles[0], right_half)


def test_a_mask_of_the_same_shape_is_resized(photo, styles, tmp_path):
    mask = torch.ones(1, 3, photo.shape[-2] * 2, photo.shape[-1] * 2)
    save_image(mask, tmp_path / "big.png")
    masks = quick(styles, masks=[str(tmp_path / "big.png")]).mask_images(*photo.shape[-2:], torch.device("cpu"))
    assert masks[0].shape == photo.shape[-2:]


def test_image_terms_gradient_matches_autograd():
    from dreamkit_style.loss import TEMPORAL_UNIT, add_image_terms

    generator = torch.Generator().manual_seed(0)
    x, previous = (torch.rand(1, 3, 7, 9, generator=generator, dtype=torch.float64) for _ in range(2))
    mask = (torch.rand(1, 1, 7, 9, generator=generator) > 0.5).double()
    grad = torch.zeros_like(x)
    value = add_image_terms(x, grad, 3.0, (previous, mask), 2.0)
    y = x.clone().requires_grad_()
    expected = 3.0 * ((y[..., 1:, :] - y[..., :-1, :]).square().mean() + (y[..., :, 1:] - y[..., :, :-1]).square().mean()) \
        + 2.0 * (mask * ((y - previous) / TEMPORAL_UNIT).square()).mean()
    expected.backward()
    assert value == pytest.approx(float(expected.detach()), rel=1e-12)
    torch.testing.assert_close(grad, y.grad, atol=1e-12, rtol=1e-12)


def test_lbfgs_follows_torch_lbfgs_on_a_quadratic():
    from dreamkit_style.loss import LossParts
    from dreamkit_style.optimize import optimise

    generator = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 4, 5, generator=generator, dtype=torch.float64) + 0.5
    target = torch.rand(1, 3, 4, 5, generator=generator, dtype=torch.float64)

    def evaluate(x):
        return LossParts(style=float((a * (x - target) ** 2).sum())), 2 * a * (x - target)

    start = torch.full_like(target, 0.5)
    # 7 evaluations: 6 steps, each checked by the evaluation after it (torch's 6th step goes unchecked)
    ours = optimise(start, evaluate, method="lbfgs", iterations=7, learning_rate=0, history=3)
    x = start.clone().requires_grad_()
    reference = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=3, tolerance_grad=-1, tolerance_change=-1)
    for _ in range(6):
        def closure():
            reference.zero_grad()
            loss = (a * (x - target) ** 2).sum()
            loss.backward()
            return loss
        reference.step(closure)
    torch.testing.assert_close(ours, x.detach().clamp(0, 1), atol=1e-10, rtol=0)
    assert (ours - target).abs().max() < 0.05  # and it converges


def test_lbfgs_never_keeps_a_step_that_raises_the_loss():
    """A function whose curvature changes fast (the full quasi-Newton step overshoots, as on a
    flat ReLU6 or softmax region): every evaluated point is kept only if it lowered the loss, so
    the result is the best point seen, never worse than the start."""
    from dreamkit_style.loss import LossParts
    from dreamkit_style.optimize import optimise

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 6, 7, generator=generator, dtype=torch.float64)
    width = torch.rand(1, 3, 6, 7, generator=generator, dtype=torch.float64) * 0.05 + 0.01
    seen = []

    def evaluate(x):  # sum of narrow wells -exp(-d²/w²) plus a gentle bowl: steps overshoot
        d = x - target
        wells = torch.exp(-(d / width) ** 2)
        loss = float((0.01 * d ** 2 - wells).sum())
        grad = 0.02 * d + 2 * d / width ** 2 * wells
        seen.append(loss)
        return LossParts(style=loss), grad

    start = (target + 0.02).clone()
    result = optimise(start, evaluate, method="lbfgs", iterations=40, learning_rate=0, history=5)
    final, _ = evaluate(result)
    assert final.style <= seen[0] and final.style == pytest.approx(min(seen[:-1]))
    assert max(seen) > seen[0]  # the control: unchecked steps would have gone uphill here


def test_a_forced_divergence_is_caught_and_reported(photo, styles, caplog):
    """Adam with a step of a whole pixel range (learning_rate=1) oscillates into noise: the
    safeguard goes back to the best point with half the step, the result is never worse than the
    start by its own loss, and the output's record and a warning say what happened."""
    image = shrink(photo, 64)
    with caplog.at_level("INFO", logger="dreamkit"):
        frame = Pipeline([quick(styles, optimizer="adam", learning_rate=1.0, iterations=40, color="match")]
                         ).run(image, device="cpu").frames[0]
    (record,) = frame.results[0]["scales"]
    assert record["restarts"] >= 1 and record["loss_end"] <= record["loss_start"]
    assert "had to recover" in caplog.text and "restarts" in caplog.text
    assert (frame.image - image).abs().mean() < 0.1  # not noise (plain Adam at this step size: 0.31)
    assert record["size"] == [64, 43] and record["tiles"] == 1 and record["tile_size"] is None


def test_non_finite_losses_are_stepped_back_from_and_reported(photo, styles, monkeypatch, caplog):
    """A loss that turns NaN away from the start (as an overflow would): L-BFGS halves back to
    finite ground, the result is finite and the record counts the non-finite evaluations."""
    real = StyleLoss.value_and_grad

    def fragile(self, image, tiles, geometry):
        parts, grad = real(self, image, tiles, geometry)
        if float((image - start).abs().amax()) > 0.02:
            parts.style = float("nan")
        return parts, grad

    start = photo
    monkeypatch.setattr(StyleLoss, "value_and_grad", fragile)
    with caplog.at_level("WARNING", logger="dreamkit"):
        frame = Pipeline([quick(styles, iterations=15, color="match")]).run(photo, device="cpu").frames[0]  # from the photo
    assert "had to recover" in caplog.text and "non_finite" in caplog.text
    (record,) = frame.results[0]["scales"]
    assert record["non_finite"] >= 1 and record["halved_steps"] >= 1
    assert torch.isfinite(frame.image).all() and (frame.image - photo).abs().amax() <= 0.02 + 1e-6
    assert record["loss_end"] <= record["loss_start"]


def test_small_outputs_are_stylised_not_scrambled(samples):
    """At 256 px (a 128 px coarse scale) rocket x gravel and chelsea x hubble came out as colour
    confetti: an unchecked L-BFGS step ran the image out of 0..1 (low-passed luminance correlation
    with the content 0.02). A plain Gatys run keeps 0.94-0.98 on these pairs (issue 28's measure)."""
    import torch.nn.functional as F

    for content, style in (("rocket.jpg", "gravel.png"), ("chelsea.png", "hubble_deep_field.jpg")):
        image = shrink(load_image(samples / content), 256)
        out, history = stylise(Style(style=[str(samples / style)]), image, seed=1)
        start = palette_start(image, samples / style)
        low = [F.avg_pool2d(i.mean(1, keepdim=True), 8).flatten() for i in (out, start)]
        assert float(torch.corrcoef(torch.stack(low))[0, 1]) > 0.9, content
        assert saturated(out) < saturated(start) + 0.05, content  # not confetti
        finest = [record.loss for record in history if record.scale == history[-1].scale]
        assert finest[-1].style < 0.2 * finest[0].style, content  # and styled


def test_the_step_filter_is_its_own_transpose_and_stops_the_2_pixel_frequency():
    from dreamkit_style.optimize import smooth_steps

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(1, 3, 9, 14, generator=generator, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close((smooth_steps(a) * b).sum(), (a * smooth_steps(b)).sum())  # consistent gradient
    grid = torch.ones(1, 3, 12, 12, dtype=torch.float64)
    grid[..., ::2, :] *= -1
    grid[..., :, ::2] *= -1  # the checkerboard, and its rows and columns
    interior = (..., slice(2, -2), slice(2, -2))
    assert smooth_steps(grid)[interior].abs().max() < 1e-12
    assert smooth_steps(torch.ones_like(grid))[interior].sub(1).abs().max() < 1e-12  # flat stays flat


def fft_peak_at_2_pixels(image):
    """The luminance spectrum's largest magnitude at the 2-pixel frequency (the Nyquist row and
    column) over the median magnitude of the high frequencies (above a quarter cycle per pixel)."""
    y = image.mean(1)[0]
    magnitude = torch.fft.fft2(y - y.mean()).abs()
    h, w = magnitude.shape
    nyquist = torch.cat([magnitude[h // 2, :], magnitude[:, w // 2]])
    fy, fx = torch.fft.fftfreq(h).abs().view(-1, 1), torch.fft.fftfreq(w).abs().view(1, -1)
    return float(nyquist.max() / magnitude[torch.maximum(fy.expand(h, w), fx.expand(h, w)) > 0.25].median())


@pytest.mark.slow
def test_no_pixel_grid_in_dark_flat_areas(samples, monkeypatch):
    """Rocket x hubble at 512 px (a dark sky): the 2-pixel FFT peak of the output stays within
    1.5x the photo's (measured: 4.9 vs 7.7). Unfiltered L-BFGS steps wrote the stride-2 gradient's
    period into the sky: 14.4 after these 30 iterations, 39 after 100 (the control below)."""
    image = shrink(load_image(samples / "rocket.jpg"), 512)
    effect = Style(style=[str(samples / "hubble_deep_field.jpg")], iterations=30)
    out, _ = stylise(effect, image, seed=1)
    assert fft_peak_at_2_pixels(out) < 1.5 * fft_peak_at_2_pixels(image)
    real = effect_module.optimise
    monkeypatch.setattr(effect_module, "optimise", lambda *a, **k: real(*a, **{**k, "smooth": False}))
    unfiltered, _ = stylise(effect, image, seed=1)
    assert fft_peak_at_2_pixels(unfiltered) > 1.5 * fft_peak_at_2_pixels(image)  # the control


GRID_PAIRS = [("rocket.jpg", "gravel.png"), ("chelsea.png", "hubble_deep_field.jpg"),  # a dense texture, a sparse one
              ("astronaut.png", "ihc.png"), ("coffee.png", "retina.jpg")]


def layout_correlation(image: torch.Tensor, start: torch.Tensor, pool: int) -> float:
    """The correlation of two images' low-passed luminance (average pools of ``pool`` px)."""
    low = [F.avg_pool2d(i.mean(1, keepdim=True), pool).flatten() for i in (image, start)]
    return float(torch.corrcoef(torch.stack(low))[0, 1])


def nudged(image: torch.Tensor, seed: int) -> torch.Tensor:
    """``image`` moved by Gaussian noise of std 1e-6: the same photo up to rounding."""
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed), dtype=image.dtype)
    return (image + 1e-6 * noise).clamp(0, 1)


def grid_failures(samples: str, content: str, style: str) -> list[str]:
    """One pair's quality grid (see the test below); what failed, as messages. Runs in a worker
    process at one thread: the four pairs run two at a time."""
    torch.set_num_threads(1)
    source = load_image(f"{samples}/{content}")
    style_path = f"{samples}/{style}"
    failures = []
    for side in (64, 96, 128, 192, 256, 512):
        image = shrink(source, side)
        start = palette_start(image, style_path)  # the photo in the style's colours: its layout
        pool = max(2, side // 32)
        saturated_in = saturated(start)
        for scales, optimizer in ((1, "lbfgs"), (2, "lbfgs"), (1, "adam"), (2, "adam")):
            effect = Style(style=[style_path], scales=scales, optimizer=optimizer, iterations=20)
            out, _ = stylise(effect, image, seed=1)
            where = f"{side} px, {scales} scale(s), {optimizer}"
            loss, photo_loss = style_loss_to(style_path, out), style_loss_to(style_path, image)
            if not loss < 0.9 * photo_loss:
                failures.append(f"{where}: style loss {loss:.4g} not below 0.9x the photo's {photo_loss:.4g}")
            layout = layout_correlation(out, start, pool)
            if not layout > 0.9:
                # Twenty L-BFGS steps amplify rounding (see the test's docstring): the layout is the
                # median of this run and two on the photo moved by 1e-6, far below its 1/255 steps.
                again = [layout_correlation(stylise(effect, nudged(image, seed), seed=1)[0], start, pool)
                         for seed in (1, 2)]
                if not sorted([layout, *again])[1] > 0.9:
                    failures.append(f"{where}: layout correlation {layout:.3f}, then {again[0]:.3f} and "
                                    f"{again[1]:.3f} on the photo moved by 1e-6: the median not above 0.9")
            if not saturated(out) < max(0.5, saturated_in + 0.1):
                failures.append(f"{where}: {saturated(out):.0%} saturated (the start: {saturated_in:.0%})")
    return failures


@pytest.fixture(scope="module")
def quality_grid():
    """Every pair's grid failures, by pair: two worker processes of one thread each (a thread of
    its own is worth more to each small image than a second one is to the same image)."""
    import multiprocessing

    import skimage.data

    samples = str(__import__("pathlib").Path(skimage.data.__file__).parent)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(grid_failures, [(samples, content, style) for content, style in GRID_PAIRS])
    return dict(zip(GRID_PAIRS, results))


@pytest.mark.slow
@pytest.mark.parametrize("content, style", GRID_PAIRS)
def test_no_size_pair_or_optimiser_diverges(quality_grid, content, style):
    """The quality grid: sizes 64-512 x four pairs x 1 and 2 scales x L-BFGS and Adam, 20
    iterations (384 px is left out for CI time: from 256 to 512 px no size rule of the effect
    changes, and 512 takes half the grid's time). The output's style loss (plain, at its size) is
    below the photo's, the layout survives (low-passed luminance correlation with the content
    above 0.9; a plain Gatys run keeps 0.94-0.98 on these pairs, issue 28's measure; before the
    L-BFGS safeguard rocket x gravel at 256 px had 0.02) and no output is mostly saturated colour.
    The layout after 20 L-BFGS steps depends on rounding: rocket x gravel at 256 px, 2 scales, was
    0.895 on a Xeon with AVX-512, 0.947 with torch and oneDNN held to AVX2 on the same machine, and
    0.895-0.971 over eight copies of the photo moved by 1e-6; so a run below 0.9 is measured twice
    more on such copies and the median of the three decides (a diverged run, 0.02, fails them all)."""
    assert quality_grid[(content, style)] == []


# -- exact tiling ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def double_loss():
    style_layers = {"features.2": 1.0, "features.4": 1.0, "features.7": 0.5}
    content_layers = {"features.7": 1.0}
    extractor = FeatureExtractor("mobilenet_v2", list(dict.fromkeys([*style_layers, *content_layers]))).double()
    geometry = extractor_geometry(extractor, tuple(dict.fromkeys([*style_layers, *content_layers])))
    return extractor, style_layers, content_layers, geometry


@pytest.mark.parametrize("smoothing", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_the_tiled_gradient_equals_the_whole_images(double_loss, smoothing, masked):
    # float64: the comparison is about the algorithm, not float32 rounding (which differs by CPU).
    extractor, style_layers, content_layers, geometry = double_loss
    generator = torch.Generator().manual_seed(0)
    height, width = 130, 140  # 3 x 3 tiles of 48: corner, edge and interior tiles, the seams between them
    content, x = (torch.rand(1, 3, height, width, generator=generator, dtype=torch.float64) for _ in range(2))
    style = torch.rand(1, 3, 100, 120, generator=generator, dtype=torch.float64)
    temperatures = {"features.2": 2.0, "features.4": 3.0, "features.7": 1.0} if smoothing else {}
    loss = StyleLoss(extractor, style_layers, content_layers, style_weight=10, content_weight=1, temperatures=temperatures)
    grams = loss.gram_targets(style, plan_tiles(100, 120, 0, geometry), geometry)
    tiled_grams = loss.gram_targets(style, plan_tiles(100, 120, 40, geometry), geometry)
    for layer in grams:
        torch.testing.assert_close(tiled_grams[layer], grams[layer], atol=1e-14, rtol=1e-12)
    mask = torch.zeros(height, width, dtype=torch.float64)
    mask[:, :90] = 1
    targets = [StyleTarget(grams, 1.0, mask), StyleTarget(grams, 2.0, 1 - mask)] if masked else [StyleTarget(grams)]
    whole, tiles = plan_tiles(height, width, 0, geometry), plan_tiles(height, width, 48, geometry)
    assert len(whole) == 1 and len(tiles) == 9
    loss.set_targets(content, targets, whole, geometry)
    parts, grad = loss.value_and_grad(x, whole, geometry)
    loss.set_targets(content, targets, tiles, geometry)
    tiled_parts, tiled_grad = loss.value_and_grad(x, tiles, geometry)
    assert tiled_parts.style == pytest.approx(parts.style, rel=1e-12)
    assert tiled_parts.content == pytest.approx(parts.content, rel=1e-12)
    assert (tiled_grad - grad).abs().max() <= 1e-10 * grad.abs().max()
    # Control: halos shorter than the receptive field leave seams (the test can fail).
    short = Geometry(geometry.strides, 8)
    loss.set_targets(content, targets, plan_tiles(height, width, 48, short), short)
    _, seamed = loss.value_and_grad(x, plan_tiles(height, width, 48, short), short)
    assert (seamed - grad).abs().max() > 1e-3 * grad.abs().max()


def test_tiled_and_untiled_stylisations_agree(photo, styles):
    untiled, _ = stylise(quick(styles, iterations=3, tile_size=0), photo)
    tiled, _ = stylise(quick(styles, iterations=3, tile_size=32), photo)
    assert len(plan_tiles(*photo.shape[-2:], 32, Geometry({"a": 16}, 85))) > 1
    # Tiles change only how float32 sums are grouped (the float64 test above: the same gradient).
    # L-BFGS then amplifies that rounding by an amount that depends on the CPU's kernels (AVX-512,
    # AVX2, none), so the yardstick is measured here: what a rounding-sized change of the input
    # (one ulp) does to the same run. (Adam's first step, lr * sign(g), would turn rounding of
    # g ~ 0 into +-lr: L-BFGS steps are linear in the gradient.)
    nudged, _ = stylise(quick(styles, iterations=3, tile_size=0), torch.nextafter(photo, torch.ones_like(photo)))
    rounding = float((nudged - untiled).abs().max())
    assert (tiled - untiled).abs().max() <= 10 * rounding + 1e-5


def test_memory_budget_chooses_tiles_and_caps_the_lbfgs_history(styles):
    effect = Style(style=[styles[0]], memory_mb=64)
    assert effect._history((64, 64), 64 * 2**20) == 20
    assert effect._history((4096, 4096), 64 * 2**20) == 2  # 2 x 192 MiB per entry: only the floor fits in 64 MiB
    assert effect._history((4096, 4096), 4096 * 2**20) == 5


def test_the_default_budget_follows_the_machine_and_tiling_is_said(photo, styles, monkeypatch, caplog):
    """No fixed memory_mb: half of what is available; a set memory_mb wins. When the budget makes
    an image go in tiles, a note and the progress line say so."""
    import dreamkit.tiling as tiling

    cpu = torch.device("cpu")
    monkeypatch.setattr(tiling, "available_memory", lambda device: 10 * 2**30)
    assert tiling.memory_budget(cpu, None) == 5 * 2**30 and tiling.memory_budget(cpu, 300) == 300 * 2**20
    monkeypatch.setattr(tiling, "available_memory", lambda device: 2**20)  # a busy machine: the floor
    assert tiling.memory_budget(cpu, None) == tiling.MIN_BUDGET
    real = tiling.available_memory
    monkeypatch.setattr(tiling, "available_memory", real)
    assert 0 < real(cpu)  # this machine's, from the OS
    shown = []

    class Bar:
        def update(self, count=1):
            pass

        def show(self, **values):
            shown.append(values)

        def preview(self, image):
            pass

    class Bars:
        def bar(self, total, desc):
            from contextlib import nullcontext

            return nullcontext(Bar())

    from dreamkit.context import RunContext

    effect = quick(styles, iterations=1)
    monkeypatch.setattr(tiling, "MIN_BUDGET", 2**20)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 8 * 2**20)  # 4 MiB: tiles at 96x64
    with caplog.at_level("INFO", logger="dreamkit"):
        effect.stylise(photo, RunContext(cpu, 0, Bars(), host=_host()))
    assert "in" in caplog.text and "tiles of" in caplog.text and "half the available memory" in caplog.text
    assert shown and shown[-1]["tiles"] > 1
    shown.clear()
    caplog.clear()
    monkeypatch.setattr(tiling, "available_memory", lambda device: 8 * 2**30)
    with caplog.at_level("INFO", logger="dreamkit"):
        effect.stylise(photo, RunContext(cpu, 0, Bars(), host=_host()))
    assert "tiles of" not in caplog.text and "tiles" not in shown[-1]  # one piece


# -- sequences ------------------------------------------------------------------------------

def moving_square_frames(photo, count=4):
    frames = []
    for index in range(count):
        frame = photo.clone()
        frame[..., 20:36, 10 + 8 * index:26 + 8 * index] = torch.tensor([0.1, 0.6, 0.9]).view(1, 3, 1, 1)
        frames.append(frame)
    return frames


def flicker(inputs, outputs):
    """Mean change between consecutive results where the input did not change."""
    changes = []
    for before_in, after_in, before_out, after_out in zip(inputs, inputs[1:], outputs, outputs[1:]):
        still = (after_in - before_in).abs().amax(1, keepdim=True) == 0
        changes.append(((after_out - before_out).abs() * still).sum() / (still.sum() * 3))
    return float(torch.stack(changes).mean())


def test_temporal_term_lowers_flicker(photo, styles):
    frames = moving_square_frames(photo)
    results = {}
    for weight in (0.0, 10.0):  # 10: the default
        effect = Style(style=[styles[0]], iterations=15, scales=1, temporal_weight=weight)
        results[weight] = [f.image for f in Pipeline([effect]).run(frames, device="cpu").frames]
    assert len(results[0.0]) == len(frames)
    assert flicker(frames, results[10.0]) < 0.5 * flicker(frames, results[0.0])
    def styled(index, rows=slice(None), columns=slice(None)):  # how far the result is from its frame
        return float((results[10.0][index][..., rows, columns] - frames[index][..., rows, columns]).abs().mean())

    # the last frame is as styled as the first, even where the square moved to (it started there
    # from the new frame, not from the first frame's result)
    assert styled(-1) > 0.8 * styled(0)
    assert styled(-1, slice(20, 36), slice(34, 50)) > 0.5 * styled(0, slice(20, 36), slice(10, 26))


def test_what_moves_in_a_sequence_moves_in_its_stylisation(photo, styles):
    frames = moving_square_frames(photo)
    effect = Style(style=[styles[0]], iterations=15, scales=1)
    outputs = [f.image for f in Pipeline([effect]).run(frames, device="cpu").frames]
    for index, output in enumerate(outputs):  # the square is where the input's is, in every frame
        blue = palette_start(frames[index], styles[0])[..., 22:34, 12 + 8 * index:24 + 8 * index].mean((2, 3), keepdim=True)
        here = (output[..., 22:34, 12 + 8 * index:24 + 8 * index] - blue).abs().mean()
        old_place = (..., slice(22, 34), slice(12 + 8 * (index - 1), 24 + 8 * (index - 1)))
        elsewhere = (output[old_place] - blue).abs().mean()  # where the square was: the photo again
        contrast = (palette_start(frames[index], styles[0])[old_place] - blue).abs().mean()
        assert here < 0.15 and (index == 0 or elsewhere > here + 0.5 * contrast), \
            (index, float(here), float(elsewhere), float(contrast))


@pytest.mark.slow
def test_a_panning_clip_is_followed_by_the_flow(samples, styles):
    """The camera pans 3 px a frame over a photo, so the true motion is known. The warping error
    (Lai et al. 2018: each output frame against the previous output moved by the true motion)
    with the flow is under half that of holding pixels in place (flow=false), and the last frame
    is as stylised as the first (the sequence follows the pan, it does not freeze)."""
    from dreamkit.flow import warp

    big = shrink(load_image(samples / "chelsea.png"), 96 + 3 * 3 + 8)
    frames = [big[..., 4:68, 4 + 3 * i:100 + 3 * i] for i in range(4)]
    true_backward = torch.zeros(64, 96, 2)
    true_backward[..., 0] = 3  # pixel x of frame t was at x + 3 in frame t-1

    def warping_error(outputs):
        return sum(float((b - warp(a, true_backward))[..., :92].abs().mean())
                   for a, b in zip(outputs, outputs[1:])) / (len(outputs) - 1)

    outputs = {}
    for flow in (True, False):
        effect = Style(style=[styles[0]], iterations=15, scales=1, flow=flow)
        outputs[flow] = [f.image for f in Pipeline([effect]).run(frames, device="cpu").frames]
    assert warping_error(outputs[True]) < 0.5 * warping_error(outputs[False])
    styled = [float((out - frame).abs().mean()) for out, frame in zip(outputs[True], frames)]
    assert styled[-1] > 0.8 * styled[0], styled


def test_long_term_brings_back_what_was_hidden_as_it_was(photo, styles):
    """A bar 8 px wide moves 8 px a frame over a still photo: the strip it uncovers in frame 3 was
    hidden in frame 2 but seen in frame 1. With ``long_term=1`` that strip is held to frame 1's
    result (moved by the flow from two frames back) and comes back as it was; with the previous
    frame only it starts afresh (measured: 0.32x as far from frame 1's result)."""
    pytest.importorskip("cv2")
    frames = []
    for index in range(3):
        frame = photo.clone()
        frame[..., 20:36, 10 + 8 * index:18 + 8 * index] = torch.tensor([0.1, 0.6, 0.9]).view(1, 3, 1, 1)
        frames.append(frame)
    strip = (..., slice(22, 34), slice(19, 25))  # uncovered in frame 3, hidden in frame 2, seen in frame 1
    back = {}
    for long_term in (0, 1):
        effect = Style(style=[styles[0]], iterations=15, scales=1, long_term=long_term)
        assert effect.remembered_frames() == 2 ** long_term
        outputs = [f.image for f in Pipeline([effect]).run(frames, device="cpu").frames]
        back[long_term] = float((outputs[2][strip] - outputs[0][strip]).abs().mean())
    assert back[1] < 0.5 * back[0], back


def test_a_sequence_step_sees_as_many_earlier_frames_as_it_remembers(photo):
    from dreamkit import Effect

    seen = []

    class Probe(Effect):
        name = "probe"

        def remembered_frames(self):
            return 2

        def apply(self, image, context):
            seen.append(context.earlier)
            return image * 0.5

    frames = [photo * (i + 1) / 4 for i in range(4)]
    Pipeline([Probe()]).run(frames, device="cpu")
    assert [len(earlier) for earlier in seen] == [0, 1, 2, 2]
    (latest, output), (older, _) = seen[3]  # most recent first: frame 3 sees frames 2 and 1
    assert torch.equal(latest, frames[2]) and torch.equal(output, frames[2] * 0.5) and torch.equal(older, frames[1])


def test_each_frame_starts_from_the_previous_result(photo, styles):
    frames = [photo, photo.clone()]
    effect = Style(style=[styles[0]], iterations=1, scales=1, optimizer="adam", learning_rate=1e-6, temporal_weight=0)
    first, second = (f.image for f in Pipeline([effect]).run(frames, device="cpu").frames)
    assert (second - first).abs().max() < 1e-4  # a tiny step from the first result, not from the photo
    assert (first - palette_start(photo, styles[0])).abs().max() < 1e-4 and torch.equal(frames[0], photo)


def test_pipeline_passes_the_previous_frame_to_each_step(photo):
    from dreamkit import Effect

    seen = []

    class Probe(Effect):
        name = "probe"

        def apply(self, image, context):
            seen.append((context.frame_index, context.previous_input, context.previous_output))
            return image * 0.5

    Pipeline([Probe()]).run([photo, photo + 0], device="cpu")
    assert seen[0][1] is None and seen[0][2] is None
    assert torch.equal(seen[1][1], photo) and torch.equal(seen[1][2], photo * 0.5)
    with pytest.raises(ValueError, match="non-empty list of frames"):
        Pipeline([Probe()]).run([])


# -- backbones and smoothing ----------------------------------------------------------------

def test_vgg19_runs_with_random_weights(photo, styles):
    effect = quick(styles, backbone="vgg19", weights="random", iterations=2)
    assert effect.smoothing_factor() == 0.0 and effect.layer_names()[1] == ["relu4_2"]
    result, history = stylise(effect, shrink(photo, 64))
    assert result.shape[-1] == 64 and torch.isfinite(result).all() and len(history) == 2


def test_smoothing_is_on_by_default_for_mobilenet_and_sets_temperatures(styles):
    effect = Style(style=[styles[0]])
    extractor, style_layers, _ = effect.network(torch.device("cpu"), _host())
    assert effect.smoothing_factor() == 4.0
    temperatures = effect._temperatures(extractor, effect.style_images(torch.device("cpu")), style_layers)
    assert set(temperatures) == set(style_layers) and all(t > 0 for t in temperatures.values())
    assert Style(style=[styles[0]], smoothing=0)._temperatures(extractor, [], style_layers) == {}


def test_a_backbone_without_default_layers_needs_them_named(styles):
    with pytest.raises(ParameterError, match="declares no default layers: give style_layers and content_layers"):
        Style(style=[styles[0]], backbone="resnet18", weights="random")
    effect = Style(style=[styles[0]], backbone="resnet18", weights="random", style_layers=["layer1", "layer2"],
                   content_layers=["layer2"], iterations=1, scales=1)
    result, _ = stylise(effect, torch.rand(1, 3, 64, 64))
    assert result.shape == (1, 3, 64, 64)


# -- intermediate saves and progress --------------------------------------------------------

def test_intermediate_saves_are_artifacts_of_the_run(photo, styles, tmp_path):
    effect = quick(styles, iterations=4, save_every=2)
    Pipeline([effect]).run(photo, device="cpu", artifacts=tmp_path / "steps")
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["style-f0000-s1-i00002.png",
                                                                      "style-f0000-s1-i00004.png"]


def test_the_progress_bar_shows_the_losses(photo, styles, capsys, monkeypatch):
    import functools

    import tqdm

    # every update drawn (tqdm skips those within 0.1 s of the last: a warm model is faster than that)
    monkeypatch.setattr(tqdm.tqdm, "__init__", functools.partialmethod(tqdm.tqdm.__init__, mininterval=0))
    Pipeline([quick(styles, iterations=2)]).run(photo, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "style:  50%" in err and "style=" in err and "content=" in err


# -- bad parameters -------------------------------------------------------------------------

@pytest.mark.parametrize("params, words", [
    ({"style": None}, "'style' = None is not allowed"),
    ({"style": ["no-such-painting.jpg"]}, "parameter 'style': no-such-painting.jpg: no such file"),
    ({"style_weight": -1.0}, "parameter 'style_weight' = -1.0 is not allowed; expected a number >= 0.0"),
    ({"style_weights": [1.0]}, "parameter 'style_weights' = [1.0] is not allowed; give one value per style image (2"),
    ({"style_weights": [-1.0, 2.0]}, "parameter 'style_weights' = [-1.0, 2.0] is not allowed; weights must be >= 0"),
    ({"style_weights": [0.0, 0.0]}, "at least one > 0"),
    ({"masks": ["a.png"]}, "parameter 'masks' = ['a.png'] is not allowed; give one value per style image"),
    ({"style_layer_weights": [1.0]}, "give one value per style layer (5 style layers)"),
    ({"content_layer_weights": [-1.0]}, "parameter 'content_layer_weights' = [-1.0] is not allowed; weights must be >= 0"),
    ({"init": "bogus"}, "parameter 'init' = 'bogus' is not allowed; expected 'content', 'noise' or an existing image"),
    ({"color": "sepia"}, "parameter 'color' = 'sepia' is not allowed; expected one of 'style', 'luminance', 'match'"),
    ({"optimizer": "sgd"}, "parameter 'optimizer' = 'sgd' is not allowed"),
    ({"save_dir": "steps/"}, "unknown parameter 'save_dir'"),
])
def test_bad_parameters_are_named(styles, params, words):
    with pytest.raises(ParameterError) as caught:
        Style(**{"style": styles, **params})
    assert words in str(caught.value) and "effect 'style'" in str(caught.value)


def test_an_unreadable_style_image_is_named(tmp_path):
    bad = tmp_path / "painting.png"
    bad.write_text("not an image")
    with pytest.raises(ParameterError, match=r"parameter 'style': .*painting.png: not an image"):
        Style(style=[str(bad)])


def test_an_unknown_layer_is_named(photo, styles):
    with pytest.raises(ParameterError, match=r"parameter 'style_layers' = \['features.99'\]"):
        stylise(quick(styles, style_layers=["features.99"]), photo)
    with pytest.raises(ParameterError, match=r"parameter 'content_layers' = \['nope'\]"):
        stylise(quick(styles, content_layers=["nope"]), photo)


def test_a_mask_of_another_shape_is_refused(photo, styles, tmp_path):
    save_image(torch.ones(1, 3, 50, 50), tmp_path / "square.png")
    with pytest.raises(ParameterError, match=r"parameter 'masks': mask .*square.png' is 50x50, but the image is 96x64"):
        stylise(quick(styles, masks=[str(tmp_path / "square.png")]), photo)


def test_cli_stylises_and_refuses_bad_parameters_with_exit_2(cli, photo, styles, tmp_path):
    save_image(photo, tmp_path / "photo.png")
    out = tmp_path / "out"
    code, _, err = cli("run", tmp_path / "photo.png", "-e", f"style:style={styles[0]},iterations=3,scales=1", "-o", out, "-q")
    assert code == 0, err
    assert (out / "photo.png").exists()
    for spec, words in [
        ("style:style=missing.jpg", "missing.jpg: no such file"),
        (f"style:style={styles[0]},style_weights=[1,2]", "give one value per style image"),
        (f"style:style={styles[0]},style_layers=[features.99]", "'style_layers'"),
        (f"style:style={styles[0]},masks=[{styles[1]}]", "but the image is 96x64"),
        (f"style:style={styles[0]},tv_weight=-2", "'tv_weight' = -2"),
    ]:
        target = tmp_path / "bad"
        code, _, err = cli("run", tmp_path / "photo.png", "-e", spec, "-o", target, "-q")
        assert code == 2 and words in err, (spec, err)
        assert not target.exists() or not any(target.iterdir())
