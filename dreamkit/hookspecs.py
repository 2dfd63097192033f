"""The hooks a dreamkit plugin can implement.

Implement them with ``@dreamkit.hookimpl`` in a module or object named by an entry point in the
``dreamkit`` group. Every hook is documented in the README under its own heading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .context import RunContext
    from .effect import Effect

PROJECT = "dreamkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def dreamkit_register_effects(register: Callable[[type["Effect"]], None]) -> None:
    """Register effect classes by calling ``register(EffectSubclass)`` once per effect.

    Fires once per plugin when the plugin manager loads it. An effect name that another plugin
    registered already is a load failure of the later plugin.
    """


@hookspec
def dreamkit_register_weights(register: Callable[[Any], None]) -> None:
    """Register model weights and weight sources.

    ``register(entry)`` with a :class:`dreamkit.weights.WeightsEntry` adds a named weights file
    (backbone, name, file name, sha256, categories, sources). ``register(source)`` with a
    :class:`dreamkit.weights.WeightSource` adds a place to look for *every* entry's file (a mirror,
    a shared network folder), tried after the user's file and the cache and before the entry's own
    sources. Fires once per plugin when the plugin manager loads it.
    """


@hookspec
def dreamkit_register_backbones(register: Callable[[Any], None]) -> None:
    """Register networks by name: ``register(Backbone(name, build, mean=..., std=..., ...))`` with a
    :class:`dreamkit.models.Backbone`. Every effect that takes a ``backbone`` (deepdream,
    classify, ...) can then use it like a torchvision one; register its weights with
    ``dreamkit_register_weights`` (``WeightsEntry(backbone=name, ...)``). A name already taken
    (by torchvision or another plugin) is a load failure of the later plugin. Fires once per
    plugin when the plugin manager loads it.
    """


@hookspec
def dreamkit_register_detectors(register: Callable[[Any], None]) -> None:
    """Register box detectors by name: ``register(Detector(name, build, categories, ...))`` with a
    :class:`dreamkit.models.Detector`; ``detect:what=objects,model=NAME`` then runs it. Register
    its weights with ``dreamkit_register_weights``. A name already taken is a load failure of the
    later plugin. Fires once per plugin when the plugin manager loads it.
    """


@hookspec
def dreamkit_register_commands(register: Callable[[Any], None]) -> None:
    """Add commands to the ``dreamkit`` command line: ``register(Command(name, help, configure, run))``
    with a :class:`dreamkit.commands.Command`. ``configure(parser)`` adds its arguments to an
    argparse parser, ``run(args)`` returns the exit code. A name the core or another plugin uses
    is a load failure of the later plugin. Fires once per plugin when the plugin manager loads it.
    """


@hookspec(firstresult=True)
def dreamkit_run_step(effect: "Effect", image: Any, context: "RunContext") -> Any:
    """Run one pipeline step: apply ``effect`` to ``image`` (1×C×H×W float tensor, 0..1).

    dreamkit itself implements this hook last and calls ``effect.apply(image, context)``; plugins
    wrap it with ``@hookimpl(wrapper=True)``: code before ``result = yield`` runs before the step,
    code after it sees the result (a tensor, or a list of tensors for a frame sequence) and must
    return it (or a replacement). Use it for timing, logging or caching. Fires once per step and
    frame.
    """


@hookspec(firstresult=True)
def dreamkit_run_batch_step(effect: "Effect", images: list[Any], contexts: list["RunContext"]) -> Any:
    """Run one pipeline step of a ``batchable`` effect on several images at once, when a batch run
    groups inputs (:meth:`dreamkit.Pipeline.run_many`). dreamkit implements it last and calls
    ``effect.apply_batch(images, contexts)``; wrap it as :func:`dreamkit_run_step` (the result is
    the list of output images). Fires once per group, instead of ``dreamkit_run_step`` once per image.
    """
