"""Decoding answers: orjson's speed, with what the stdlib's ``json.loads`` also reads (``NaN``, ``Infinity``).

Python's ``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` for float scores and logprobs, and the seed
read answers with ``json.loads``, which turns them back into floats. orjson refuses them. :func:`loads` tries orjson
first and falls back to ``json.loads`` only when orjson fails, so a valid answer costs one orjson call.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["JSONDecodeError", "loads"]

#: What :func:`loads` raises: orjson's decode error (a ``json.JSONDecodeError``, so a ``ValueError``).
JSONDecodeError = orjson.JSONDecodeError

_orjson_loads = orjson.loads


def _stdlib_loads(data: bytes | bytearray | memoryview | str, error: orjson.JSONDecodeError) -> Any:
    """The stdlib's reading of what orjson refused; ``error`` (orjson's) is raised when it fails as well."""
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, RecursionError):
        # ValueError: not JSON for the stdlib either (UnicodeDecodeError included: bytes that are not UTF-8);
        # RecursionError: nested deeper than the interpreter's stack, which orjson refused past 1024 levels.
        raise error from None


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode a JSON document; ``NaN``, ``Infinity`` and ``-Infinity`` become floats.

    Whatever orjson reads is read by orjson. Only when it fails is the stdlib's ``json.loads`` tried, which also
    reads the three constants (and lone surrogate escapes and integers beyond 64 bits, as the seed did).

    Raises:
        orjson.JSONDecodeError: neither reads it (not JSON, not UTF-8, or nested more than 1024 levels deep);
            it is a ``json.JSONDecodeError`` and a ``ValueError``, and never a ``RecursionError``.
    """
    try:
        return _orjson_loads(data)
    except orjson.JSONDecodeError as error:
        return _stdlib_loads(data, error)
