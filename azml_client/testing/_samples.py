"""Deterministic sample instances of JSON schemas: the emulator's tool-call arguments and structured answers.

The emulator is not a language model, so where a model would fill in a schema (the arguments of a tool call, a
``response_format`` of type ``json_schema``) it answers the same simple instance every time:

- an object gets each of its ``required`` properties (optional ones are left out), each sampled in turn;
- a string is ``"x"`` (padded to ``minLength``; an ISO date, date-time or time, an e-mail address, a URI or a
  UUID when ``format`` asks for one);
- an integer is 3 and a number 3.0, moved inside ``minimum`` / ``maximum`` (and their exclusive forms);
- a boolean is true, null is null;
- an array holds ``minItems`` items, or one when it says what its ``items`` are (none when it does not, or when
  ``maxItems`` is 0); ``prefixItems`` are sampled one by one;
- ``const`` gives its value, ``enum`` its first value; ``anyOf`` / ``oneOf`` their first branch that is not
  ``null``; ``allOf`` its branches merged; a type list its first type that is not ``"null"``;
- ``$ref`` to ``#/...`` (``$defs``, ``definitions``: what pydantic writes for nested models) is followed; past
  :data:`MAX_DEPTH` nested levels, arrays hold only ``minItems`` items and ``anyOf`` / ``oneOf`` take their
  ``null`` branch, so recursive schemas (trees) end; a schema that requires itself ends in ``{}``.

The instance is valid for the schema keywords above; ``pattern``, ``multipleOf``, ``uniqueItems`` and
conditionals are not looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

#: How deep arrays and optional values are filled in; deeper ones are as empty as the schema allows.
MAX_DEPTH: Final = 8
#: The depth at which even required properties stop (a schema that requires itself has no finite instance).
_HARD_DEPTH: Final = 4 * MAX_DEPTH

#: The sample string (before ``minLength`` / ``maxLength`` / ``format``).
STRING_SAMPLE: Final = "x"
#: The sample integer (before ``minimum`` / ``maximum``).
INTEGER_SAMPLE: Final = 3
#: The sample number (before ``minimum`` / ``maximum``).
NUMBER_SAMPLE: Final = 3.0

_FORMATS: Final[Mapping[str, str]] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "x@example.com",
    "uri": "https://example.com/x",
    "url": "https://example.com/x",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_TYPES_BY_KEYWORD: Final = (
    ("properties", "object"),
    ("required", "object"),
    ("items", "array"),
    ("prefixItems", "array"),
)


def sample_instance(schema: object) -> Any:
    """A deterministic instance of the JSON schema ``schema`` (see the module docstring for the rules).

    A schema that is not an object (``true``, or nonsense) gets ``"x"``.
    """
    root = schema if isinstance(schema, dict) else {}
    return _sample(schema, root, 0)


def sample_object(schema: object) -> dict[str, Any]:
    """Like :func:`sample_instance`, for a schema that must describe an object (tool arguments): always a dict."""
    value = sample_instance(schema)
    return value if isinstance(value, dict) else {}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` pointers (a few hops at most); anything unresolvable becomes ``{}``."""
    for _ in range(MAX_DEPTH):
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        target: Any = root
        if ref != "#":
            if not ref.startswith("#/"):
                return {}
            for part in ref[2:].split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or key not in target:
                    return {}
                target = target[key]
        if not isinstance(target, dict):
            return {}
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**target, **siblings}
    return {}


def _merge(branches: list[Any], root: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for branch in branches:
        if not isinstance(branch, dict):
            continue
        part = _resolve(branch, root)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        return next((k for k in kinds if k != "null"), "null" if kinds else None)
    if isinstance(kind, str):
        return kind
    for keyword, implied in _TYPES_BY_KEYWORD:
        if keyword in schema:
            return implied
    return None


def _sample(schema: object, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return STRING_SAMPLE
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        rest = {key: value for key, value in schema.items() if key != "allOf"}
        return _sample(_merge([rest, *all_of], root), root, depth)
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            resolved = [_resolve(b, root) if isinstance(b, dict) else b for b in branches]
            nulls = [b for b in resolved if isinstance(b, dict) and b.get("type") == "null"]
            if nulls and depth >= MAX_DEPTH:
                return None
            chosen = next((b for b in resolved if not any(b is n for n in nulls)), resolved[0])
            return _sample(chosen, root, depth)
    kind = _kind(schema)
    if kind == "object":
        return _sample_object(schema, root, depth)
    if kind == "array":
        return _sample_array(schema, root, depth)
    if kind == "integer":
        return _number(schema, INTEGER_SAMPLE, integer=True)
    if kind == "number":
        return _number(schema, NUMBER_SAMPLE, integer=False)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema)


def _sample_object(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth >= _HARD_DEPTH:
        return {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    required = schema.get("required")
    if not isinstance(required, list):
        return {}
    names = dict.fromkeys(name for name in required if isinstance(name, str))
    return {name: _sample(properties.get(name, {}), root, depth + 1) for name in names}


def _sample_array(schema: dict[str, Any], root: dict[str, Any], depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    prefix_items = prefix if isinstance(prefix, list) else []
    items = schema.get("items")
    low = schema.get("minItems")
    high = schema.get("maxItems")
    count = low if _is_count(low) else 0
    if count == 0 and depth < MAX_DEPTH and (prefix_items or isinstance(items, dict)):
        count = max(1, len(prefix_items))
    if _is_count(high):
        count = min(count, high)
    if depth >= _HARD_DEPTH:
        count = 0
    values = []
    for i in range(count):
        item = prefix_items[i] if i < len(prefix_items) else items
        values.append(_sample(item if isinstance(item, dict) else {}, root, depth + 1))
    return values


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(schema: dict[str, Any], sample: float, *, integer: bool) -> float:
    value = sample
    step = 1 if integer else 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    low_x, high_x = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if _is_number(low) and value < low:
        value = low
    if _is_number(low_x) and value <= low_x:
        value = low_x + step
    if _is_number(high) and value > high:
        value = high
    if _is_number(high_x) and value >= high_x:
        value = high_x - step
    if integer:
        # A float bound (minimum 2.5) still needs an integer inside it.
        whole = int(value)
        if (_is_number(low) and whole < low) or (_is_number(low_x) and whole <= low_x):
            whole += 1
        return whole
    return float(value)


def _string(schema: dict[str, Any]) -> str:
    text = STRING_SAMPLE
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        text = _FORMATS[fmt]
    low, high = schema.get("minLength"), schema.get("maxLength")
    if _is_count(low) and len(text) < low:
        text = text.ljust(low, STRING_SAMPLE)
    if _is_count(high) and len(text) > high:
        text = text[:high]
    return text
