"""Every hook: documented in the README under its own heading with its exact signature, and tested.

Each hookspec must have a ``test_hook_<name>`` function in this module.
"""

import inspect
import re
import time

import pytest
import torch

from dreamkit import Effect, Param, Pipeline, hookimpl, hookspecs, save_image
from dreamkit.errors import ParameterError, PluginError
from dreamkit.plugins import hook_names
from dreamkit.weights import FolderSource, WeightsEntry

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_with_its_signature(name):
    readme = (REPO / "README.md").read_text()
    headings = re.findall(r"^#{2,4} `([^`]+)`", readme, flags=re.M)
    assert _signature(name) in headings, f"README needs a heading: ### `{_signature(name)}`"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_test(name):
    assert callable(globals().get(f"test_hook_{name}")), f"write test_hook_{name} in tests/test_hooks.py"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_docstring(name):
    assert len(inspect.getdoc(getattr(hookspecs, name)) or "") > 40


class Shout(Effect):
    name = "shout"

    def apply(self, image, context):
        return image * 0.5


def test_hook_dreamkit_register_effects(register_plugin, dreamkit_host):
    class Plugin:
        @hookimpl
        def dreamkit_register_effects(self, register):
            register(Shout)

    register_plugin(Plugin(), name="shouter")
    assert dreamkit_host.effect("shout") is Shout
    assert dreamkit_host.effect_owner("shout") == "shouter"


def test_hook_dreamkit_register_commands(register_plugin, dreamkit_host, cli):
    from dreamkit.cli import COMMANDS
    from dreamkit.commands import CORE_COMMANDS, Command

    assert set(CORE_COMMANDS) == set(COMMANDS)  # the names no plugin may take are the core's
    seen = []

    def configure(parser):
        parser.add_argument("word")
        parser.add_argument("--times", type=int, default=1)

    def run(args):
        seen.append((args.word, args.times))
        if args.word == "bad":
            from dreamkit.errors import DreamkitError

            raise DreamkitError("echo: 'bad' is not allowed")
        print(args.word * args.times)
        return 0

    class Plugin:
        @hookimpl
        def dreamkit_register_commands(self, register):
            register(Command("echo", "print a word", configure, run))

    register_plugin(Plugin(), name="echoer")
    assert cli("echo", "hi", "--times", "2")[:2] == (0, "hihi\n")
    code, _, err = cli("echo", "bad")
    assert code == 2 and err == "dreamkit: error: echo: 'bad' is not allowed\n"
    assert cli("echo")[0] == 2  # argparse's own usage error, exit 2
    assert seen == [("hi", 2), ("bad", 1)]
    assert "echo" in cli("--help")[1] and "index" in cli("--help")[1]  # ours, and the retrieval plugin's
    assert [p for p in dreamkit_host.plugins() if p.name == "echoer"][0].commands == ["echo"]

    class Clash:
        @hookimpl
        def dreamkit_register_commands(self, register):
            register(Command("run", "take over run", configure, run))

    with pytest.raises(PluginError, match="command name 'run' is already taken by dreamkit itself"):
        dreamkit_host.register(Clash(), name="clash")

    class Twice:
        @hookimpl
        def dreamkit_register_commands(self, register):
            register(Command("echo", "again", configure, run))

    with pytest.raises(PluginError, match="command name 'echo' is already taken by another plugin"):
        dreamkit_host.register(Twice(), name="twice")

    class NotACommand:
        @hookimpl
        def dreamkit_register_commands(self, register):
            register(("echo2", configure, run))

    with pytest.raises(PluginError, match="register\\(\\) takes a dreamkit.commands.Command, not tuple"):
        dreamkit_host.register(NotACommand(), name="notacommand")
    assert "echo2" not in dreamkit_host.commands


def test_hook_dreamkit_register_weights(register_plugin, dreamkit_host, tmp_path, weights_home):
    blob = b"not really weights"
    from dreamkit.weights import sha256_of

    entry = WeightsEntry("tiny", "V1", "tiny.bin", sha256_of(blob))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.bin").write_bytes(blob)

    class Plugin:
        @hookimpl
        def dreamkit_register_weights(self, register):
            register(entry)
            register(FolderSource(mirror))

    register_plugin(Plugin(), name="tinyweights")
    assert dreamkit_host.weights.get("tiny.V1") is entry
    path = dreamkit_host.weights.resolve("tiny.V1")  # found in the plugin's mirror, copied to the cache
    assert path == weights_home / "weights" / "tiny.bin" and path.read_bytes() == blob
    info = {p.name: p for p in dreamkit_host.plugins()}["tinyweights"]
    assert info.weights == ["tiny.V1", "source:FolderSource"]


def registering(hook_name, *items):
    """A plugin object whose ``hook_name`` registration hook registers ``items``."""

    def hook(self, register):
        for item in items:
            register(item)

    hook.__name__ = hook_name
    return type("Registering", (), {hook_name: hookimpl(hook)})()


class TinyNet(torch.nn.Module):
    """A backbone small enough to build in a test: two conv stages and a 10-class head."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU6())
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def test_hook_dreamkit_register_backbones(register_plugin, dreamkit_host, dreamkit_image, tmp_path):
    from dreamkit.models import Backbone, FeatureExtractor, classification_preprocess, list_layers
    from dreamkit_classify import Classify
    from dreamkit_deepdream import DeepDream

    tiny = Backbone("tinynet", TinyNet, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize_size=40, crop_size=32,
                    aliases={"stage2": "body.3"},
                    layers={"deepdream": ["stage2"], "style": ["body.1", "stage2"], "content": ["stage2"]})

    register_plugin(registering("dreamkit_register_backbones", tiny), name="tinynets")
    assert dreamkit_host.backbones["tinynet"] is tiny
    assert {p.name: p for p in dreamkit_host.plugins()}["tinynets"].backbones == ["tinynet"]
    assert [(i.path, i.alias) for i in list_layers("tinynet")][:5:4] == [("body", None), ("body.3", "stage2")]
    extractor = FeatureExtractor("tinynet", ["stage2"], weights="random")
    assert extractor.mean.flatten().tolist() == [0.5] * 3 and extractor.std.flatten().tolist() == [0.25] * 3
    assert classification_preprocess("tinynet", "random").crop_size == [32]
    # the effects use it by name, like a torchvision backbone
    dreamed = Pipeline([DeepDream(backbone="tinynet", weights="random", layers=["stage2"], octaves=1, steps=2,
                                  step_size=0.05)]).run(dreamkit_image, device="cpu").image
    assert (dreamed - dreamkit_image).abs().mean() > 0.01
    # its declared default layers: deepdream and style need none named
    by_default = Pipeline([DeepDream(backbone="tinynet", weights="random", octaves=1, steps=2, step_size=0.05)]
                          ).run(dreamkit_image, device="cpu").image
    assert torch.equal(by_default, dreamed)
    from dreamkit_style import Style

    style_image = tmp_path / "style.png"
    save_image(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)), style_image)
    styled = Style(style=[str(style_image)], backbone="tinynet", weights="random", iterations=2, scales=1)
    assert styled.layer_names(dreamkit_host) == (["body.1", "stage2"], ["stage2"])
    assert Pipeline([styled]).run(dreamkit_image, device="cpu").image.shape == dreamkit_image.shape
    record = Pipeline([Classify(backbone="tinynet", weights="random", top_k=3)]).run(dreamkit_image, device="cpu")
    assert [p["label"].startswith("class ") for p in record.results[0][0]["predictions"]] == [True] * 3

    for name, message in (("resnet50", "backbone name 'resnet50' is already taken by torchvision"),
                          ("tinynet", "backbone name 'tinynet' is already taken by another plugin")):
        with pytest.raises(PluginError, match=message):
            dreamkit_host.register(registering("dreamkit_register_backbones", Backbone(name, TinyNet)), name=name)
    assert dreamkit_host.backbones["tinynet"] is tiny


class FixedBoxes(torch.nn.Module):
    """A 'detector' that always finds the same three boxes, two of them overlapping."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, images):
        boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 8, 8]]) * self.scale
        return [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7, 0.3]), "labels": torch.tensor([1, 1, 2, 2])}]


def test_hook_dreamkit_register_detectors(register_plugin, dreamkit_host, dreamkit_image):
    from dreamkit.models import Detector, load_detector
    from dreamkit_detect import Detect

    fixed = Detector("fixedboxes", FixedBoxes, ["background", "thing", "other"], default_iou=0.5)

    register_plugin(registering("dreamkit_register_detectors", fixed), name="fixed-detector")
    assert dreamkit_host.detectors["fixedboxes"] is fixed
    assert {p.name: p for p in dreamkit_host.plugins()}["fixed-detector"].detectors == ["fixedboxes"]
    assert not load_detector("fixedboxes", "random").training
    run = Pipeline([Detect(what="objects", model="fixedboxes", weights="random")]).run(dreamkit_image, device="cpu")
    record = run.results[0][0]
    # score >= 0.5 drops the 0.3 box; per-class NMS at 0.5 drops the second 'thing' (IoU 0.68)
    assert [(d["label"], d["score"], d["box"]) for d in record["detections"]] == [
        ("thing", 0.9, [0.0, 0.0, 10.0, 10.0]), ("other", 0.7, [20.0, 20.0, 30.0, 30.0])]
    loose = Pipeline([Detect(what="objects", model="fixedboxes", weights="random", iou_threshold=0.9,
                             score_threshold=0.2, classes=["thing"])]).run(dreamkit_image, device="cpu")
    assert [d["score"] for d in loose.results[0][0]["detections"]] == [0.9, 0.8]
    with pytest.raises(ParameterError, match="'dog' is not a label of fixedboxes"):
        Detect(what="objects", model="fixedboxes", classes=["dog"])

    with pytest.raises(PluginError, match="detector name 'fixedboxes' is already taken by another plugin"):
        dreamkit_host.register(registering("dreamkit_register_detectors", Detector("fixedboxes", FixedBoxes, ["x"])),
                               name="again")


def test_hook_dreamkit_run_step(register_plugin, dreamkit_host, dreamkit_image):
    seen = []

    class Timer:
        @hookimpl(wrapper=True)
        def dreamkit_run_step(self, effect, image, context):
            start = time.perf_counter()
            result = yield
            seen.append((effect.name, context.step_index, time.perf_counter() - start))
            return result

    class Doubler:
        @hookimpl(wrapper=True)
        def dreamkit_run_step(self, effect, image, context):
            result = yield
            return result * 2  # a wrapper may replace the result

    class Plugin:
        @hookimpl
        def dreamkit_register_effects(self, register):
            register(Shout)

    register_plugin(Plugin(), name="shouter")
    register_plugin(Timer(), name="timer")
    register_plugin(Doubler(), name="doubler")
    out = Pipeline([Shout(), Shout()]).run(dreamkit_image, device="cpu").image
    assert [(name, step) for name, step, _ in seen] == [("shout", 0), ("shout", 1)]
    assert torch.allclose(out, dreamkit_image)  # (x * 0.5 * 2) * 0.5 * 2


class Tally(Effect):
    """A batchable analysis effect: records how many images each call saw, and each image's mean."""

    name = "tally"
    batchable = True
    fail_on_dark = Param(bool, False)

    def apply_batch(self, images, contexts):
        for image, context in zip(images, contexts):
            if self.fail_on_dark and float(image.mean()) < 0.2:
                raise ValueError("too dark")
            context.add_result({"group": len(images), "mean": round(float(image.mean()), 6)})
        return list(images)

    def apply(self, image, context):
        return self.apply_batch([image], [context])[0]


def test_hook_dreamkit_run_batch_step(register_plugin, dreamkit_host, dreamkit_image):
    calls = []

    class Watcher:
        @hookimpl(wrapper=True)
        def dreamkit_run_batch_step(self, effect, images, contexts):
            calls.append((effect.name, len(images), [c.step_index for c in contexts]))
            result = yield
            return [image * 0.5 for image in result]  # a wrapper may replace the result

        @hookimpl(wrapper=True)
        def dreamkit_run_step(self, effect, image, context):
            calls.append((effect.name, 1, "single"))
            return (yield)

    register_plugin(Watcher(), name="watcher")
    images = [dreamkit_image, dreamkit_image.flip(-1), dreamkit_image * 0.5]
    results = Pipeline([Shout(), Tally()]).run_many(images, device="cpu")
    assert calls == [("shout", 1, "single")] * 3 + [("tally", 3, [1, 1, 1])]  # shout one by one, tally once
    for image, result in zip(images, results):
        assert torch.equal(result.image, image * 0.5 * 0.5)
        assert result.results == [[{"effect": "tally", "step": 1, "group": 3, "mean": round(float((image * 0.5).mean()), 6)}]]
