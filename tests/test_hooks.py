"""Every hook: documented in the README under its own heading with its exact signature, and tested.

Each hookspec must have a ``test_hook_<name>`` function in this module.
"""

import inspect
import re
import time

import pytest
import torch

from dreamkit import Effect, Pipeline, hookimpl, hookspecs
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
