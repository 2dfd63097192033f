"""Argument checks shared by the op wrappers: errors name the op, the argument and what it got."""

from __future__ import annotations

from typing import Any

import torch


def check_tensor(op: str, name: str, value: Any, *, min_dim: int | None = None, dims: tuple[int, ...] = (),
                 layout: str = "", floating: bool = False) -> None:
    """``value`` is a tensor with an allowed number of dims (and a floating dtype if asked)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(value).__name__}")
    if min_dim is not None and value.dim() < min_dim:
        raise ValueError(f"{op}: {name} must have at least {min_dim} dims {layout}; got shape {tuple(value.shape)}")
    if dims and value.dim() not in dims:
        raise ValueError(f"{op}: {name} must be {layout}; got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {value.dtype}")


def check_int(op: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")


def check_pair(op: str, name: str, value: Any, *, positive: bool = False) -> tuple[int, int]:
    """An int pair (``(y, x)``); a single int means both. ``positive`` requires values >= 1."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) for v in pair
    ):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (height, width), got {value!r}")
    if positive and min(pair) < 1:
        raise ValueError(f"{op}: {name} must be positive, got {tuple(pair)}")
    return int(pair[0]), int(pair[1])


def check_number(op: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    return value
