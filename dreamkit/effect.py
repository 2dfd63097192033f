"""The ``Effect`` base class and its declared, validated parameters.

An effect is a class with a ``name``, a one-line ``summary``, parameters declared as class
attributes with :class:`Param`, and an ``apply(image, context)`` method::

    class Posterize(Effect):
        name = "posterize"
        summary = "Reduce each colour channel to a few levels."
        levels = Param(int, 4, min=2, max=256, help="levels per channel")

        def apply(self, image, context):
            return torch.round(image * (self.levels - 1)) / (self.levels - 1)

Parameters are validated when the effect is constructed; a bad value raises
:class:`~dreamkit.errors.ParameterError` (a ``ValueError``) naming the effect, the parameter, the
value and what is allowed.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Sequence

from .errors import ParameterError

_SCALARS = (int, float, bool, str)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


class Param:
    """A declared effect parameter: its type, default, allowed range or choices, and help text.

    ``kind`` is ``int``, ``float``, ``bool``, ``str`` or ``list`` (then ``item`` gives the element
    type). ``min``/``max`` are inclusive bounds, ``gt`` an exclusive lower bound; ``choices`` an
    explicit set of allowed values. A ``default`` of ``None`` makes the parameter optional.
    ``resource`` (``"image"``, ``"file"``, ``"folder"``) marks a parameter whose value
    names a file: front ends resolve it into a :class:`~dreamkit.resources.Resource` (paths on the
    command line and in recipes, uploads on the web page), which the effect opens like a path;
    ``words`` are its values that are not files (``"content"``, ``"default"``). ``advanced``
    marks a parameter most users never touch (memory budgets, tile sizes, layer lists): the web
    page folds it away, ``dreamkit effects`` lists it last. ``per_item_of`` names another list
    parameter this list gives one value per item of (a blend weight per style image): the web page
    shows each value beside its item.
    """

    def __init__(
        self,
        kind: type,
        default: Any,
        *,
        help: str = "",
        min: float | None = None,
        max: float | None = None,
        gt: float | None = None,
        choices: Sequence[Any] | None = None,
        item: type | None = None,
        min_items: int = 0,
        resource: str | None = None,
        words: Sequence[str] = (),
        advanced: bool = False,
        per_item_of: str | None = None,
    ) -> None:
        if kind not in (*_SCALARS, list):
            raise TypeError(f"Param kind must be int, float, bool, str or list, not {kind!r}")
        if kind is list and item not in _SCALARS:
            raise TypeError("a list Param needs item=int, float, bool or str")
        if resource is not None:
            from .resources import KINDS

            if resource not in KINDS or (kind if kind is not list else item) is not str:
                raise TypeError(f"resource={resource!r}: a file parameter is a str (or a list of str) Param with "
                                f"resource one of {', '.join(KINDS)}")
        self.kind = kind
        self.item = item
        #: Set when the value names a file (see :mod:`dreamkit.resources`): front ends resolve it.
        self.resource = resource
        #: Values of a file parameter that are words, not files (``"content"``, ``"default"``).
        self.words = tuple(words)
        #: Folded away on the web page (see the class docstring).
        self.advanced = advanced
        if per_item_of is not None and kind is not list:
            raise TypeError(f"per_item_of={per_item_of!r}: only a list Param gives one value per item")
        #: The list parameter this one gives a value per item of (checked with the effect's params).
        self.per_item_of = per_item_of
        self.help = help
        self.min, self.max, self.gt = min, max, gt
        self.choices = tuple(choices) if choices is not None else None
        self.min_items = min_items
        self.name = "?"
        self.optional = default is None
        # Validate the default itself so a typo in a plugin shows up at import, not at run time.
        self.default = default if default is None else self._check(default, "<default>")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._values[self.name]

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(f"effect parameters are read-only; build a new {type(instance).__name__}")

    # -- describing -------------------------------------------------------------------------
    def allowed(self) -> str:
        """What values are allowed, in words (used in every error message)."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind is list:
            text = f"a list of {_kind_words(self.item)}" + self._range_words()
            if self.min_items:
                text += f" with at least {self.min_items} item{'s' if self.min_items > 1 else ''}"
        else:
            text = _kind_words(self.kind, article=True) + self._range_words()
        return text + (", or none" if self.optional else "")

    def _range_words(self) -> str:
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt}")
        if self.min is not None:
            parts.append(f">= {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return (" " + " and ".join(parts)) if parts else ""

    def describe(self) -> dict[str, Any]:
        """The declaration as plain data: what ``dreamkit effects --json`` prints and the web
        page builds its forms from."""
        return {"name": self.name, "type": self.type_name(), "default": self.default, "allowed": self.allowed(),
                "help": self.help, "min": self.min, "max": self.max, "gt": self.gt,
                "choices": list(self.choices) if self.choices is not None else None, "optional": self.optional,
                "resource": self.resource, "words": list(self.words), "advanced": self.advanced,
                "per_item_of": self.per_item_of}

    def type_name(self) -> str:
        return f"list[{self.item.__name__}]" if self.kind is list else self.kind.__name__

    # -- validating -------------------------------------------------------------------------
    def validate(self, value: Any, effect: str) -> Any:
        """Return ``value`` normalised (ints for integral floats, lists as lists) or raise."""
        if value is None and self.optional:
            return None
        return self._check(value, effect)

    def parse(self, text: str, effect: str) -> Any:
        """Convert a command-line string (``levels=4``, ``layers=[a,b]``) and validate it."""
        raw = text.strip()
        if self.optional and raw.lower() in _NONE:
            return None
        if self.kind is list:
            inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
            items = [part.strip() for part in inner.split(",")] if inner.strip() else []
            value = [self._parse_scalar(part, self.item, effect, text) for part in items]
        else:
            value = self._parse_scalar(raw, self.kind, effect, text)
        return self._check(value, effect)

    def _parse_scalar(self, raw: str, kind: type, effect: str, original: str) -> Any:
        try:
            if kind is bool:
                low = raw.lower()
                if low in _TRUE:
                    return True
                if low in _FALSE:
                    return False
                raise ValueError(raw)
            return kind(raw)
        except ValueError:
            raise self._error(effect, original) from None

    def _check(self, value: Any, effect: str) -> Any:
        if self.kind is list:
            if not isinstance(value, (list, tuple)):
                raise self._error(effect, value)
            value = [self._check_scalar(v, self.item, effect, value) for v in value]
            if len(value) < self.min_items:
                raise self._error(effect, value)
            return value
        return self._check_scalar(value, self.kind, effect, value)

    def _check_scalar(self, value: Any, kind: type, effect: str, shown: Any) -> Any:
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str) or (self.resource is not None and _is_resource(value)) or \
                (self.resource == "image" and _is_image_data(value))
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and kind in (int, float):
            ok = (
                (self.min is None or value >= self.min)
                and (self.max is None or value <= self.max)
                and (self.gt is None or value > self.gt)
            )
        if not ok:
            raise self._error(effect, shown)
        return value

    def _error(self, effect: str, value: Any) -> ParameterError:
        return ParameterError(
            f"effect '{effect}': parameter '{self.name}' = {value!r} is not allowed; "
            f"expected {self.allowed()}"
        )


def _kind_words(kind: type | None, article: bool = False) -> str:
    words = {int: ("integers", "an integer"), float: ("numbers", "a number"),
             bool: ("booleans", "true or false"), str: ("strings", "a string")}[kind]
    return words[1] if article else words[0]


def value_text(value: Any) -> str:
    """A parameter value as the command line spells it (what :meth:`Param.parse` reads back):
    ``true``/``false``, ``[a,b]``, numbers and strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(value_text(item) for item in value) + "]"
    return str(value)


class Effect:
    """Base class of every effect. Subclasses set ``name``, ``summary``, declare :class:`Param`
    attributes and implement :meth:`apply`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: Declared parameters by name, in declaration order (filled in for each subclass).
    params: ClassVar[dict[str, Param]] = {}
    #: Named sets of parameter values a user can start from (``{"subtle": {"steps": 5}, ...}``):
    #: the web page offers them, ``dreamkit effects`` lists them. Checked when the class is made.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Param):
                    params[key] = value
        cls.params = params
        for param in params.values():
            other = params.get(param.per_item_of) if param.per_item_of else None
            if param.per_item_of and (other is None or other.kind is not list):
                raise TypeError(f"effect {cls.name!r}: parameter {param.name!r} has per_item_of={param.per_item_of!r}, "
                                "which is not a list parameter of this effect")
        for preset, values in cls.presets.items():  # a plugin's typo shows at import, not on a click
            unknown = sorted(set(values) - set(params))
            if unknown:
                raise TypeError(f"effect {cls.name!r}: preset {preset!r} sets unknown parameter(s) {', '.join(unknown)}")
            for key, value in values.items():
                params[key].validate(value, cls.name)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise self._unknown_parameter(unknown[0])
        self._values = {
            key: _image_data_as_file(param, param.validate(values[key], self.name)) if key in values
            else _copy(param.default)
            for key, param in self.params.items()
        }
        self.check()

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> "Effect":
        """Build the effect from command-line text values (``{"levels": "4"}``)."""
        parsed = {}
        for key, text in values.items():
            if key not in cls.params:
                raise cls._unknown_parameter(key)
            parsed[key] = cls.params[key].parse(text, cls.name)
        return cls(**parsed)

    @classmethod
    def _unknown_parameter(cls, key: str) -> ParameterError:
        return ParameterError(
            f"effect '{cls.name}': unknown parameter {key!r}; its parameters are: {', '.join(cls.params) or '(none)'}"
        )

    def check(self) -> None:
        """Override to validate combinations of parameters; raise with :meth:`invalid`."""

    def invalid(self, param: str, message: str) -> ParameterError:
        """A ParameterError for ``param`` in the standard form (for use in :meth:`check`)."""
        return ParameterError(
            f"effect '{self.name}': parameter '{param}' = {self._values.get(param)!r} is not allowed; {message}"
        )

    def apply(self, image: Any, context: Any) -> Any:
        """Return the new image (1×C×H×W float tensor, 0..1, on ``context.device``), or a list of
        such tensors for a frame sequence. Analysis effects return ``image`` unchanged and call
        ``context.add_result(...)``."""
        raise NotImplementedError

    #: True when :meth:`apply_batch` does several images in one call (one model call for many):
    #: batch runs then hand it several inputs at once (:meth:`Pipeline.run_many`).
    batchable: ClassVar[bool] = False

    #: True when :meth:`apply` uses ``context.previous_input``/``previous_output`` (``style``
    #: starts each frame from the previous result): the frames of a video then run in order in
    #: one process (:meth:`Pipeline.sequence`); otherwise they are independent jobs, run in parallel.
    sequential: ClassVar[bool] = False

    def remembered_frames(self) -> int:
        """How many earlier frames of a sequence (input and output) :meth:`apply` sees in
        ``context.earlier``: 1, the previous frame (which ``previous_*`` give too). An effect that
        looks further back (``style``'s ``long_term``) asks for more; a sequence's chunks warm up on
        :data:`dreamkit.batch.video.WARM_UP` frames, so more than that would differ across chunks."""
        return 1

    def apply_batch(self, images: list[Any], contexts: list[Any]) -> list[Any]:
        """Several independent images, each with its own context (seed, records); one output image
        per image, in order. A batchable effect must not use ``context.previous_output`` (it is
        ``None`` here). Default: :meth:`apply` on each."""
        return [self.apply(image, context) for image, context in zip(images, contexts)]

    @property
    def values(self) -> dict[str, Any]:
        """All parameter values, defaults included (a copy)."""
        return {key: _copy(value) for key, value in self._values.items()}

    def to_config(self) -> dict[str, Any]:
        """``{"effect": name, "params": {...}}`` with every parameter that is set, so a recipe
        replays exactly even if a default changes later. Unset optional parameters (``None``) are
        left out: TOML has no null, and leaving them out restores them as unset."""
        return {"effect": self.name, "params": {k: _plain(v) for k, v in self.values.items() if v is not None}}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values == self._values  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), repr(self._values)))

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._values.items())
        return f"{type(self).__name__}({args})"


def check_effect_class(cls: Any) -> None:
    """Raise ``TypeError`` if ``cls`` cannot be registered as an effect (used by the plugin host)."""
    if not (isinstance(cls, type) and issubclass(cls, Effect)):
        raise TypeError(f"{cls!r} is not a dreamkit.Effect subclass")
    if not isinstance(cls.name, str) or not _NAME_RE.match(cls.name):
        raise TypeError(
            f"{cls.__qualname__}.name = {cls.name!r}: an effect name must be lower case letters, "
            "digits, '-' or '_', starting with a letter"
        )
    if cls.apply is Effect.apply:
        raise TypeError(f"{cls.__qualname__} does not implement apply(image, context)")


def _image_data_as_file(param: Param, value: Any) -> Any:
    """An image parameter given as data (Python API: a PIL image, tensor or array) becomes a file
    resource at once, so the effect's checks and code see a file like any other."""
    if param.resource != "image" or value is None:
        return value
    from .resources import in_memory_image

    if isinstance(value, list):
        return [in_memory_image(item) if _is_image_data(item) else item for item in value]
    return in_memory_image(value) if _is_image_data(value) else value


def _is_image_data(value: Any) -> bool:
    from .resources import is_image_data

    return is_image_data(value)


def _is_resource(value: Any) -> bool:
    from .resources import Resource

    return isinstance(value, Resource)


def _plain(value: Any) -> Any:
    """A value as a recipe holds it: a resolved file by the name it was given (the recipe's
    ``resources`` section holds where it was and its sha256)."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value.name if _is_resource(value) else value


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
