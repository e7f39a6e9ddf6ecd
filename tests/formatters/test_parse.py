"""Reading answers: every shape the built-ins accept, and a helpful ResponseFormatError for every other body."""

from __future__ import annotations

import orjson
import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ResponseFormatError
from azml_client._formatters import (
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    DollyContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    MistralChatContentFormatter,
    get_formatter,
)
from azml_client._types import Completion, CompletionChoice, Message, ToolCall, Usage

D, S = ApiType.dedicated, ApiType.serverless


# -- completion: what is accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "api_type", "body"),
    [
        ("gpt2", D, b'[{"0": "Hello"}]'),
        ("hf", D, b'[{"0": {"generated_text": "Hello"}}]'),
        ("hf", D, b'[{"generated_text": "Hello"}]'),
        ("dolly", D, b'["Hello"]'),
        ("openai", D, b'[{"0": "Hello"}]'),
    ],
)
def test_dedicated_completion_answers(name: str, api_type: ApiType, body: bytes) -> None:
    formatter = get_formatter(name)
    completion = formatter.parse_response(body, api_type)
    assert completion == Completion(text="Hello", choices=(CompletionChoice("Hello"),))
    assert completion.raw == orjson.loads(body)
    assert formatter.format_response_payload(body, api_type) == "Hello"


def test_text_is_kept_as_sent() -> None:
    assert GPT2ContentFormatter().parse_response(b'[{"0": "  spaced\\n"}]', D).text == "  spaced\n"


OPENAI_COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "phi",
    "choices": [
        {"text": " first", "index": 0, "finish_reason": "stop", "logprobs": {"tokens": [" first"]}},
        {"text": " second", "index": 1, "finish_reason": "length", "logprobs": None},
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def test_serverless_completion_keeps_every_choice_usage_and_logprobs() -> None:
    completion = CustomOpenAIContentFormatter().parse_response(orjson.dumps(OPENAI_COMPLETION), S)
    assert completion.text == " first"
    assert completion.finish_reason == "stop"
    assert completion.logprobs == {"tokens": [" first"]}
    assert completion.usage == Usage(3, 4, 7)
    assert completion.choices == (
        CompletionChoice(" first", "stop", 0, {"tokens": [" first"]}),
        CompletionChoice(" second", "length", 1, None),
    )
    assert completion.raw == OPENAI_COMPLETION


def test_serverless_completion_without_usage() -> None:
    completion = CustomOpenAIContentFormatter().parse_response(b'{"choices": [{"text": "x"}]}', S)
    assert completion.usage is None
    assert completion.finish_reason is None
    assert completion.choices == (CompletionChoice("x"),)


def test_serverless_completion_with_no_choices_but_usage() -> None:
    completion = CustomOpenAIContentFormatter().parse_response(
        b'{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}', S
    )
    assert completion.text == ""
    assert completion.usage == Usage(1, 0, 1)


# -- chat: what is accepted ------------------------------------------------------------------------------------

OPENAI_CHAT = {
    "id": "chatcmpl-1",
    "model": "mistral-large",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "length"},
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}


@pytest.mark.parametrize("cls", [CustomOpenAIChatContentFormatter, MistralChatContentFormatter])
def test_serverless_chat_keeps_every_choice(cls: type[CustomOpenAIChatContentFormatter]) -> None:
    result = cls().parse_chat_response(orjson.dumps(OPENAI_CHAT), S)
    assert result.content == "Hello!"
    assert result.message == Message("assistant", "Hello!")
    assert result.finish_reason == "stop"
    assert result.usage == Usage(9, 2, 11)
    assert result.model == "mistral-large"
    assert [choice.message.content for choice in result.choices] == ["Hello!", "Hi!"]
    assert [choice.finish_reason for choice in result.choices] == ["stop", "length"]
    assert [choice.index for choice in result.choices] == [0, 1]
    assert result.raw == OPENAI_CHAT
    assert cls().format_response_payload(orjson.dumps(OPENAI_CHAT), S) == "Hello!"


def test_serverless_chat_tool_calls_are_parsed() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": {"tz": "CET"}}},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    result = CustomOpenAIChatContentFormatter().parse_chat_response(orjson.dumps(body), S)
    assert result.content == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (
        ToolCall("call_1", "weather", '{"city":"Paris"}'),
        ToolCall("call_2", "time", '{"tz":"CET"}'),
    )


def test_tool_calls_round_trip() -> None:
    formatter = CustomOpenAIChatContentFormatter()
    answer = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    result = formatter.parse_chat_response(orjson.dumps(answer), S)
    follow_up = [Message("user", "go"), result.message, Message("tool", "done", tool_call_id="c1")]
    body = orjson.loads(formatter.build_chat_request(follow_up, {}, S))
    assert body["messages"][1] == answer["choices"][0]["message"]
    assert body["messages"][2] == {"role": "tool", "content": "done", "tool_call_id": "c1"}


def test_serverless_chat_multimodal_answer_content() -> None:
    body = (
        b'{"choices": [{"message": {"role": "assistant", '
        b'"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]}'
    )
    assert CustomOpenAIChatContentFormatter().parse_chat_response(body, S).content == "ab"


@pytest.mark.parametrize("cls", [CustomOpenAIChatContentFormatter, MistralChatContentFormatter])
def test_dedicated_chat_answer(cls: type[CustomOpenAIChatContentFormatter]) -> None:
    result = cls().parse_chat_response(b'{"output": " Hello"}', D)
    assert result.content == " Hello"
    assert result.message == Message("assistant", " Hello")
    assert len(result.choices) == 1
    # a dedicated deployment answering in the OpenAI chat schema is read too
    assert cls().parse_chat_response(orjson.dumps(OPENAI_CHAT), D).content == "Hello!"


def test_serverless_chat_with_no_choices_but_usage() -> None:
    result = CustomOpenAIChatContentFormatter().parse_chat_response(
        b'{"choices": [], "usage": {"prompt_tokens": 2}}', S
    )
    assert result.content == ""
    assert result.usage == Usage(2, None, None)


# -- errors ----------------------------------------------------------------------------------------------------


def _error(call: object, *args: object, **kwargs: object) -> ResponseFormatError:
    with pytest.raises(ResponseFormatError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    error = info.value
    assert error.__cause__ is None or not isinstance(error.__cause__, ResponseFormatError)
    return error


CHAT_ANSWER = orjson.dumps(OPENAI_CHAT)
COMPLETION_ANSWER = orjson.dumps(OPENAI_COMPLETION)
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    ("name", "api_type", "body", "hint"),
    [
        ("gpt2", D, b"", "the body is empty"),
        ("gpt2", D, b"   ", "the body is empty"),
        ("gpt2", D, b"not json", "not JSON"),
        ("gpt2", D, HTML, "HTML"),
        ("gpt2", D, b"data: {}\n\n", "server-sent event"),
        ("gpt2", D, CHAT_ANSWER, "this looks like an OpenAI chat answer; use formatter 'openai-chat'"),
        ("gpt2", D, COMPLETION_ANSWER, "OpenAI completion answer; use formatter 'openai' with api_type 'serverless'"),
        ("gpt2", D, b'["text"]', "dolly schema"),
        ("gpt2", D, b'[{"generated_text": "x"}]', "use formatter 'hf'"),
        ("gpt2", D, b'[{"summary_text": "x"}]', "summarization"),
        ("gpt2", D, b"[]", "empty JSON list"),
        ("gpt2", D, b'{"a": 1}', "JSON object with keys ['a']"),
        ("gpt2", D, b'[{"0": 5}]', "JSON list of objects"),
        ("gpt2", D, b'"just text"', "bare JSON string"),
        ("gpt2", D, b"42", "bare JSON number"),
        ("gpt2", D, b'{"error": {"message": "model overloaded"}}', "model overloaded"),
        ("gpt2", D, b'{"message": "An internal error occurred"}', "An internal error occurred"),
        ("hf", D, b'[{"0": "x"}]', 'this looks like the gpt2 schema `[{"0": ...}]`'),
        ("hf", D, b'[{"0": {"other": "x"}}]', "JSON list of objects"),
        ("dolly", D, b'[{"0": "x"}]', "use formatter 'gpt2' or 'openai'"),
        ("dolly", D, b"[1]", "list of numbers"),
        ("openai", D, CHAT_ANSWER, "use formatter 'openai-chat'"),
        ("openai", D, COMPLETION_ANSWER, "set api_type 'serverless'"),
        ("openai", S, CHAT_ANSWER, "this looks like an OpenAI chat answer; use formatter 'openai-chat'"),
        ("openai", S, b'[{"0": "x"}]', "gpt2 schema"),
        ("openai", S, b'[{"0": "x"}]', "set api_type 'dedicated'"),
        ("openai", S, b'{"choices": []}', "no choices"),
        ("openai", S, b'{"choices": [{"text": 5}]}', "malformed"),
        ("openai", S, b'{"choices": {"text": "x"}}', "JSON object with keys ['choices']"),
        ("openai", S, b'{"choices": [{"text": "x", "finish_reason": 3}]}', "malformed"),
        ("openai", S, b'{"choices": ["x"]}', "unknown shape"),
        ("openai", S, b"[]", "empty JSON list"),
        ("openai", S, HTML, "HTML"),
        ("openai", S, b'{"error": {"code": "429", "message": "Rate limit"}}', "Rate limit"),
    ],
)
def test_completion_errors_name_formatter_status_body_and_hint(
    name: str, api_type: ApiType, body: bytes, hint: str
) -> None:
    formatter = get_formatter(name)
    error = _error(formatter.parse_response, body, api_type, status=201)
    assert error.formatter == name
    assert error.status == 201
    assert error.body == body
    assert hint in error.hint
    message = str(error)
    assert f"formatter={name!r}" in message
    assert "status=201" in message
    assert "hint: " in message
    if body.strip():
        assert repr(body.decode()[:20])[1:-1][:10] in message
    # the seed's API raises the same error
    _error(formatter.format_response_payload, body, api_type)


@pytest.mark.parametrize(
    ("cls", "api_type", "body", "hint"),
    [
        (CustomOpenAIChatContentFormatter, S, b"", "the body is empty"),
        (CustomOpenAIChatContentFormatter, S, HTML, "HTML"),
        (CustomOpenAIChatContentFormatter, S, COMPLETION_ANSWER, "use formatter 'openai'"),
        (CustomOpenAIChatContentFormatter, S, b'[{"0": "x"}]', "gpt2 schema"),
        (CustomOpenAIChatContentFormatter, S, b'{"choices": []}', "no choices"),
        (
            CustomOpenAIChatContentFormatter,
            S,
            b'{"choices": [{"message": {"role": "assistant", "content": null}}]}',
            "malformed",
        ),
        (
            CustomOpenAIChatContentFormatter,
            S,
            b'{"choices": [{"message": {"role": "robot", "content": "x"}}]}',
            "malformed",
        ),
        (CustomOpenAIChatContentFormatter, S, b'{"choices": [{"message": {"content": 5}}]}', "malformed"),
        (CustomOpenAIChatContentFormatter, S, b'{"choices": [{"message": "hi"}]}', "malformed"),
        (CustomOpenAIChatContentFormatter, S, b'{"choices": [{"delta": {"content": "hi"}}]}', "stream chunk"),
        (
            CustomOpenAIChatContentFormatter,
            S,
            b'{"choices": [{"message": {"content": null, "tool_calls": [{"id": "x"}]}}]}',
            "malformed",
        ),
        (
            CustomOpenAIChatContentFormatter,
            S,
            b'{"choices": [{"message": {"content": null, "tool_calls": {"id": "x"}}}]}',
            "malformed",
        ),
        (CustomOpenAIChatContentFormatter, S, b'{"output": "x"}', "set api_type 'dedicated'"),
        (CustomOpenAIChatContentFormatter, D, b'[{"0": "x"}]', "use formatter 'gpt2' or 'openai'"),
        (CustomOpenAIChatContentFormatter, D, b'{"output": 5}', "malformed"),
        (CustomOpenAIChatContentFormatter, D, b'["x"]', "dolly"),
        (CustomOpenAIChatContentFormatter, D, b"null", "bare JSON null"),
        (MistralChatContentFormatter, S, COMPLETION_ANSWER, "use formatter 'openai'"),
    ],
)
def test_chat_errors_name_formatter_status_body_and_hint(
    cls: type[CustomOpenAIChatContentFormatter], api_type: ApiType, body: bytes, hint: str
) -> None:
    formatter = cls()
    error = _error(formatter.parse_chat_response, body, api_type, status=200)
    assert error.formatter == formatter.name
    assert error.status == 200
    assert hint in error.hint, error.hint
    assert f"formatter={formatter.name!r}" in str(error)
    _error(formatter.parse_response, body, api_type)
    _error(formatter.format_response_payload, body, api_type)


def test_not_json_error_is_chained_to_the_decode_error() -> None:
    error = _error(GPT2ContentFormatter().parse_response, b"{oops", D)
    assert isinstance(error.__cause__, orjson.JSONDecodeError)
    assert "not valid JSON" in str(error)


def test_long_bodies_are_cut_in_the_message() -> None:
    body = b"<html>" + b"x" * 10_000
    error = _error(HFContentFormatter().parse_response, body, D, status=200)
    assert error.body is not None
    assert len(error.body) <= 4096
    assert len(str(error)) < 1000


def test_formatters_read_their_own_shape_hint_says_malformed() -> None:
    error = _error(DollyContentFormatter().parse_response, b"[]", D)
    assert "dolly answer" in str(error)
    error = _error(CustomOpenAIContentFormatter().parse_response, b'{"choices": [{"text": null}]}', S)
    assert "which this formatter reads, but the answer is malformed" in error.hint
