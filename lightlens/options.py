"""The options every path takes, checked once, before any work: in-process scoring, the Triton
kernels, servers, corpus runs and the CLI all call these, so an option means one thing
everywhere and a bad one fails at once with what to pass instead.

Integers accept Python and numpy integers and refuse bools and floats; ``bos`` is None, True or
False, nothing else.
"""
from __future__ import annotations

import operator

import numpy as np

# The most alternatives any path keeps per token. The kernels (which import only torch) hold the
# same number for their register budget; tests/test_options.py checks that the two agree.
MAX_TOP_K = 64


def check_int(name: str, value, *, minimum: int, maximum: int | None = None, none: bool = False) -> int | None:
    """``value`` as an int within ``[minimum, maximum]`` (None allowed when ``none``).

    >>> import numpy as np
    >>> check_int("batch_size", np.int64(4), minimum=1)
    4
    >>> check_int("batch_size", True, minimum=1)
    Traceback (most recent call last):
    ValueError: batch_size must be an int >= 1, got True
    """
    if value is None and none:
        return None
    span = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int {span}, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be an int {span}, got {number}")
    return number


def check_top_k(top_k) -> int:
    """``top_k`` as an int in ``[0, MAX_TOP_K]`` (64), the same limit on every path.

    >>> check_top_k(100000)
    Traceback (most recent call last):
    ValueError: top_k must be an int in [0, 64], got 100000
    """
    return check_int("top_k", top_k, minimum=0, maximum=MAX_TOP_K)


def check_bos(bos) -> bool | None:
    """``bos``: None (follow the tokenizer), True or False; anything else is refused.

    >>> check_bos(None), check_bos(False)
    (None, False)
    >>> check_bos("yes")
    Traceback (most recent call last):
    ValueError: bos must be None (follow the tokenizer), True or False, got 'yes'
    """
    if bos is None or isinstance(bos, bool):
        return bos
    if isinstance(bos, np.bool_):
        return bool(bos)
    raise ValueError(f"bos must be None (follow the tokenizer), True or False, got {bos!r}")


def check_max_tokens(max_tokens) -> int | None:
    """``max_tokens`` (keep each document's first N tokens): None, or an int >= 1.

    >>> check_max_tokens(0)
    Traceback (most recent call last):
    ValueError: max_tokens must be an int >= 1, got 0
    """
    return check_int("max_tokens", max_tokens, minimum=1, none=True)


def check_window_options(max_length, stride) -> tuple[int | None, int | None]:
    """``max_length`` (>= 2) and ``stride`` (>= 1), each None for the default; their relation
    (``stride <= max_length``) is checked where the window is planned.

    >>> check_window_options(1, None)
    Traceback (most recent call last):
    ValueError: max_length must be an int >= 2, got 1
    """
    return (check_int("max_length", max_length, minimum=2, none=True),
            check_int("stride", stride, minimum=1, none=True))


def check_stop(stop) -> tuple[str, ...]:
    """Stop strings as a tuple: None, one string or a list of non-empty strings.

    >>> check_stop("\\n"), check_stop(None)
    (('\\n',), ())
    >>> check_stop([".", ""])
    Traceback (most recent call last):
    ValueError: stop strings must be non-empty strings (an empty one would stop at once), got ['.', '']
    """
    if stop is not None and not isinstance(stop, str) and not hasattr(stop, "__iter__"):
        raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")
    stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise ValueError(f"stop strings must be non-empty strings (an empty one would stop at once), got {stop!r}")
    return stops
