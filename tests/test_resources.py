"""Typed file parameters: how each front end resolves them, what recipes record of them, and what
resume and replay do when a file changes or goes missing."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import torch
import torch.nn.functional as F

from dreamkit import Effect, Param, Pipeline, hookimpl, load_image, read_recipe, save_image
from dreamkit.errors import ParameterError
from dreamkit.resources import PathResolver, Resource


class Blend(Effect):
    """Mixes an image file into the image: the cheapest effect with an image parameter."""

    name = "blend"
    summary = "Blend an image file in."
    overlay = Param(str, None, resource="image", help="the image to blend in")
    amount = Param(float, 0.5, min=0, max=1)

    def check(self) -> None:
        if self.overlay is None:
            raise self.invalid("overlay", "name an image")

    def apply(self, image, context):
        overlay = load_image(self.overlay).to(image.device)  # opened as a path: a Resource is one
        overlay = F.interpolate(overlay, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return image * (1 - self.amount) + overlay * self.amount


class BlendPlugin:
    @hookimpl
    def dreamkit_register_effects(self, register):
        register(Blend)


@pytest.fixture
def blend(register_plugin):
    register_plugin(BlendPlugin(), name="blend-plugin")


def _image(path: pathlib.Path, seed: int, size=(24, 32)) -> pathlib.Path:
    save_image(torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed)), path, overwrite=True)
    return path


@pytest.fixture
def files(tmp_path):
    _image(tmp_path / "photo.png", 0)
    _image(tmp_path / "overlay.png", 1)
    return tmp_path


def test_a_file_parameter_declares_its_kind():
    assert Blend.params["overlay"].resource == "image" and Blend.params["amount"].resource is None
    with pytest.raises(TypeError, match="a file parameter is a str"):
        Param(int, 1, resource="image")
    with pytest.raises(TypeError, match="resource one of image, file, folder"):
        Param(str, None, resource="picture")
    with pytest.raises(TypeError, match="resource one of image, file, folder"):
        Param(str, None, resource="output")  # no kind for a place to write: effects never write where told


def test_the_cli_resolves_paths_and_the_recipe_records_each_files_sha256(cli, blend, files, monkeypatch):
    from dreamkit.weights import sha256_of

    monkeypatch.chdir(files)
    code, _, err = cli("run", "photo.png", "-e", "blend:overlay=overlay.png", "-o", "out")
    assert code == 0, err
    recipe = read_recipe(files / "out" / "photo.png")
    assert recipe["pipeline"]["steps"][0]["params"]["overlay"] == "overlay.png"  # as the user wrote it
    assert recipe["resources"] == [{"step": 0, "effect": "blend", "param": "overlay", "index": None, "kind": "image",
                                    "name": "overlay.png", "path": str(files / "overlay.png"),
                                    "sha256": sha256_of(files / "overlay.png")}]
    code, _, err = cli("run", "photo.png", "-e", "blend:overlay=nowhere.png", "-o", "out2")
    assert code == 2 and "effect 'blend': parameter 'overlay' = 'nowhere.png': no such file" in err
    assert not (files / "out2").exists()


def test_a_recipe_names_files_relative_to_itself(cli, blend, files, tmp_path, monkeypatch):
    recipes = files / "recipes"
    recipes.mkdir()
    _image(recipes / "texture.png", 2)
    (recipes / "look.json").write_text(json.dumps({"steps": [{"effect": "blend", "params": {"overlay": "texture.png"}}]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = cli("run", files / "photo.png", "--recipe", recipes / "look.json", "-o", "out")
    assert code == 0, err
    (resource,) = read_recipe(elsewhere / "out" / "photo.png")["resources"]
    assert resource["path"] == str(recipes / "texture.png") and resource["name"] == "texture.png"


def test_resume_redoes_an_output_whose_file_changed(cli, blend, files):
    args = ("run", files / "photo.png", "-e", f"blend:overlay={files / 'overlay.png'}", "-o", files / "out", "--json")
    assert cli(*args)[0] == 0
    before = (files / "out" / "photo.png").read_bytes()
    code, out, err = cli(*args)
    assert code == 0 and json.loads(out)["status"] == "skipped"  # nothing changed: nothing redone
    _image(files / "overlay.png", 7)  # the overlay changed: the output is stale, and redone
    code, out, err = cli(*args)
    assert code == 0 and json.loads(out)["status"] == "done", err
    assert (files / "out" / "photo.png").read_bytes() != before


def test_replay_checks_every_file_and_names_what_changed_or_is_missing(cli, blend, files):
    assert cli("run", files / "photo.png", "-e", f"blend:overlay={files / 'overlay.png'}", "-o", files / "out")[0] == 0
    output = files / "out" / "photo.png"
    code, out, _ = cli("replay", output, "--check")
    assert code == 0 and "reproduces the image exactly" in out
    _image(files / "overlay.png", 9)
    code, _, err = cli("replay", output)
    assert code == 2 and "effect 'blend': parameter 'overlay'" in err and "changed since this image was made" in err
    os.remove(files / "overlay.png")
    code, _, err = cli("replay", output)
    assert code == 2 and "which is not there any more" in err and "overlay.png" in err


def test_the_python_api_resolves_paths_too(dreamkit_host, blend, files, monkeypatch):
    monkeypatch.chdir(files)
    pipeline = Pipeline([Blend(overlay="overlay.png")])
    resolved = pipeline.resolved(dreamkit_host)
    (overlay,) = [step.overlay for step in resolved.steps]
    assert isinstance(overlay, Resource) and overlay.path == files / "overlay.png" and len(overlay.sha256) == 64
    assert resolved.resolved(dreamkit_host) is resolved  # nothing left to resolve: the same pipeline
    assert resolved.to_config() == pipeline.to_config()  # a recipe holds the name as given
    photo = load_image(files / "photo.png")
    assert torch.equal(pipeline.run(photo, device="cpu").image, resolved.run(photo, device="cpu").image)
    with pytest.raises(ParameterError, match="parameter 'overlay' = 'gone.png': no such file"):
        Pipeline([Blend(overlay="gone.png")]).run(photo, device="cpu")


def test_words_and_registered_weights_are_not_files(dreamkit_host):
    from dreamkit_style import Style

    resolve = PathResolver(host=dreamkit_host)
    style_init = Style.params["init"]
    assert resolve("style", style_init, "noise") == "noise"
    assert resolve("style", Style.params["weights"], "mobilenet_v2.IMAGENET1K_V1") == "mobilenet_v2.IMAGENET1K_V1"
    with pytest.raises(ParameterError, match="parameter 'weights' = 'mobilenet_v2.NOPE': no such file"):
        resolve("style", Style.params["weights"], "mobilenet_v2.NOPE")


def test_the_python_api_takes_images_as_data(dreamkit_host, files):
    """A PIL image, a tensor or an array is an image parameter's value too: it becomes a file
    (named by its content) that the recipe records like any other."""
    import numpy as np
    from PIL import Image

    photo = load_image(files / "photo.png")
    overlay = load_image(files / "overlay.png")
    by_path = Pipeline([Blend(overlay=str(files / "overlay.png"))]).run(photo, device="cpu", host=dreamkit_host).image
    array = (overlay[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for given in (overlay, overlay[0], Image.fromarray(array), array):
        effect = Blend(overlay=given)
        assert isinstance(effect.overlay, Resource) and effect.overlay.path.is_file()
        assert effect.to_config()["params"]["overlay"].startswith("<")  # what the recipe names it
        out = Pipeline([effect]).run(photo, device="cpu", host=dreamkit_host).image
        assert torch.allclose(out, by_path, atol=0.5 / 255 + 1e-6)  # the same pixels (8-bit file)
    with pytest.raises(ParameterError, match="parameter 'overlay'"):
        Blend(overlay=3)


def test_intermediate_saves_go_beside_the_output_never_where_a_parameter_says(cli, dreamkit_host, files):
    """save_every's images are artifacts of the run: dreamkit run keeps them in OUTDIR/<name>.steps/."""
    code, _, err = cli("run", files / "photo.png", "-e", "deepdream:octaves=1,steps=4,save_every=2,weights=random",
                       "-o", files / "out")
    assert code == 0, err
    assert sorted(p.name for p in (files / "out" / "photo.steps").iterdir()) == \
        ["photo-f0000-o1-s0002.png", "photo-f0000-o1-s0004.png"]
    code, _, err = cli("run", files / "photo.png", "-e", "deepdream:steps=1", "-o", files / "out2")
    assert code == 0 and not (files / "out2" / "photo.steps").exists()  # nothing saved: no folder
