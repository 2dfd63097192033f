"""Effect parameters: declaration, defaults, validation and the error messages."""

import pytest

from dreamkit import Effect, Param, ParameterError
from dreamkit.effect import check_effect_class


class Demo(Effect):
    name = "demo"
    summary = "for tests"
    count = Param(int, 3, min=1, max=10, help="how many")
    strength = Param(float, 0.5, gt=0, help="how strong")
    mode = Param(str, "fast", choices=("fast", "slow"))
    flag = Param(bool, False)
    layers = Param(list, ["a"], item=str, min_items=1)
    width = Param(int, None, min=1)

    def apply(self, image, context):
        return image


def test_defaults_and_values():
    effect = Demo()
    assert effect.count == 3 and effect.strength == 0.5 and effect.mode == "fast"
    assert effect.flag is False and effect.layers == ["a"] and effect.width is None
    assert list(Demo.params) == ["count", "strength", "mode", "flag", "layers", "width"]


def test_values_are_normalised():
    effect = Demo(count=4.0, strength=2, layers=("x", "y"))
    assert effect.count == 4 and isinstance(effect.count, int)
    assert effect.strength == 2.0 and isinstance(effect.strength, float)
    assert effect.layers == ["x", "y"]


@pytest.mark.parametrize(
    "values, param, shown, allowed",
    [
        ({"count": 0}, "count", "0", "an integer >= 1 and <= 10"),
        ({"count": 2.5}, "count", "2.5", "an integer"),
        ({"count": True}, "count", "True", "an integer"),
        ({"strength": 0}, "strength", "0", "a number > 0"),
        ({"strength": float("nan")}, "strength", "nan", "a number > 0"),
        ({"strength": "high"}, "strength", "'high'", "a number"),
        ({"mode": "medium"}, "mode", "'medium'", "one of 'fast', 'slow'"),
        ({"flag": 1}, "flag", "1", "true or false"),
        ({"layers": []}, "layers", r"\[\]", "a list of strings with at least 1 item"),
        ({"layers": "a"}, "layers", "'a'", "a list of strings"),
        ({"width": 0}, "width", "0", "an integer >= 1, or none"),
    ],
)
def test_bad_values_name_effect_parameter_value_and_what_is_allowed(values, param, shown, allowed):
    with pytest.raises(ParameterError) as info:
        Demo(**values)
    message = str(info.value)
    assert f"effect 'demo': parameter '{param}'" in message
    assert pytest.importorskip("re").search(shown, message)
    assert allowed in message
    assert isinstance(info.value, ValueError)


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ParameterError, match=r"effect 'demo': unknown parameter 'cuont'; its parameters are: count, strength"):
        Demo(cuont=3)


@pytest.mark.parametrize(
    "key, raw, expected",
    [("count", "7", 7), ("strength", "1e-2", 0.01), ("flag", "yes", True), ("flag", "off", False),
     ("layers", "[a, b]", ["a", "b"]), ("layers", "c", ["c"]), ("width", "none", None), ("mode", "slow", "slow")],
)
def test_from_strings(key, raw, expected):
    assert getattr(Demo.from_strings({key: raw}), key) == expected


@pytest.mark.parametrize("key, raw", [("count", "seven"), ("flag", "maybe"), ("count", "none"), ("layers", "[]")])
def test_from_strings_rejects_bad_text(key, raw):
    with pytest.raises(ParameterError, match=f"effect 'demo': parameter '{key}'"):
        Demo.from_strings({key: raw})


def test_from_strings_unknown_parameter():
    with pytest.raises(ParameterError, match="unknown parameter 'nope'"):
        Demo.from_strings({"nope": "1"})


def test_parameters_are_read_only_and_values_are_copies():
    effect = Demo()
    with pytest.raises(AttributeError, match="read-only"):
        effect.count = 5
    effect.values["layers"].append("zzz")
    assert effect.layers == ["a"]


def test_equality_repr_and_config():
    assert Demo(count=2) == Demo(count=2) != Demo(count=3)
    assert "count=2" in repr(Demo(count=2))
    config = Demo(count=2).to_config()
    assert config == {"effect": "demo", "params": {"count": 2, "strength": 0.5, "mode": "fast", "flag": False, "layers": ["a"]}}


def test_bad_default_fails_at_class_definition():
    with pytest.raises(ParameterError):
        Param(int, 0, min=1)


def test_param_kind_must_be_supported():
    with pytest.raises(TypeError):
        Param(dict, {})
    with pytest.raises(TypeError):
        Param(list, [])


def test_cross_parameter_check_uses_invalid():
    class Pair(Effect):
        name = "pair"
        low = Param(int, 0)
        high = Param(int, 1)

        def check(self):
            if self.low >= self.high:
                raise self.invalid("low", f"must be below high ({self.high})")

        def apply(self, image, context):
            return image

    with pytest.raises(ParameterError, match=r"effect 'pair': parameter 'low' = 5 is not allowed; must be below high \(1\)"):
        Pair(low=5)


@pytest.mark.parametrize("bad_name", ["", "Bad", "1abc", "has space", None])
def test_effect_class_checks(bad_name):
    class Named(Effect):
        name = bad_name

        def apply(self, image, context):
            return image

    with pytest.raises(TypeError, match="effect name"):
        check_effect_class(Named)


def test_effect_class_must_implement_apply_and_subclass_effect():
    class NoApply(Effect):
        name = "noapply"

    with pytest.raises(TypeError, match="does not implement apply"):
        check_effect_class(NoApply)
    with pytest.raises(TypeError, match="not a dreamkit.Effect subclass"):
        check_effect_class(object)
