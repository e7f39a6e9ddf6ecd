"""argparse ``type=`` converters for numbers within bounds, with messages that say what was expected."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["non_negative_int", "positive_int", "positive_seconds", "probability", "seconds"]

N = TypeVar("N", int, float)


def _bounded(convert: Callable[[str], N], expected: str, accept: Callable[[N], bool]) -> Callable[[str], N]:
    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _bounded(int, "an integer >= 1", lambda value: value >= 1)
non_negative_int = _bounded(int, "an integer >= 0", lambda value: value >= 0)
seconds = _bounded(float, "a number of seconds >= 0", lambda value: value >= 0)
positive_seconds = _bounded(float, "a positive number of seconds", lambda value: value > 0)
probability = _bounded(float, "a number between 0 and 1", lambda value: 0.0 <= value <= 1.0)
