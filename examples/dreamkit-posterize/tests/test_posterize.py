"""Tests of the example plugin, using the fixtures dreamkit.testing provides to plugin authors."""

import pytest

from dreamkit import ParameterError, Pipeline


def test_posterize_is_registered(dreamkit_host):
    assert "posterize" in dreamkit_host.effects
    assert dreamkit_host.effect_owner("posterize") == "posterize"


def test_posterize_leaves_only_the_requested_levels(dreamkit_host, dreamkit_image):
    pipeline = Pipeline.from_config({"steps": [{"effect": "posterize", "params": {"levels": 3}}]})
    out = pipeline.run(dreamkit_image, seed=0, device="cpu").image
    assert out.shape == dreamkit_image.shape
    assert sorted(out.unique().tolist()) == [0.0, 0.5, 1.0]


def test_bad_levels_name_the_effect_and_parameter(dreamkit_host):
    with pytest.raises(ParameterError, match=r"posterize.*levels.*1.*between|posterize.*'levels' = 1"):
        dreamkit_host.effect("posterize")(levels=1)
