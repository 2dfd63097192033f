"""The built-in basic effects: resize and adjust."""

import pytest
import torch

from dreamkit import ParameterError, Pipeline


@pytest.fixture
def resize(dreamkit_host):
    return dreamkit_host.effect("resize")


@pytest.fixture
def adjust(dreamkit_host):
    return dreamkit_host.effect("adjust")


def run(effect, image):
    return Pipeline([effect]).run(image, device="cpu").image


@pytest.mark.parametrize(
    "params, size",
    [
        ({"scale": 0.5}, (24, 32)),
        ({"scale": 2}, (96, 128)),
        ({"width": 32}, (24, 32)),
        ({"height": 12}, (12, 16)),
        ({"width": 10, "height": 40}, (40, 10)),
        ({"max_side": 32}, (24, 32)),
        ({"max_side": 1000}, (48, 64)),  # never enlarges
        ({"scale": 0.001}, (1, 1)),  # never below one pixel
    ],
)
def test_resize_sizes(resize, dreamkit_image, params, size):
    assert tuple(run(resize(**params), dreamkit_image).shape[-2:]) == size


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_resize_keeps_range_and_content(resize, dreamkit_image, interpolation):
    out = run(resize(scale=0.5, interpolation=interpolation), dreamkit_image)
    assert 0 <= out.min() and out.max() <= 1
    assert abs(float(out.mean()) - float(dreamkit_image.mean())) < 0.02


def test_resize_to_the_same_size_is_the_identity(resize, dreamkit_image):
    assert run(resize(scale=1.0), dreamkit_image) is not None
    assert torch.equal(run(resize(width=64), dreamkit_image), dreamkit_image)


@pytest.mark.parametrize(
    "params, match",
    [
        ({}, "give one of scale, width/height or max_side"),
        ({"scale": 0.5, "width": 3}, "'width' = 3 is not allowed; cannot be combined with scale"),
        ({"max_side": 10, "height": 3}, "cannot be combined with height"),
        ({"scale": 0}, "'scale' = 0 is not allowed; expected a number > 0"),
        ({"interpolation": "lanczos", "scale": 1}, "one of 'nearest', 'bilinear', 'bicubic'"),
    ],
)
def test_resize_bad_parameters(resize, params, match):
    with pytest.raises(ParameterError, match=match):
        resize(**params)


def test_adjust_defaults_change_nothing(adjust, dreamkit_image):
    assert torch.equal(run(adjust(), dreamkit_image), dreamkit_image)


def test_adjust_saturation_zero_is_grey(adjust, dreamkit_image):
    out = run(adjust(saturation=0), dreamkit_image)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 1], out[:, 2], atol=1e-6)


def test_adjust_brightness_contrast_gamma(adjust, dreamkit_image):
    assert torch.allclose(run(adjust(brightness=0.5), dreamkit_image), dreamkit_image * 0.5, atol=1e-6)
    assert run(adjust(contrast=0), dreamkit_image).std() < 1e-5
    assert torch.allclose(run(adjust(gamma=2), dreamkit_image), dreamkit_image**2, atol=1e-6)
    assert run(adjust(brightness=3), dreamkit_image).max() <= 1


@pytest.mark.parametrize("params", [{"brightness": -1}, {"gamma": 0}, {"saturation": 11}])
def test_adjust_bad_parameters(adjust, params):
    with pytest.raises(ParameterError, match="effect 'adjust': parameter"):
        adjust(**params)
