"""The tolerant plugin loader: failures are recorded and skipped, strict mode raises."""

import importlib.metadata as md
import sys
import textwrap

import pytest

from dreamkit import Effect, PluginError, PluginHost, UnknownEffectError, hookimpl
from dreamkit.plugins import get_host, hook_names, set_host

GOOD = """
from dreamkit import Effect, hookimpl

class Invert(Effect):
    name = "{effect}"
    def apply(self, image, context):
        return 1 - image

@hookimpl
def dreamkit_register_effects(register):
    register(Invert)
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """Write plugin modules into a folder on sys.path; returns a function making entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def make(module: str, source: str, ep_name: str | None = None) -> md.EntryPoint:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        written.append(module)
        return md.EntryPoint(name=ep_name or module, value=module, group="dreamkit")

    yield make
    for module in written:
        sys.modules.pop(module, None)


def load(entry_points, **kwargs):
    with pytest.warns(RuntimeWarning) if kwargs.pop("expect_warning", False) else _nullcontext():
        return PluginHost(entry_points=entry_points, strict=kwargs.pop("strict", False), **kwargs)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_good_plugin_registers_its_effect(plugin_dir):
    host = load([plugin_dir("dk_good", GOOD.format(effect="invert"))])
    assert "invert" in host.effects and host.failures == []
    info = {p.name: p for p in host.plugins()}["dk_good"]
    assert info.effects == ["invert"] and info.hooks == ["dreamkit_register_effects"] and not info.builtin


def test_import_failure_is_recorded_and_others_keep_working(plugin_dir):
    broken = plugin_dir("dk_broken", "raise ImportError('needs libfoo')")
    good = plugin_dir("dk_good2", GOOD.format(effect="invert"))
    host = load([broken, good], expect_warning=True)
    assert "invert" in host.effects
    (failure,) = host.failures
    assert failure.name == "dk_broken" and "import failed: ImportError: needs libfoo" in failure.error


def test_raising_hook_is_recorded_and_its_effects_dropped(plugin_dir):
    source = GOOD.format(effect="halfway") + """
class Second(Invert):
    name = "second"

@hookimpl
def dreamkit_register_weights(register):
    raise RuntimeError("boom")
"""
    host = load([plugin_dir("dk_raises", source)], expect_warning=True)
    assert "halfway" not in host.effects and "second" not in host.effects
    assert "hook raised RuntimeError: boom" in host.failures[0].error
    assert not host.pm.has_plugin("dk_raises")


def test_unknown_hook_with_marker_is_rejected(plugin_dir):
    source = """
from dreamkit import hookimpl

@hookimpl
def dreamkit_register_efects(register):
    pass
"""
    host = load([plugin_dir("dk_typo", source)], expect_warning=True)
    assert "unknown hook 'dreamkit_register_efects'" in host.failures[0].error
    assert "dreamkit_register_effects" in host.failures[0].error  # the list of known hooks


def test_misspelled_hook_without_marker_is_rejected(plugin_dir):
    host = load([plugin_dir("dk_typo2", "def dreamkit_register_effect(register):\n    pass\n")], expect_warning=True)
    assert "unknown hook 'dreamkit_register_effect'" in host.failures[0].error


def test_wrong_hook_arguments_are_rejected(plugin_dir):
    source = """
from dreamkit import hookimpl

@hookimpl
def dreamkit_register_effects(register, extra):
    pass
"""
    host = load([plugin_dir("dk_args", source)], expect_warning=True)
    assert "invalid plugin" in host.failures[0].error and "extra" in host.failures[0].error


def test_duplicate_effect_name_fails_the_later_plugin(plugin_dir):
    first = plugin_dir("dk_a", GOOD.format(effect="same"))
    second = plugin_dir("dk_b", GOOD.format(effect="same"))
    host = load([second, first], expect_warning=True)  # loaded in name order: dk_a first
    assert host.effect_owner("same") == "dk_a"
    (failure,) = host.failures
    assert failure.name == "dk_b" and "effect name 'same' is already registered by plugin 'dk_a'" in failure.error


def test_duplicate_entry_point_name_is_reported(plugin_dir):
    one = plugin_dir("dk_one", GOOD.format(effect="one"), ep_name="clash")
    two = plugin_dir("dk_two", GOOD.format(effect="two"), ep_name="clash")
    host = load([one, two], expect_warning=True)
    assert len(host.failures) == 1 and "already registered under this entry-point name" in host.failures[0].error
    assert len([name for name in ("one", "two") if name in host.effects]) == 1


def test_registering_a_non_effect_is_a_failure(plugin_dir):
    source = """
from dreamkit import hookimpl

@hookimpl
def dreamkit_register_effects(register):
    register(42)
"""
    host = load([plugin_dir("dk_notcls", source)], expect_warning=True)
    assert "not a dreamkit.Effect subclass" in host.failures[0].error


def test_disabled_plugins_are_skipped(plugin_dir, monkeypatch):
    monkeypatch.setenv("DREAMKIT_DISABLE_PLUGINS", "dk_off, other")
    host = PluginHost(entry_points=[plugin_dir("dk_off", GOOD.format(effect="off"))], strict=True)
    assert "off" not in host.effects and host.skipped == ["dk_off"] and host.failures == []


def test_builtins_can_be_disabled(monkeypatch):
    monkeypatch.setenv("DREAMKIT_DISABLE_PLUGINS", "basic")
    host = PluginHost()
    assert "resize" not in host.effects and "basic" in host.skipped


def test_strict_mode_raises_on_the_first_failure(plugin_dir, monkeypatch):
    broken = plugin_dir("dk_broken_strict", "raise ImportError('nope')")
    with pytest.raises(PluginError, match="plugin 'dk_broken_strict'.*import failed"):
        PluginHost(entry_points=[broken], strict=True)
    monkeypatch.setenv("DREAMKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        PluginHost(entry_points=[broken])


def test_installed_builtins_load(dreamkit_host):
    infos = {p.name: p for p in dreamkit_host.plugins()}
    assert infos["basic"].builtin and infos["basic"].distribution == "dreamkit"
    assert {"resize", "adjust"} <= set(infos["basic"].effects)
    assert infos["dreamkit.core_hooks"].builtin


def test_unknown_effect_lists_what_exists(dreamkit_host):
    with pytest.raises(UnknownEffectError, match=r"unknown effect 'resiz' \(did you mean 'resize'\?\); available effects: adjust, classify, deepdream, detect, fast_style, resize"):
        dreamkit_host.effect("resiz")


def test_register_plugin_fixture_adds_an_effect_for_one_test(register_plugin, dreamkit_host):
    class Plug:
        class Grey(Effect):
            name = "grey-test"

            def apply(self, image, context):
                return image.mean(1, keepdim=True).expand_as(image).contiguous()

        @hookimpl
        def dreamkit_register_effects(self, register):
            register(self.Grey)

    register_plugin(Plug(), name="plug")
    assert get_host() is dreamkit_host and "grey-test" in dreamkit_host.effects


def test_each_test_gets_a_fresh_host(dreamkit_host):
    assert "grey-test" not in dreamkit_host.effects


def test_default_host_can_be_replaced_and_reset():
    previous = set_host(None)
    try:
        host = get_host()
        assert get_host() is host
    finally:
        set_host(previous)


def test_hook_names():
    assert hook_names() == ["dreamkit_register_backbones", "dreamkit_register_commands", "dreamkit_register_detectors",
                            "dreamkit_register_effects",
                            "dreamkit_register_weights", "dreamkit_run_batch_step", "dreamkit_run_step"]


def test_bare_host_fixture_has_only_the_core(dreamkit_bare_host):
    assert get_host() is dreamkit_bare_host
    assert dreamkit_bare_host.effects == {} and [p.name for p in dreamkit_bare_host.plugins()] == ["dreamkit.core_hooks"]
    assert "mobilenet_v2.IMAGENET1K_V1" in dreamkit_bare_host.weights.entries
