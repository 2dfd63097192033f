"""One plugin host per run: effects and models use the run's host, built-ins own what they register,
and registration goes through pluggy (wrappers see it)."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from dreamkit import Pipeline, hookimpl, load_image
from dreamkit.errors import DreamkitError
from dreamkit.plugins import PluginHost, set_host
from dreamkit.weights import FolderSource, cache_dir

MOBILENET_FILE = cache_dir() / "mobilenet_v2-b0353104.pth"  # the real cache, before a test hides it


class Mirror:
    """A plugin that adds a weights source: a folder holding the MobileNetV2 file."""

    def __init__(self, folder):
        self.folder = folder

    @hookimpl
    def dreamkit_register_weights(self, register):
        register(FolderSource(self.folder))


@pytest.fixture
def mirrored_host(tmp_path, weights_home):
    """A host whose only way to MobileNetV2's weights is its own mirror plugin (offline, empty
    cache), while the process-wide host has no way at all."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(MOBILENET_FILE, mirror / MOBILENET_FILE.name)
    host = PluginHost(strict=True)
    host.register(Mirror(mirror), name="mirror")
    previous = set_host(PluginHost(strict=True))
    yield host
    set_host(previous)


@pytest.fixture(scope="module")
def cat(samples):
    return F.interpolate(load_image(samples / "chelsea.png"), size=(150, 225), mode="bilinear", antialias=True)


def test_classify_uses_the_runs_host_not_the_global_one(mirrored_host, cat):
    from dreamkit_classify import Classify

    with pytest.raises(DreamkitError, match="are not available"):  # the global host cannot
        Pipeline([Classify()]).run(cat, device="cpu")
    record = Pipeline([Classify()]).run(cat, device="cpu", host=mirrored_host).frames[0].results[0]
    assert record["predictions"][0]["label"] == "Egyptian cat"


def test_deepdream_uses_the_runs_host_not_the_global_one(mirrored_host, cat):
    from dreamkit_deepdream import DeepDream

    effect = DeepDream(octaves=1, steps=2, layers=["features.4"])
    with pytest.raises(DreamkitError, match="are not available"):
        Pipeline([effect]).run(cat, device="cpu")
    out = Pipeline([effect]).run(cat, device="cpu", host=mirrored_host).image
    assert (out - cat).abs().mean() > 0.005


def test_model_caches_are_per_host(cat, monkeypatch):
    """Each host loads its own model (its registry may resolve the name to another file); the
    same host reuses it."""
    import importlib

    effect_module = importlib.import_module("dreamkit_classify.effect")
    loads = []
    real = effect_module.load_backbone
    monkeypatch.setattr(effect_module, "load_backbone", lambda *a, **k: loads.append(k.get("host")) or real(*a, **k))
    first, second = PluginHost(strict=True), PluginHost(strict=True)
    from dreamkit_classify import Classify

    for host in (first, first, second):
        Pipeline([Classify(top_k=1)]).run(cat, device="cpu", host=host)
    assert loads == [first, second]


def test_a_context_is_given_its_host_never_a_default(dreamkit_host):
    from dreamkit.context import RunContext

    with pytest.raises(TypeError, match="RunContext needs the run's plugin host"):
        RunContext(torch.device("cpu"), 0)
    assert RunContext(torch.device("cpu"), 0, host=dreamkit_host).host is dreamkit_host


def test_disabling_detect_removes_its_weights(monkeypatch, cli):
    everything = PluginHost(strict=True)
    without = PluginHost(strict=True, disabled=["detect"])
    owned = [key for key in everything.weights.entries if key.startswith(("mtcnn_", "fasterrcnn", "retinanet",
                                                                            "fcos", "ssd"))]
    assert len(owned) == 3 + 9
    assert not any(key in without.weights.entries for key in owned)
    assert "mobilenet_v2.IMAGENET1K_V1" in without.weights.entries  # shared by every plugin: the core's
    monkeypatch.setenv("DREAMKIT_DISABLE_PLUGINS", "detect")
    set_host(None)
    try:
        code, stdout, _ = cli("weights", "list", "--json")
    finally:
        set_host(None)
    names = {row["name"] for row in json.loads(stdout)}
    assert code == 0 and not names & set(owned) and "mobilenet_v2.IMAGENET1K_V1" in names


def test_registration_wrappers_see_every_plugins_registration():
    seen = []

    class Tracer:
        @hookimpl(wrapper=True)
        def dreamkit_register_effects(self, register):
            seen.append("effects")
            return (yield)

        @hookimpl(wrapper=True)
        def dreamkit_register_weights(self, register):
            seen.append("weights")
            return (yield)

    class Registers:
        @hookimpl
        def dreamkit_register_effects(self, register):
            pass

        @hookimpl
        def dreamkit_register_weights(self, register):
            pass

    host = PluginHost(load_entry_points=False, strict=True)
    host.register(Tracer(), name="tracer")
    seen.clear()
    host.register(Registers(), name="registers")
    assert seen == ["effects", "weights"]


def test_registration_runs_each_plugin_once():
    calls = []

    class Counted:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def dreamkit_register_weights(self, register):
            calls.append(self.name)

    host = PluginHost(load_entry_points=False, strict=True)
    for name in ("a", "b", "c"):
        host.register(Counted(name), name=name)
    assert calls == ["a", "b", "c"]  # registering c did not rerun a and b
