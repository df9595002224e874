"""Sliding windows over a long sequence: every target scored exactly once.

Window k feeds tokens ``[begin, end)`` to the model (at most ``max_length`` of them) and
scores the targets ``[first, last)`` it is responsible for, predicted from the logits at
``target - 1``. The layout is the Hugging Face "perplexity of fixed-length models"
protocol: ``begin = k·stride``, ``end = begin + max_length``, and a window scores the
tokens the previous one did not reach, so with ``stride < max_length`` every target has at
least ``max_length - stride`` tokens of context. With ``stride == max_length`` the windows
are disjoint and the first token of each window is predicted by the last position of the
window before it (lm-evaluation-harness rolling windows), so no token goes unscored.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Model input ``ids[begin:end]``; scores targets ``first <= i < last``."""

    begin: int
    end: int
    first: int
    last: int

    @property
    def positions(self) -> range:
        """Positions inside the window whose logits predict the targets."""
        return range(self.first - 1 - self.begin, self.last - 1 - self.begin)


def check_window(max_length: int, stride: int) -> None:
    """Reject window sizes that would skip or misplace tokens."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    if not isinstance(stride, int) or isinstance(stride, bool) or not 1 <= stride <= max_length:
        raise ValueError(
            f"stride must be an int with 1 <= stride <= max_length ({max_length}), got {stride!r}: "
            "a stride larger than the window would leave tokens unscored"
        )


def plan_windows(n: int, *, max_length: int, stride: int, first_target: int = 1) -> list[Window]:
    """Windows that score targets ``first_target .. n-1`` of an ``n``-token sequence once each.

    >>> [(w.begin, w.end, w.first, w.last) for w in plan_windows(10, max_length=4, stride=2)]
    [(0, 4, 1, 4), (2, 6, 4, 6), (4, 8, 6, 8), (6, 10, 8, 10)]
    >>> [(w.begin, w.end, w.first, w.last) for w in plan_windows(7, max_length=3, stride=3)]
    [(0, 3, 1, 4), (3, 6, 4, 7)]
    """
    check_window(max_length, stride)
    windows: list[Window] = []
    scored_to = first_target  # the next target nobody has scored yet
    begin = 0
    while scored_to < n:
        end = min(begin + max_length, n)
        # Disjoint windows: the last logit predicts the token that starts the next window.
        last = end + 1 if stride == max_length and end < n else end
        windows.append(Window(begin, end, scored_to, last))
        scored_to = last
        begin += stride
    return windows
