"""Properties of every built-in parser, on arbitrary input and on the answers the emulator builds.

On arbitrary bytes or JSON values a parser returns a result that agrees with itself, or raises a
ResponseFormatError that names the formatter and keeps the start of the input as its body (or, for a stream
chunk that is the server's error object, a StreamError). On what the emulator's answer builder produces for
the request the formatter built, the parse gives back the texts, finish reasons, usage and tool calls the
emulator decided.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azml_client._config import ApiType
from azml_client._exceptions import MAX_ERROR_BODY, ResponseFormatError, StreamError
from azml_client._formatters import ChatContentFormatterBase, ContentFormatterBase, get_formatter
from azml_client._types import ChatChunk, ChatResult, Completion, CompletionChunk, Message, ToolCall, Usage
from azml_client.testing import _payloads as emulator

from .strategies import json_values, prompt_text, shaped_values

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
CHAT_CASES = [(name, api_type) for name, api_type in CASES if name.endswith("-chat")]
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_error(error: ResponseFormatError, formatter: ContentFormatterBase, body: bytes) -> None:
    """A ResponseFormatError names the formatter, and its body is the start of the input."""
    assert error.formatter == formatter.name
    assert f"formatter={formatter.name!r}" in str(error)
    assert error.body == body[:MAX_ERROR_BODY]
    assert error.hint


def _outcome(parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except ResponseFormatError as error:
        return error


def _parse_all(formatter: ContentFormatterBase, body: bytes, api_type: ApiType) -> None:
    """Every parser of ``formatter`` returns a consistent result or a well-formed ResponseFormatError."""
    completion = _outcome(formatter.parse_response, body, api_type)
    text = _outcome(formatter.format_response_payload, body, api_type)
    if isinstance(completion, ResponseFormatError):
        _check_error(completion, formatter, body)
        assert isinstance(text, ResponseFormatError)  # the seed's API refuses what the SDK's refuses
        _check_error(text, formatter, body)
    else:
        assert isinstance(completion, Completion)
        assert isinstance(completion.text, str)
        assert completion.text == (completion.choices[0].text if completion.choices else "")
        assert completion.finish_reason == (completion.choices[0].finish_reason if completion.choices else None)
        assert text == completion.text  # the seed's API reads the same text
        assert _outcome(formatter.parse_response, body, api_type) == completion  # and again the same
    if isinstance(formatter, ChatContentFormatterBase):
        result = _outcome(formatter.parse_chat_response, body, api_type)
        if isinstance(result, ResponseFormatError):
            _check_error(result, formatter, body)
            assert isinstance(completion, ResponseFormatError)
        else:
            assert isinstance(result, ChatResult)
            assert isinstance(completion, Completion)
            assert result.content == completion.text
            assert result.finish_reason == completion.finish_reason
            assert result.usage == completion.usage
            if result.choices:
                assert result.message == result.choices[0].message
            assert result.message.role in ("system", "user", "assistant", "tool")


def _stream_all(formatter: ContentFormatterBase, data: str) -> None:
    """Every chunk parser returns None, a chunk, a StreamError for an error object, or a ResponseFormatError."""
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    is_error_object = isinstance(decoded, dict) and bool(decoded.get("error"))
    parsers = [formatter.parse_stream_event]
    if isinstance(formatter, ChatContentFormatterBase):
        parsers.append(formatter.parse_chat_stream_event)
    for parse in parsers:
        outcome = _outcome_of_stream(parse, data)
        if isinstance(outcome, StreamError):
            assert is_error_object
            assert outcome.data == data[:MAX_ERROR_BODY]
            assert str(outcome).startswith("the server reported an error in the event stream: ")
        elif isinstance(outcome, ResponseFormatError):
            assert not is_error_object
            _check_error(outcome, formatter, data.encode())
        else:
            assert not is_error_object
            assert outcome is None or isinstance(outcome, (CompletionChunk, ChatChunk))
            if data == "[DONE]":
                assert outcome is None


def _outcome_of_stream(parse: Any, data: str) -> Any:
    try:
        return parse(data, S)
    except (StreamError, ResponseFormatError) as error:
        return error


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
        _choice({"message": {"role": "assistant", "content": value, "refusal": value}, "finish_reason": value}),
        {**_choice({"text": "x"}), "error": value},
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
        {"choices": [{"delta": {"content": "x"}}], "error": value},
    ):
        _stream_all(formatter, orjson.dumps(chunk).decode())


# -- round trips through the emulator's answer builder -----------------------------------------------------------

limits = st.none() | st.integers(0, 6)


def _usage(plan: emulator.Plan) -> Usage:
    return Usage(plan.prompt_tokens, plan.completion_tokens, plan.prompt_tokens + plan.completion_tokens)


def _build(formatter: ContentFormatterBase, prompt: str, kwargs: dict[str, Any], api_type: ApiType, **kw: Any) -> Any:
    if isinstance(formatter, ChatContentFormatterBase):
        return json.loads(formatter.build_chat_request([Message("user", prompt)], kwargs, api_type, **kw))
    return json.loads(formatter.build_request(prompt, kwargs, api_type, **kw))


@pytest.mark.parametrize(("name", "api_type"), [case for case in CASES if case[1] is D])
@FUZZ
@given(prompt=prompt_text, max_tokens=limits)
def test_dedicated_round_trip(name: str, api_type: ApiType, prompt: str, max_tokens: int | None) -> None:
    formatter = get_formatter(name)
    kwargs = {} if max_tokens is None else {"max_new_tokens": max_tokens}
    answer = emulator.dedicated_answer(emulator.DEPLOYMENTS[name], _build(formatter, prompt, kwargs, api_type))
    expected, _ = emulator.apply_limits(emulator.echo_text(prompt), emulator.Limits(max_tokens))
    completion = formatter.parse_response(orjson.dumps(answer), api_type)
    assert completion.text == expected
    assert completion.raw == answer
    if isinstance(formatter, ChatContentFormatterBase):
        assert formatter.parse_chat_response(orjson.dumps(answer), api_type).message == Message("assistant", expected)


@pytest.mark.parametrize("name", ["openai", "openai-chat", "mistral-chat"])
@FUZZ
@given(prompt=prompt_text, max_tokens=limits, n=st.integers(1, 3))
def test_serverless_round_trip(name: str, prompt: str, max_tokens: int | None, n: int) -> None:
    formatter = get_formatter(name)
    kwargs: dict[str, Any] = {"n": n} if max_tokens is None else {"n": n, "max_tokens": max_tokens}
    body = _build(formatter, prompt, kwargs, S)
    chat = isinstance(formatter, ChatContentFormatterBase)
    plan = emulator.chat_plan(body, itertools.count()) if chat else emulator.completion_plan(body)
    answer = orjson.dumps(emulator.render_answer(plan, "id-1", 0))
    completion = formatter.parse_response(answer, S)
    assert [choice.text for choice in completion.choices] == [choice.text for choice in plan.choices]
    assert [choice.finish_reason for choice in completion.choices] == [c.finish_reason for c in plan.choices]
    assert [choice.index for choice in completion.choices] == [choice.index for choice in plan.choices]
    assert completion.text == emulator.apply_limits(emulator.echo_text(prompt), emulator.Limits(max_tokens))[0]
    assert completion.usage == _usage(plan)
    if chat:
        assert isinstance(formatter, ChatContentFormatterBase)
        result = formatter.parse_chat_response(answer, S)
        assert result.model == emulator.MODEL_NAME
        assert result.usage == _usage(plan)
        assert [choice.message.content for choice in result.choices] == [choice.text for choice in plan.choices]


def _join_stream(formatter: ContentFormatterBase, plan: emulator.Plan) -> tuple[dict[int, str], dict[int, str], Any]:
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    usage = None
    for chunk in emulator.render_chunks(plan, "id-1", 0):
        parsed = formatter.parse_stream_event(orjson.dumps(chunk).decode(), S)
        if parsed is None:
            continue
        texts[parsed.index] = texts.get(parsed.index, "") + parsed.text
        if parsed.finish_reason is not None:
            finish[parsed.index] = parsed.finish_reason
        if parsed.usage is not None:
            usage = parsed.usage
    assert formatter.parse_stream_event("[DONE]", S) is None
    return texts, finish, usage


@pytest.mark.parametrize("name", ["openai", "openai-chat", "mistral-chat"])
@FUZZ
@given(prompt=prompt_text, max_tokens=limits, n=st.integers(1, 3), include_usage=st.booleans())
def test_stream_round_trip(name: str, prompt: str, max_tokens: int | None, n: int, include_usage: bool) -> None:
    formatter = get_formatter(name)
    kwargs: dict[str, Any] = {"n": n}
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    body = _build(formatter, prompt, kwargs, S, stream=True)
    assert body["stream"] is True
    chat = isinstance(formatter, ChatContentFormatterBase)
    plan = emulator.chat_plan(body, itertools.count()) if chat else emulator.completion_plan(body)
    texts, finish, usage = _join_stream(formatter, plan)
    # A choice whose text is empty sends no text chunk: compare the texts that were sent.
    assert {i: t for i, t in texts.items() if t} == {c.index: c.text for c in plan.choices if c.text}
    assert finish == {c.index: c.finish_reason for c in plan.choices}
    assert usage == (_usage(plan) if include_usage else None)


@pytest.mark.parametrize("name", ["openai-chat", "mistral-chat"])
@FUZZ
@given(
    tool=st.text(st.characters(codec="ascii", categories=["L"]), min_size=1, max_size=10),
    required=st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3),
    kind=st.sampled_from(["integer", "number", "string", "boolean", "array", "object"]),
)
def test_tool_call_round_trip(name: str, tool: str, required: list[str], kind: str) -> None:
    formatter = get_formatter(name)
    assert isinstance(formatter, ChatContentFormatterBase)
    schema = {"type": "object", "properties": {key: {"type": kind} for key in required}, "required": required}
    tools = [{"type": "function", "function": {"name": tool, "parameters": schema}}]
    body = json.loads(formatter.build_chat_request([Message("user", "go")], {"tools": tools}, S))
    plan = emulator.chat_plan(body, itertools.count(7))
    result = formatter.parse_chat_response(orjson.dumps(emulator.render_answer(plan, "id-1", 0)), S)
    (call,) = plan.choices[0].tool_calls
    assert result.tool_calls == (ToolCall.from_dict(call),)
    assert result.tool_calls[0].name == tool
    assert json.loads(result.tool_calls[0].arguments) == emulator.sample_arguments(schema)
    assert result.finish_reason == "tool_calls"
    assert result.message.content is None
    assert result.content == ""
    # The answer's message goes back out as it came (a follow-up request).
    follow_up = json.loads(
        formatter.build_chat_request(
            [Message("user", "go"), result.message, Message("tool", "42", tool_call_id=call["id"])], {}, S
        )
    )
    assert follow_up["messages"][1]["tool_calls"] == [call]
    # Streamed, the fragments join to the same call.
    stream_body = json.loads(formatter.build_chat_request([Message("user", "go")], {"tools": tools}, S, stream=True))
    arguments = ""
    names = []
    for chunk in emulator.render_chunks(emulator.chat_plan(stream_body, itertools.count(7)), "id-1", 0):
        parsed = formatter.parse_chat_stream_event(orjson.dumps(chunk).decode(), S)
        for delta in parsed.tool_call_deltas if parsed is not None else ():
            arguments += delta.arguments
            names += [delta.name] if delta.name else []
    assert names == [tool]
    assert arguments == call["function"]["arguments"]
