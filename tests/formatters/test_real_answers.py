"""Real answers the formatters used to refuse (issue 12): ``"error": null``, ``content: null`` with a reason or a
refusal, error objects mid-stream, and ``NaN`` / ``Infinity`` in the JSON."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

import azml_client
from azml_client._config import ApiType
from azml_client._exceptions import MAX_ERROR_BODY, AzureMLError, ResponseFormatError, StreamError
from azml_client._formatters import (
    ChatContentFormatterBase,
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    get_formatter,
)
from azml_client._types import ChatChunk, CompletionChunk, Message, Usage

S, D = ApiType.serverless, ApiType.dedicated
chat = CustomOpenAIChatContentFormatter()
completion = CustomOpenAIContentFormatter()
CHAT_NAMES = ["openai-chat", "mistral-chat"]


def _chat(name: str) -> ChatContentFormatterBase:
    formatter = get_formatter(name)
    assert isinstance(formatter, ChatContentFormatterBase)
    return formatter


# -- "error": null ---------------------------------------------------------------------------------------------

#: A chat answer as vLLM and other servers built on pydantic models send it: every optional field present, null.
PYDANTIC_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hi",
                "refusal": None,
                "tool_calls": [],
                "function_call": None,
                "reasoning_content": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ],
    "usage": {"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1, "prompt_tokens_details": None},
    "prompt_logprobs": None,
    "error": None,
}


@pytest.mark.parametrize("name", CHAT_NAMES)
@pytest.mark.parametrize("error", [None, False, "", {}, []])
def test_a_chat_answer_with_an_empty_error_member_is_an_answer(name: str, error: Any) -> None:
    body = orjson.dumps({**PYDANTIC_CHAT, "error": error})
    result = _chat(name).parse_chat_response(body, S)
    assert result.message == Message("assistant", "hi")
    assert result.usage == Usage(1, 1, 2)
    assert _chat(name).parse_response(body, S).text == "hi"
    assert _chat(name).parse_chat_response(body, D).content == "hi"  # a dedicated deployment speaking OpenAI


def test_a_completion_answer_with_error_null_is_an_answer() -> None:
    body = b'{"choices": [{"text": "x", "finish_reason": "stop", "logprobs": null}], "usage": null, "error": null}'
    assert completion.parse_response(body, S).text == "x"


def test_stream_chunks_with_error_null_are_chunks() -> None:
    data = (
        '{"choices":[{"index":0,"delta":{"role":null,"content":"x","refusal":null,"tool_calls":null}}],'
        '"usage":null,"error":null}'
    )
    assert chat.parse_chat_stream_event(data, S) == ChatChunk("x")
    assert chat.parse_stream_event(data, S) == CompletionChunk("x")
    text = '{"choices":[{"text":"y","finish_reason":null}],"error":null}'
    assert completion.parse_stream_event(text, S) == CompletionChunk("y")


def test_the_hint_does_not_call_error_null_an_error_object() -> None:
    with pytest.raises(ResponseFormatError) as info:
        get_formatter("gpt2").parse_response(b'{"error": null, "message": "model not ready"}', D)
    assert "error object" not in info.value.hint
    assert "model not ready" in info.value.hint
    with pytest.raises(ResponseFormatError) as info:
        get_formatter("gpt2").parse_response(b'{"error": null, "choices": [{"message": {"content": "x"}}]}', D)
    assert "OpenAI chat answer" in info.value.hint


# -- content null with a reason, or a refusal ------------------------------------------------------------------


def _answer(message: dict[str, Any], finish_reason: str | None) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]})


@pytest.mark.parametrize("name", CHAT_NAMES)
@pytest.mark.parametrize("finish_reason", ["content_filter", "length"])
def test_content_null_cut_or_filtered_is_returned(name: str, finish_reason: str) -> None:
    body = _answer({"role": "assistant", "content": None}, finish_reason)
    result = _chat(name).parse_chat_response(body, S)
    assert result.message == Message("assistant", None)
    assert result.message.content is None  # as openai-python returns it
    assert result.content == ""
    assert result.finish_reason == finish_reason
    assert result.choices[0].finish_reason == finish_reason
    view = _chat(name).parse_response(body, S)
    assert (view.text, view.finish_reason) == ("", finish_reason)
    assert _chat(name).format_response_payload(body, S) == ""


def test_azures_content_filter_answer() -> None:
    body = orjson.dumps(
        {
            "choices": [
                {
                    "finish_reason": "content_filter",
                    "index": 0,
                    "message": {"role": "assistant"},
                    "content_filter_results": {"hate": {"filtered": True, "severity": "high"}},
                }
            ],
            "prompt_filter_results": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
        }
    )
    result = chat.parse_chat_response(body, S)
    assert (result.message.content, result.finish_reason, result.usage) == (None, "content_filter", Usage(5, 0, 5))


@pytest.mark.parametrize("name", CHAT_NAMES)
def test_a_refusal_is_returned(name: str) -> None:
    body = _answer({"role": "assistant", "content": None, "refusal": "I can't help with that."}, "stop")
    result = _chat(name).parse_chat_response(body, S)
    assert result.message == Message("assistant", None, refusal="I can't help with that.")
    assert result.refusal == "I can't help with that."
    assert result.content == ""
    assert result.finish_reason == "stop"


def test_content_null_without_a_reason_is_still_malformed() -> None:
    for finish_reason in (None, "stop"):
        with pytest.raises(ResponseFormatError, match="'content': null and no tool_calls"):
            chat.parse_chat_response(_answer({"role": "assistant", "content": None}, finish_reason), S)
    with pytest.raises(ResponseFormatError, match="'refusal' must be a string or null"):
        chat.parse_chat_response(_answer({"role": "assistant", "content": None, "refusal": 5}, "stop"), S)


def test_refusals_stream() -> None:
    pieces = ['{"choices":[{"delta":{"role":"assistant","refusal":""}}]}', '{"choices":[{"delta":{"refusal":"No."}}]}']
    assert [chat.parse_chat_stream_event(data, S) for data in pieces] == [
        ChatChunk(role="assistant"),
        ChatChunk(refusal="No."),
    ]


# -- error objects mid-stream ----------------------------------------------------------------------------------


def test_stream_error_is_a_public_typed_error() -> None:
    assert azml_client.StreamError is StreamError
    assert "StreamError" in azml_client.__all__
    assert issubclass(StreamError, AzureMLError)
    assert not issubclass(StreamError, ResponseFormatError)
    error = StreamError("the server reported an error in an event stream: boom", data="{}", code="500")
    assert (str(error), error.data, error.code) == (
        "the server reported an error in an event stream: boom; code='500'",
        "{}",
        "500",
    )
    assert str(StreamError("boom")) == "boom"
    assert StreamError("x", data="d" * 10_000).data == "d" * MAX_ERROR_BODY


@pytest.mark.parametrize(
    ("data", "message", "code"),
    [
        (
            '{"error": {"message": "The server had an error", "type": "server_error", "code": null}}',
            "had an error",
            None,
        ),
        ('{"error": {"message": "filtered", "code": "content_filter"}}', "filtered", "content_filter"),
        ('{"error": {"message": "overloaded", "code": 529}}', "overloaded", "529"),
        ('{"error": "upstream timed out"}', "upstream timed out", None),
        ('{"error": {"detail": "x"}}', "detail", None),
        ('{"choices": [{"delta": {"content": "x"}}], "error": {"message": "cut"}}', "cut", None),
    ],
)
@pytest.mark.parametrize("name", ["openai", "openai-chat", "mistral-chat"])
def test_error_objects_mid_stream_raise_stream_error(name: str, data: str, message: str, code: str | None) -> None:
    formatter = get_formatter(name)
    parsers = [formatter.parse_stream_event]
    if isinstance(formatter, ChatContentFormatterBase):
        parsers.append(formatter.parse_chat_stream_event)
    for parse in parsers:
        with pytest.raises(StreamError) as info:
            parse(data, S)
        assert str(info.value).startswith("the server reported an error in the event stream: ")
        assert message in str(info.value)
        assert info.value.code == code
        assert info.value.data == data


def test_a_deeply_nested_error_object_mid_stream() -> None:
    data = '{"error": ' + "[" * 1000 + "]" * 1000 + "}"
    with pytest.raises(StreamError, match=r"\[\[\["):
        chat.parse_chat_stream_event(data, S)


# -- NaN and Infinity ------------------------------------------------------------------------------------------


def test_nan_and_infinity_in_a_completion_answer() -> None:
    body = b'{"choices": [{"text": "x", "logprobs": {"token_logprobs": [NaN, -Infinity, Infinity]}}]}'
    result = completion.parse_response(body, S)
    assert result.text == "x"
    nan, minus, plus = result.logprobs["token_logprobs"]
    assert math.isnan(nan)
    assert (minus, plus) == (-math.inf, math.inf)


@pytest.mark.parametrize(
    ("name", "api_type", "body", "text"),
    [
        ("gpt2", D, b'[{"0": "x", "score": NaN}]', "x"),
        ("hf", D, b'[{"generated_text": "x", "score": Infinity}]', "x"),
        ("dolly", D, b'["x", NaN]', "x"),
        ("openai", D, b'[{"0": "x", "score": -Infinity}]', "x"),
        ("openai-chat", D, b'{"output": "x", "score": NaN}', "x"),
        (
            "openai-chat",
            S,
            b'{"choices": [{"message": {"content": "x"}, "logprobs": {"content": [{"logprob": NaN}]}}]}',
            "x",
        ),
        ("mistral-chat", S, b'{"choices": [{"message": {"content": "x"}}], "usage": {"score": Infinity}}', "x"),
    ],
)
def test_nan_and_infinity_in_answers(name: str, api_type: ApiType, body: bytes, text: str) -> None:
    assert get_formatter(name).parse_response(body, api_type).text == text


def test_nan_and_infinity_in_stream_chunks() -> None:
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{"content":"a"},"logprobs":NaN}]}', S) == ChatChunk("a")
    assert completion.parse_stream_event('{"choices":[{"text":"b","logprobs":{"x":Infinity}}]}', S) == (
        CompletionChunk("b")
    )


def test_the_hint_reads_nan_answers_too() -> None:
    with pytest.raises(ResponseFormatError) as info:
        get_formatter("hf").parse_response(b'[{"0": "x", "score": NaN}]', D)
    assert "gpt2 schema" in info.value.hint
