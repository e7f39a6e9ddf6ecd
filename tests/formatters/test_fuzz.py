"""Every built-in parser, fed arbitrary bytes or JSON values, returns a result or raises ResponseFormatError."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azml_client._config import ApiType
from azml_client._exceptions import ResponseFormatError, StreamError
from azml_client._formatters import ChatContentFormatterBase, ContentFormatterBase, get_formatter

from .strategies import json_values, shaped_values

D, S = ApiType.dedicated, ApiType.serverless

#: (formatter name, api type) for every api type each built-in speaks.
CASES = [
    ("gpt2", D),
    ("hf", D),
    ("dolly", D),
    ("openai", D),
    ("openai", S),
    ("openai-chat", D),
    ("openai-chat", S),
    ("mistral-chat", D),
    ("mistral-chat", S),
]
STREAMING = [(name, api_type) for name, api_type in CASES if api_type is S]
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_all(formatter: ContentFormatterBase, body: bytes, api_type: ApiType) -> None:
    for parse in (formatter.parse_response, formatter.format_response_payload):
        with contextlib.suppress(ResponseFormatError):
            parse(body, api_type)
    if isinstance(formatter, ChatContentFormatterBase):
        with contextlib.suppress(ResponseFormatError):
            formatter.parse_chat_response(body, api_type)


def _stream_all(formatter: ContentFormatterBase, data: str) -> None:
    # A chunk that is the server's error object raises StreamError (issue 12).
    with contextlib.suppress(ResponseFormatError, StreamError):
        formatter.parse_stream_event(data, S)
    if isinstance(formatter, ChatContentFormatterBase):
        with contextlib.suppress(ResponseFormatError, StreamError):
            formatter.parse_chat_stream_event(data, S)


@pytest.mark.parametrize(("name", "api_type"), CASES)
@FUZZ
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes(name: str, api_type: ApiType, body: bytes) -> None:
    _parse_all(get_formatter(name), body, api_type)


@pytest.mark.parametrize(("name", "api_type"), CASES)
@FUZZ
@given(value=json_values | shaped_values)
def test_arbitrary_json(name: str, api_type: ApiType, value: Any) -> None:
    _parse_all(get_formatter(name), orjson.dumps(value), api_type)


def _choice(inner: Any) -> Any:
    return {"choices": [inner], "usage": {"prompt_tokens": 1}}


@pytest.mark.parametrize(("name", "api_type"), CASES)
@FUZZ
@given(value=shaped_values)
def test_almost_right_answers(name: str, api_type: ApiType, value: Any) -> None:
    formatter = get_formatter(name)
    for body in (
        _choice({"message": value}),
        _choice({"text": value, "finish_reason": value}),
        _choice({"message": {"role": "assistant", "content": None, "tool_calls": value}}),
        _choice({"message": {"role": "assistant", "content": None, "tool_calls": [{"function": value}]}}),
        [{"0": value}],
        [value],
        {"output": value},
    ):
        _parse_all(formatter, orjson.dumps(body), api_type)


@pytest.mark.parametrize(("name", "api_type"), STREAMING)
@FUZZ
@given(data=st.text(max_size=200))
def test_arbitrary_stream_text(name: str, api_type: ApiType, data: str) -> None:
    _stream_all(get_formatter(name), data)


@pytest.mark.parametrize(("name", "api_type"), STREAMING)
@FUZZ
@given(value=json_values | shaped_values)
def test_arbitrary_stream_json(name: str, api_type: ApiType, value: Any) -> None:
    formatter = get_formatter(name)
    _stream_all(formatter, orjson.dumps(value).decode())
    for chunk in (
        {"choices": [{"delta": value}]},
        {"choices": [{"delta": {"tool_calls": value}}]},
        {"choices": [{"delta": {"tool_calls": [value]}}]},
        {"choices": [{"text": value, "finish_reason": value}]},
        {"choices": [], "usage": value},
    ):
        _stream_all(formatter, orjson.dumps(chunk).decode())
