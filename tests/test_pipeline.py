"""Pipelines: running, seeds, frame sequences, analysis results, and config round trips."""

import json

import pytest
import torch

from dreamkit import ConfigError, Effect, Param, ParameterError, Pipeline, UnknownEffectError, hookimpl
from dreamkit.context import RunContext, derive_seed, resolve_device
from dreamkit.errors import DreamkitError
from dreamkit.pipeline import split_effect_spec


class Noise(Effect):
    name = "noise"
    amount = Param(float, 0.1, min=0, max=1)

    def apply(self, image, context):
        noise = torch.rand(image.shape, generator=context.generator).to(context.device)
        return (image + self.amount * (noise - 0.5)).clamp(0, 1)


class Zoom(Effect):
    """Produces a sequence: the image, then progressively darker copies."""

    name = "zoom"
    frames = Param(int, 3, min=1)

    def apply(self, image, context):
        return [image * (1 - i / (self.frames + 1)) for i in range(self.frames)]


class Measure(Effect):
    """An analysis effect: records the mean brightness, returns the image unchanged."""

    name = "measure"

    def apply(self, image, context):
        context.add_result({"mean": round(float(image.mean()), 6)})
        return image


class Plugin:
    @hookimpl
    def dreamkit_register_effects(self, register):
        for effect in (Noise, Zoom, Measure):
            register(effect)


@pytest.fixture
def host(register_plugin, dreamkit_host):
    register_plugin(Plugin(), name="test-effects")
    return dreamkit_host


def test_run_applies_steps_in_order(host, dreamkit_image):
    pipeline = Pipeline([host.effect("resize")(scale=0.5), host.effect("adjust")(brightness=0.5)])
    out = pipeline.run(dreamkit_image, device="cpu").image
    assert out.shape == (1, 3, 24, 32)
    assert out.max() <= 0.5 + 1e-6


def test_run_accepts_chw_tensors_and_pil_images(host, dreamkit_image):
    from dreamkit.io import tensor_to_pil

    pipeline = Pipeline([Measure()])
    a = pipeline.run(dreamkit_image[0], device="cpu").image
    b = pipeline.run(tensor_to_pil(dreamkit_image), device="cpu").image
    assert a.shape == b.shape == dreamkit_image.shape
    with pytest.raises(ValueError, match="one image"):
        pipeline.run(torch.rand(2, 3, 8, 8), device="cpu")


def test_same_seed_same_image_other_seed_other_image(host, dreamkit_image):
    pipeline = Pipeline([Noise(amount=0.5)])
    a = pipeline.run(dreamkit_image, seed=7, device="cpu").image
    b = pipeline.run(dreamkit_image, seed=7, device="cpu").image
    c = pipeline.run(dreamkit_image, seed=8, device="cpu").image
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_step_and_frame_gets_its_own_random_stream(host, dreamkit_image):
    out = Pipeline([Zoom(frames=2), Noise(amount=1.0)]).run(torch.full_like(dreamkit_image, 0.5), seed=1, device="cpu")
    first, second = (frame.image for frame in out.frames)
    assert not torch.allclose(first - first.mean(), second - second.mean(), atol=1e-3)
    assert derive_seed(1, 0, 0) != derive_seed(1, 0, 1) != derive_seed(1, 1, 0)


def test_a_sequence_flows_through_later_steps_frame_by_frame(host, dreamkit_image):
    result = Pipeline([Zoom(frames=3), Measure()]).run(dreamkit_image, device="cpu")
    assert len(result.frames) == 3
    means = [records[0]["mean"] for records in result.results]
    assert means[0] > means[1] > means[2]
    assert result.results[0][0] == {"effect": "measure", "step": 1, "mean": means[0]}
    with pytest.raises(ValueError, match="3 frames"):
        result.image


class Echo(Effect):
    """Sequential: half the frame, half the previous frame's output (the first frame: itself)."""

    name = "echo"
    sequential = True

    def apply(self, image, context):
        previous = context.previous_output if context.previous_output is not None else image
        return (image + previous) / 2


def test_frames_pushed_one_by_one_equal_one_run_over_the_list(host, dreamkit_image):
    frames = [dreamkit_image * (0.4 + 0.2 * i) for i in range(3)]
    pipeline = Pipeline([Zoom(frames=2), Echo(), Noise(amount=0.5)])
    whole = pipeline.run(frames, seed=3, device="cpu").frames
    sequence = pipeline.sequence(seed=3, device="cpu")
    pushed = [frame for image in frames for frame in sequence.push(image).frames]
    assert len(whole) == len(pushed) == 6
    assert all(torch.equal(a.image, b.image) for a, b in zip(whole, pushed))
    echo = Pipeline([Echo()]).sequence(device="cpu")
    first, second = (echo.push(image).image for image in frames[:2])
    assert torch.equal(first, frames[0]) and torch.allclose(second, (frames[1] + frames[0]) / 2)  # carried across pushes
    assert pipeline.sequential and not Pipeline([Zoom(), Noise()]).sequential


class Counter(Effect):
    """Sequential: adds the number of frames before it, counted in ``context.state``."""

    name = "counter"
    sequential = True

    def apply(self, image, context):
        seen = context.state.get("seen", 0)
        context.state["seen"] = seen + 1
        return image + seen


def test_the_state_a_step_keeps_lasts_one_sequence(host, dreamkit_image):
    """``context.state`` is one dict over the frames of a sequence (pushed one by one too) and a
    fresh one for every image and every new sequence."""
    frames = [dreamkit_image * 0] * 3
    pipeline = Pipeline([Counter()])
    assert [float(f.image.max()) for f in pipeline.run(frames, device="cpu").frames] == [0, 1, 2]
    sequence = pipeline.sequence(device="cpu")
    assert [float(sequence.push(image).image.max()) for image in frames] == [0, 1, 2]
    assert float(pipeline.run(frames[0], device="cpu").image.max()) == 0
    assert float(pipeline.run(frames, device="cpu").frames[0].image.max()) == 0


def test_a_sequence_started_at_frame_n_seeds_as_frame_n(host, dreamkit_image):
    frames = [torch.full_like(dreamkit_image, 0.5)] * 3
    pipeline = Pipeline([Noise(amount=1.0)])
    whole = pipeline.run(frames, seed=1, device="cpu").frames
    alone = pipeline.sequence(seed=1, device="cpu", start=2).push(frames[2]).image
    assert torch.equal(alone, whole[2].image) and not torch.equal(alone, whole[0].image)
    many = pipeline.run_many(frames, seed=1, device="cpu", frame_indices=[2, 0, 1])
    assert torch.equal(many[0].image, whole[2].image) and torch.equal(many[2].image, whole[1].image)


def test_a_failed_push_leaves_the_sequence_on_its_last_good_frame(host, dreamkit_image):
    class Fussy(Effect):
        name = "fussy"

        def apply(self, image, context):
            if image.mean() > 0.9:
                raise ValueError("too bright")
            return image

    pipeline = Pipeline([Fussy(), Echo()])
    sequence = pipeline.sequence(device="cpu")
    dark, bright, mid = (torch.full_like(dreamkit_image, v) for v in (0.2, 0.95, 0.6))
    sequence.push(dark)
    with pytest.raises(ValueError, match="too bright"):
        sequence.push(bright)
    assert torch.allclose(sequence.push(mid).image, torch.full_like(dreamkit_image, 0.4))  # (0.6 + 0.2) / 2


def test_results_are_collected_per_image_and_copied_into_each_frame(host, dreamkit_image):
    result = Pipeline([Measure(), Zoom(frames=2)]).run(dreamkit_image, device="cpu")
    assert [len(records) for records in result.results] == [1, 1]
    assert result.results[0][0]["step"] == 0


def test_results_must_be_json_serialisable(dreamkit_host):
    context = RunContext(torch.device("cpu"), 0, host=dreamkit_host)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        context.add_result({"tensor": torch.zeros(1)})


def test_bad_effect_outputs_are_reported_with_the_effect_name(register_plugin, dreamkit_host, dreamkit_image):
    class Bad(Effect):
        name = "bad"

        def apply(self, image, context):
            return image[0]

    with pytest.raises(TypeError, match="effect 'bad' returned \\(3, 48, 64\\)"):
        Pipeline([Bad()]).run(dreamkit_image, device="cpu")


def test_steps_must_be_effects():
    with pytest.raises(TypeError, match="step 1 is str"):
        Pipeline([Measure(), "resize"])


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DreamkitError, match="'tpu' is not allowed"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DreamkitError, match="no CUDA GPU is available"):
            resolve_device("cuda")


# -- configs -------------------------------------------------------------------------------------
def _pipeline(host):
    return Pipeline([host.effect("resize")(max_side=64), Noise(amount=0.25), host.effect("adjust")(gamma=0.8)])


def test_config_round_trip_through_dicts(host):
    pipeline = _pipeline(host)
    config = pipeline.to_config()
    assert config["steps"][0] == {"effect": "resize", "params": {"max_side": 64, "interpolation": "bicubic", "antialias": True}}
    assert Pipeline.from_config(json.loads(json.dumps(config))) == pipeline


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_config_round_trip_through_files(host, tmp_path, suffix):
    pipeline = _pipeline(host)
    path = tmp_path / f"recipe{suffix}"
    pipeline.save(path)
    assert Pipeline.from_config(path) == pipeline
    assert Pipeline.from_config(str(path)) == pipeline


def test_a_saved_recipe_names_its_files_from_its_own_folder(host, tmp_path, monkeypatch):
    """Files given relative to the working folder are written relative to the recipe's folder
    (where a recipe's paths are read from), so the recipe works from anywhere; words and names
    (a weights name) stay as they are."""
    import tomllib

    from PIL import Image

    work = tmp_path / "work"
    (work / "art").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(work / "art" / "a.png")
    monkeypatch.chdir(work)
    pipeline = Pipeline([host.effect("style")(style=["art/a.png"], init="content"),
                         host.effect("deepdream")(guide="art/a.png", weights="random")])
    (tmp_path / "recipes").mkdir()
    pipeline.save(tmp_path / "recipes" / "r.toml")
    pipeline.save(tmp_path / "recipes" / "r.json")
    steps = [step["params"] for step in tomllib.loads((tmp_path / "recipes" / "r.toml").read_text())["steps"]]
    assert steps[0]["style"] == ["../work/art/a.png"] and steps[0]["init"] == "content"
    assert steps[1]["guide"] == "../work/art/a.png" and steps[1]["weights"] == "random"
    monkeypatch.chdir(tmp_path)  # elsewhere: the recipe still finds its files
    loaded = Pipeline.from_config(tmp_path / "recipes" / "r.json")
    assert loaded.steps[0].values["style"][0].path == loaded.steps[1].values["guide"].path \
        == (work / "art" / "a.png").resolve()


def test_toml_recipe_written_by_hand(host, tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('[[steps]]\neffect = "resize"\nparams = { scale = 0.5 }\n\n[[steps]]\neffect = "noise"\n')
    assert Pipeline.from_config(path) == Pipeline([host.effect("resize")(scale=0.5), Noise()])


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"steps": [{"effect": "nope"}]}, UnknownEffectError, "unknown effect 'nope'.*available effects: adjust, classify, deepdream, detect, fast_style, measure, noise, resize, retrieve, style, zoom"),
        ({"steps": [{"effect": "noise", "params": {"amout": 1}}]}, ParameterError, "unknown parameter 'amout'; its parameters are: amount"),
        ({"steps": [{"effect": "noise", "params": {"amount": 3}}]}, ParameterError, "parameter 'amount' = 3"),
        ({"steps": []}, ConfigError, "non-empty list"),
        ({"stepz": []}, ConfigError, "unknown key 'stepz'"),
        ({"steps": [{"effect": "noise", "parms": {}}]}, ConfigError, "step 0: unknown key 'parms'"),
        ({"steps": [{"params": {}}]}, ConfigError, "step 0 must be a mapping with an 'effect' name"),
        ({"steps": [{"effect": "noise", "params": [1]}]}, ConfigError, "'params' must be a mapping"),
        ([1, 2], ConfigError, "a mapping with a 'steps' list"),
    ],
)
def test_bad_configs_are_clear(host, config, error, match):
    with pytest.raises(error, match=match):
        Pipeline.from_config(config)


def test_bad_recipe_files(host, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Pipeline.from_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Pipeline.from_config(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Pipeline.from_config(bad_json)
    other = tmp_path / "recipe.yaml"
    other.write_text("steps: []")
    with pytest.raises(ConfigError, match="unknown extension '.yaml'"):
        Pipeline.from_config(other)
    with pytest.raises(ConfigError, match="use .json or .toml"):
        _pipeline(host).save(tmp_path / "x.yaml")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("resize", ("resize", {})),
        ("resize:scale=0.5", ("resize", {"scale": "0.5"})),
        ("dream:layers=[a,b],steps=3", ("dream", {"layers": "[a,b]", "steps": "3"})),
        (" x : k = v ", ("x", {"k": "v"})),
    ],
)
def test_split_effect_spec(spec, expected):
    assert split_effect_spec(spec) == expected


@pytest.mark.parametrize("spec, match", [(":a=1", "no effect name"), ("x:a", "'a' is not key=value"), ("x:a=1,a=2", "given twice")])
def test_bad_effect_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        split_effect_spec(spec)


def test_from_specs(host):
    assert Pipeline.from_specs(["resize:scale=0.5", "noise"]) == Pipeline([host.effect("resize")(scale=0.5), Noise()])
