"""Recognising the shape of an endpoint's answer, so a parse error can say which formatter would read it."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any, Final

import attrs

from azml_client import _json
from azml_client._config import ApiType

__all__ = ["MISSING", "BodyShape", "error_object", "error_text", "sniff"]

#: Marks "the body has not been decoded yet" (``None`` is a valid JSON value).
MISSING: Final[Any] = object()

_CHAT: Final = ("openai-chat", "mistral-chat")


@attrs.frozen(slots=True)
class BodyShape:
    """What an answer body looks like.

    Attributes:
        description: a phrase such as "this looks like an OpenAI chat answer".
        formatters: the built-in formatter names that read this shape (empty when none does).
        api_type: the api type those formatters read it with, when it matters.
    """

    description: str
    formatters: tuple[str, ...] = ()
    api_type: ApiType | None = None


def _keys(data: Mapping[Any, Any]) -> str:
    keys = [str(key) for key in list(data)[:8]]
    more = ", ..." if len(data) > 8 else ""
    return "[" + ", ".join(repr(key) for key in keys) + more + "]"


#: A repr that stops a few levels down and a few items in: a decoded answer may nest 1024 levels deep, deeper
#: than the built-in ``repr`` can go without a RecursionError.
_SHORT_REPR: Final = reprlib.Repr()
_SHORT_REPR.maxlevel = 4
_SHORT_REPR.maxstring = 200
_SHORT_REPR.maxother = 200


def error_object(data: Mapping[Any, Any]) -> Any:
    """The ``"error"`` member of a decoded answer or chunk, or ``None`` when it reports no error.

    ``"error": null`` (what servers built on pydantic models send with every answer) is no error, nor is any
    other empty or false value (``false``, ``""``, ``{}``, ``[]``, ``0``).
    """
    error = data.get("error")
    return error if error else None


def error_text(error: Any, limit: int = 200) -> str:
    """What an error object says: its ``message`` string, else the error itself, cut at ``limit`` characters."""
    if isinstance(error, Mapping):
        message = error.get("message")
        if isinstance(message, str):
            return message[:limit]
    if isinstance(error, str):
        return error[:limit]
    return _SHORT_REPR.repr(error)[:limit]


def _sniff_object(data: Mapping[Any, Any]) -> BodyShape:
    error = error_object(data)
    if error is not None:
        return BodyShape(f"this looks like an error object from the endpoint: {error_text(error)}")
    choices = data.get("choices")
    if isinstance(choices, list):
        first = choices[0] if choices else None
        if isinstance(first, Mapping):
            if "message" in first:
                return BodyShape("this looks like an OpenAI chat answer", _CHAT, ApiType.serverless)
            if "delta" in first:
                return BodyShape("this looks like an OpenAI chat stream chunk", _CHAT, ApiType.serverless)
            if "text" in first:
                return BodyShape("this looks like an OpenAI completion answer", ("openai",), ApiType.serverless)
        if not choices:
            return BodyShape("this looks like an OpenAI-style answer with no choices")
        return BodyShape("this looks like an OpenAI-style answer whose choices have an unknown shape")
    if "output" in data:
        return BodyShape('this looks like the dedicated chat schema `{"output": ...}`', _CHAT, ApiType.dedicated)
    for key in ("message", "Message", "detail", "title"):
        value = data.get(key)
        if isinstance(value, str):
            return BodyShape(f"this looks like an error message from the endpoint: {value[:200]!r}")
    return BodyShape(f"this is a JSON object with keys {_keys(data)}")


def _sniff_list(data: list[Any]) -> BodyShape:
    if not data:
        return BodyShape("this is an empty JSON list")
    first = data[0]
    if isinstance(first, str):
        return BodyShape('this looks like the dolly schema `["..."]`', ("dolly",), ApiType.dedicated)
    if isinstance(first, Mapping):
        zero = first.get("0")
        if isinstance(zero, str):
            return BodyShape('this looks like the gpt2 schema `[{"0": ...}]`', ("gpt2", "openai"), ApiType.dedicated)
        if isinstance(zero, Mapping) and "generated_text" in zero:
            return BodyShape(
                'this looks like the hf schema `[{"0": {"generated_text": ...}}]`', ("hf",), ApiType.dedicated
            )
        if "generated_text" in first:
            return BodyShape('this looks like the hf schema `[{"generated_text": ...}]`', ("hf",), ApiType.dedicated)
        if "summary_text" in first:
            return BodyShape(
                'this looks like a Hugging Face summarization answer `[{"summary_text": ...}]`, which no '
                "built-in formatter reads: write a ContentFormatterBase subclass for it"
            )
        return BodyShape(f"this is a JSON list of objects with keys {_keys(first)}")
    return BodyShape(f"this is a JSON list of {_json_kind(first)}s")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def sniff(body: bytes | str, data: Any = MISSING) -> BodyShape:
    """Describe what ``body`` looks like; ``data`` is its decoded JSON when the caller already has it.

    Never raises.
    """
    if data is MISSING:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        start = text.lstrip()[:20].lower()
        if not start:
            return BodyShape("the body is empty")
        try:
            data = _json.loads(body)
        except _json.JSONDecodeError:
            if start.startswith("<"):
                return BodyShape(
                    "this looks like an HTML or XML page (often an error page from a gateway or proxy), "
                    "not a model answer"
                )
            if start.startswith(("data:", "event:", ":")):
                return BodyShape("this looks like a server-sent event stream, the answer of a streaming call")
            return BodyShape("the body is not JSON")
    if isinstance(data, Mapping):
        return _sniff_object(data)
    if isinstance(data, list):
        return _sniff_list(data)
    return BodyShape(f"this is a bare JSON {_json_kind(data)}, not an object or a list")
