"""Checks for a sampler's numeric settings, made when a step is built: a bad value fails at once
with the interval it must lie in (integers are checked by ``lightlens.options.check_int``)."""
from __future__ import annotations

import math
import numbers

import numpy as np


def short(value: float) -> str:
    """A setting as written in a step's repr: the shortest text that reads back the same float,
    without a trailing ``.0``.

    Args:
        value: the setting.

    >>> short(0.9), short(2.0), short(1e-05)
    ('0.9', '2', '1e-05')
    """
    return repr(float(value)).removesuffix(".0")


def _span(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(low) and math.isinf(high):
        return "finite"
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(name: str, value, *, low: float, high: float = math.inf, low_open: bool = False,
                 high_open: bool = False, hint: str = "") -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (open ends as asked).

    Python, numpy and 0-d torch numbers are taken; bools, strings, NaN and ±inf are refused.

    Args:
        name: the setting's name, for the message.
        value: what was passed.
        low: the smallest allowed value (excluded when ``low_open``); -inf for none.
        high: the largest allowed value (excluded when ``high_open``); inf for none.
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.
        hint: appended to the message (what a special value means, what to use instead).

    >>> check_number("top_p", 0.9, low=0, high=1, low_open=True)
    0.9
    >>> check_number("top_p", 1.5, low=0, high=1, low_open=True)
    Traceback (most recent call last):
    ValueError: top_p must be in (0, 1], got 1.5
    >>> check_number("temperature", -1, low=0, hint=" (0 means greedy)")
    Traceback (most recent call last):
    ValueError: temperature must be >= 0 (0 means greedy), got -1.0
    """
    span = _span(low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_, str, bytes)) or not (
            isinstance(value, numbers.Real) or (hasattr(value, "__float__") and getattr(value, "ndim", 0) == 0)):
        raise ValueError(f"{name} must be a number {span}{hint}, got {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        raise ValueError(f"{name} must be {span}{hint}, got {number!r}")
    return number
