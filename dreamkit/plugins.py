"""Plugin discovery: a tolerant loader around pluggy, and the registries of effects and weights.

pluggy's own ``load_setuptools_entrypoints`` stops at the first broken plugin, lets same-named
entry points shadow each other silently and accepts misspelled hooks until ``check_pending()``.
:class:`PluginHost` loads one entry point at a time instead; a plugin that fails to import, raises
in a registration hook, implements an unknown hook or registers a name already taken is recorded
in :attr:`PluginHost.failures` (name, distribution, version, error) and skipped, and the others
keep working. In strict mode (``DREAMKIT_STRICT_PLUGINS=1``, used by our test suite) the first
failure raises :class:`~dreamkit.errors.PluginError` instead.

``DREAMKIT_DISABLE_PLUGINS=name,...`` skips plugins by entry-point name, built-ins included.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import inspect
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .effect import Effect, check_effect_class
from .errors import PluginError, UnknownEffectError

ENTRY_POINT_GROUP = "dreamkit"
BUILTIN_DISTRIBUTION = "dreamkit"
_CORE_PLUGINS = ("dreamkit.core_hooks",)


@dataclass
class PluginInfo:
    """One loaded plugin, as ``dreamkit plugins`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    distribution: str | None
    version: str | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        origin = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"plugin '{self.name}' ({origin}): {self.error}"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


class PluginHost:
    """A pluggy plugin manager plus the effects and weights its plugins registered.

    ``PluginHost()`` loads every entry point of the ``dreamkit`` group. Pass
    ``load_entry_points=False`` for an empty host (tests), ``entry_points=`` to load a given list,
    ``strict=`` and ``disabled=`` to override the environment variables.
    """

    def __init__(
        self,
        *,
        load_entry_points: bool = True,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
        strict: bool | None = None,
        disabled: Iterable[str] | None = None,
    ) -> None:
        self.strict = _env_flag("DREAMKIT_STRICT_PLUGINS") if strict is None else strict
        self.disabled = _env_list("DREAMKIT_DISABLE_PLUGINS") if disabled is None else set(disabled)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.effects: dict[str, type[Effect]] = {}
        self.backbones: dict[str, Any] = {}  # name -> dreamkit.networks.Backbone
        self.detectors: dict[str, Any] = {}  # name -> dreamkit.networks.Detector
        self.commands: dict[str, Any] = {}  # name -> dreamkit.commands.Command
        self.failures: list[PluginFailure] = []
        self.skipped: list[str] = []  # disabled by name
        self._info: dict[str, PluginInfo] = {}
        self._owners: dict[str, Any] = {}  # effect name -> plugin object
        from .model_cache import ModelCache
        from .weights import WeightsRegistry  # local: weights imports torch lazily too

        self.weights = WeightsRegistry()
        #: The loaded models every plugin shares, within a memory budget (``models.clear()``).
        self.models = ModelCache()
        for module_name in _CORE_PLUGINS:
            module = importlib.import_module(module_name)
            self.register(module, name=module_name, distribution=BUILTIN_DISTRIBUTION, version=_own_version())
        if entry_points is None and load_entry_points:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        if entry_points is not None:
            self.load_entry_points(entry_points)

    # -- loading ---------------------------------------------------------------------------
    def load_entry_points(self, entry_points: Iterable[metadata.EntryPoint]) -> None:
        """Load entry points one at a time; built-ins first so no plugin can take their names."""

        def order(ep: metadata.EntryPoint) -> tuple[int, str]:
            return (0 if _dist_name(ep) == BUILTIN_DISTRIBUTION else 1, ep.name)

        for ep in sorted(entry_points, key=order):
            dist, version = _dist_name(ep), _dist_version(ep)
            if ep.name in self.disabled:
                self.skipped.append(ep.name)
                continue
            if self.pm.has_plugin(ep.name) or ep.name in self._failed_names():
                self._fail(ep.name, dist, version, "another plugin is already registered under this entry-point name")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time error is the plugin's, not ours
                self._fail(ep.name, dist, version, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self.register(plugin, name=ep.name, distribution=dist, version=version)

    def register(
        self, plugin: Any, name: str | None = None, *, distribution: str | None = None, version: str | None = None
    ) -> bool:
        """Register one plugin object or module; return False (or raise, in strict mode) on failure."""
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        misspelled = _unknown_hook_names(plugin)
        if misspelled:
            return self._fail(name, distribution, version, f"unknown hook {misspelled[0]!r}; known hooks: {', '.join(_hook_names())}")
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            return self._fail(name, distribution, version, f"invalid plugin: {exc}")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            return self._fail(name, distribution, version, f"invalid hook: {exc}")
        info = PluginInfo(
            name=name,
            distribution=distribution,
            version=version,
            builtin=distribution == BUILTIN_DISTRIBUTION,
            hooks=sorted(impl.name for impl in self._hookcallers(plugin)),
        )
        try:
            info.effects = self._collect_effects(plugin)
            info.backbones = self._collect_backbones(plugin)
            info.detectors = self._collect_detectors(plugin)
            info.commands = self._collect_commands(plugin)
            info.weights = self._collect_weights(plugin)
        except Exception as exc:
            self.pm.unregister(plugin)
            for effect in info.effects:
                self.effects.pop(effect, None)
            for backbone in info.backbones:
                self.backbones.pop(backbone, None)
            for detector in info.detectors:
                self.detectors.pop(detector, None)
            for command in info.commands:
                self.commands.pop(command, None)
            self.weights.forget(plugin)
            return self._fail(name, distribution, version, str(exc) if isinstance(exc, _Clash) else f"hook raised {type(exc).__name__}: {exc}")
        self._info[name] = info
        return True

    def _hookcallers(self, plugin: Any) -> list[Any]:
        return self.pm.get_hookcallers(plugin) or []

    def _impls(self, plugin: Any, hook_name: str) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook_name)
        return [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]

    def _call_registration(self, plugin: Any, hook_name: str, register: Any) -> None:
        """Call ``plugin``'s implementation of a registration hook through pluggy, so wrappers of
        other plugins (tracing, auditing) see it, but no other plugin's registrations run again:
        one plugin at a time, so a failure is that plugin's alone."""
        if not self._impls(plugin, hook_name):
            return
        caller = getattr(self.pm.hook, hook_name)
        others = {impl.plugin for impl in caller.get_hookimpls()
                  if impl.plugin is not plugin and not (impl.wrapper or impl.hookwrapper)}
        self.pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)

    def _collect_effects(self, plugin: Any) -> list[str]:
        def check(effect_class: Any) -> str | None:
            check_effect_class(effect_class)
            if effect_class.name in self.effects:
                return f"is already registered by plugin '{self.effect_owner(effect_class.name)}'"
            return None

        return self._collect_named(plugin, "dreamkit_register_effects", self.effects, "effect", check,
                                   on_add=lambda name: self._owners.__setitem__(name, plugin))

    def _collect_backbones(self, plugin: Any) -> list[str]:
        from .networks import Backbone, torchvision_backbone_names

        return self._collect_named(plugin, "dreamkit_register_backbones", self.backbones, "backbone",
                                   self._by_name(Backbone, self.backbones, reserved=torchvision_backbone_names))

    def _collect_detectors(self, plugin: Any) -> list[str]:
        from .networks import Detector

        return self._collect_named(plugin, "dreamkit_register_detectors", self.detectors, "detector",
                                   self._by_name(Detector, self.detectors))

    def _collect_commands(self, plugin: Any) -> list[str]:
        from .commands import CORE_COMMANDS, Command

        return self._collect_named(plugin, "dreamkit_register_commands", self.commands, "command",
                                   self._by_name(Command, self.commands, reserved=lambda: CORE_COMMANDS,
                                                 reserved_by="dreamkit itself"))

    @staticmethod
    def _by_name(kind: type, registry: dict[str, Any], reserved: Any = tuple, reserved_by: str = "torchvision") -> Any:
        """A check for :meth:`_collect_named`: ``kind`` objects, names not taken (nor ``reserved()``)."""
        def check(item: Any) -> str | None:
            if not isinstance(item, kind):
                raise TypeError(f"register() takes a {kind.__module__}.{kind.__name__}, not {type(item).__name__}")
            if item.name in registry:
                return "is already taken by another plugin"
            return f"is already taken by {reserved_by}" if item.name in reserved() else None

        return check

    def _collect_named(self, plugin: Any, hook_name: str, registry: dict[str, Any], what: str,
                       check: Any, on_add: Any = None) -> list[str]:
        """Call ``plugin``'s ``hook_name`` with a ``register`` that adds items to ``registry`` by
        their ``name``; ``check(item)`` raises for a wrong item or returns why its name clashes.
        All or nothing: a failure removes what the plugin added."""
        added: list[str] = []

        def register(item: Any) -> None:
            clash = check(item)
            if clash:
                raise _Clash(f"{what} name '{item.name}' {clash}")
            registry[item.name] = item
            added.append(item.name)
            if on_add is not None:
                on_add(item.name)

        try:
            self._call_registration(plugin, hook_name, register)
        except BaseException:
            for name in added:
                registry.pop(name, None)
            raise
        return added

    def _collect_weights(self, plugin: Any) -> list[str]:
        added: list[str] = []
        self._call_registration(plugin, "dreamkit_register_weights",
                                lambda item: added.append(self.weights.add(item, owner=plugin)))
        return added

    def _failed_names(self) -> set[str]:
        return {failure.name for failure in self.failures}

    def _fail(self, name: str, distribution: str | None, version: str | None, error: str) -> bool:
        failure = PluginFailure(name, distribution, version, error)
        if self.strict:
            raise PluginError(str(failure))
        self.failures.append(failure)
        warnings.warn(f"skipped {failure}", RuntimeWarning, stacklevel=3)
        return False

    # -- queries ---------------------------------------------------------------------------
    def effect_owner(self, effect_name: str) -> str | None:
        """Name of the plugin that registered ``effect_name``."""
        plugin = self._owners.get(effect_name)
        return self.pm.get_name(plugin) if plugin is not None else None

    def effect(self, name: str) -> type[Effect]:
        """The effect class registered as ``name``; unknown names list what exists."""
        try:
            return self.effects[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.effects, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            available = ", ".join(sorted(self.effects)) or "(none: no effect plugins are loaded)"
            raise UnknownEffectError(f"unknown effect '{name}'{hint}; available effects: {available}") from None

    def effect_listing(self) -> list[dict[str, Any]]:
        """Every effect with its declared parameters (:meth:`~dreamkit.effect.Param.describe`), by
        name: what ``dreamkit effects --json`` prints and the web page's forms use."""
        return [{"name": name, "summary": self.effects[name].summary, "plugin": self.effect_owner(name),
                 "params": [param.describe() for param in self.effects[name].params.values()],
                 "presets": {preset: dict(values) for preset, values in self.effects[name].presets.items()}}
                for name in sorted(self.effects)]

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin, core hooks first, then in load order."""
        return list(self._info.values())

    @property
    def hook(self) -> Any:
        return self.pm.hook


class _Clash(Exception):
    """A name already taken (reported as is, without the 'hook raised' prefix)."""


def _hook_names() -> list[str]:
    return sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("dreamkit_"))


def _unknown_hook_names(plugin: Any) -> list[str]:
    """``dreamkit_*`` attributes that are not hooks: almost always a misspelled hook name."""
    known = set(_hook_names())
    names = dir(plugin) if not inspect.ismodule(plugin) else list(vars(plugin))
    return sorted(
        name for name in names
        if name.startswith("dreamkit_") and name not in known and callable(getattr(plugin, name, None))
    )


def _own_version() -> str:
    from ._version import __version__

    return __version__


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _dist_version(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


# -- the process-wide default host ------------------------------------------------------------
_default_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The plugin host used by the CLI and by ``Pipeline.from_config`` when none is given."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host


def set_host(host: PluginHost | None) -> PluginHost | None:
    """Replace the default host (``None`` resets it); returns the previous one."""
    global _default_host
    previous, _default_host = _default_host, host
    return previous


def hook_names() -> list[str]:
    """Names of every hook a plugin can implement."""
    return _hook_names()

