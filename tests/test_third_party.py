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
pytestmark = pytest.mark.slow


def _pip_install(target, package):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(package)],
        check=True, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder with dreamkit-posterize and dreamkit-broken installed by pip."""
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
    example = root / "src" / EXAMPLE.name  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
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
        "hooks": ["dreamkit_register_effects"], "effects": ["posterize"], "weights": [],
    }
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
