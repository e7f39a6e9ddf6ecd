"""One reading of each wire fact, in ``_types``: message content text, a tool call, a usage record."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError, ResponseFormatError
from azml_client._formatters import CustomOpenAIChatContentFormatter, MistralChatContentFormatter
from azml_client._types import ChatResult, Message, ToolCall, Usage, content_text, to_messages

S, D = ApiType.serverless, ApiType.dedicated

PARTS: list[Any] = [
    {"type": "text", "text": "a"},
    "b",  # LangChain allows bare strings in a content list
    {"text": "c"},  # a part without a type is a text part
    {"type": "text", "text": None},  # {"text": null} carries no text
    {"type": "image_url", "image_url": {"url": "data:,"}},
    {"type": "thinking", "thinking": "hmm", "text": "not the answer"},
    {"type": "tool_use", "id": "t", "name": "f", "input": {}, "text": "not the answer"},
    {"type": "refusal", "refusal": "no"},
    5,
]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (None, ""),
        ("plain", "plain"),
        ("", ""),
        ([], ""),
        (PARTS, "abc"),
        ((("x"),), "x"),
        (42, ""),
    ],
)
def test_content_text(content: Any, text: str) -> None:
    assert content_text(content) == text


def test_every_reader_of_content_text_agrees() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": PARTS}, "finish_reason": "stop"}]}
    formatter = CustomOpenAIChatContentFormatter()
    body = orjson.dumps(answer)
    assert formatter.parse_chat_response(body, S).content == "abc"  # ChatResult.content
    assert formatter.parse_response(body, S).text == "abc"  # the completion view of a chat answer
    assert formatter.parse_response(body, S).choices[0].text == "abc"
    assert ChatResult(Message("assistant", PARTS)).content == "abc"
    # Mistral folds a system message's text into the first user message.
    wire = orjson.loads(
        MistralChatContentFormatter().build_chat_request([Message("system", PARTS), Message("user", "q")], {}, S)
    )
    assert wire["messages"] == [{"role": "user", "content": "abc\n\nq"}]


# -- tool calls --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "call"),
    [
        (
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
            ToolCall("c1", "f", '{"a":1}'),
        ),
        ({"function": {"name": "f"}}, ToolCall("", "f", "{}")),
        ({"id": None, "function": {"name": "f", "arguments": None}}, ToolCall("", "f", "{}")),
        ({"id": 7, "function": {"name": "f", "arguments": {"a": [1, 2]}}}, ToolCall("7", "f", '{"a":[1,2]}')),
        ({"id": "c", "type": None, "function": {"name": "f", "arguments": "x"}}, ToolCall("c", "f", "x")),
    ],
)
def test_tool_call_from_dict(raw: dict[str, Any], call: ToolCall) -> None:
    assert ToolCall.from_dict(raw) == call
    assert ToolCall.from_dict(call.to_dict()) == call


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("x", "must be an object"),
        ({"id": "c"}, "no 'function' object"),
        ({"function": "f"}, "no 'function' object"),
        ({"function": {"arguments": "{}"}}, "no 'name' string"),
        ({"function": {"name": 5}}, "no 'name' string"),
        ({"id": ["c"], "function": {"name": "f"}}, "'id' must be a string"),
        ({"function": {"name": "f", "arguments": {"when": object()}}}, "cannot be encoded as JSON"),
    ],
)
def test_malformed_tool_calls(raw: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        ToolCall.from_dict(raw, where="call 3")
    with pytest.raises(ConfigurationError, match=r"^call 3 "):
        ToolCall.from_dict(raw, where="call 3")
    with pytest.raises(ConfigurationError, match=problem):
        to_messages([{"role": "assistant", "content": None, "tool_calls": [raw]}])


@pytest.mark.parametrize(
    "raw",
    [
        {"id": "c"},
        {"function": {"arguments": "{}"}},
        {"id": ["c"], "function": {"name": "f"}},
    ],
)
def test_answers_and_message_dicts_read_tool_calls_alike(raw: Any) -> None:
    """A tool call that Message.from_dict refuses is a malformed answer too (and the reverse holds below)."""
    answer = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [raw]}}]}
    with pytest.raises(ResponseFormatError, match="tool call 0"):
        CustomOpenAIChatContentFormatter().parse_chat_response(orjson.dumps(answer), S)


def test_an_answers_tool_calls_are_those_of_its_message_dict() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": 3, "function": {"name": "f", "arguments": {"x": 1}}}, {"function": {"name": "g"}}],
    }
    answer = {"choices": [{"message": message, "finish_reason": "tool_calls"}]}
    parsed = CustomOpenAIChatContentFormatter().parse_chat_response(orjson.dumps(answer), S).message
    assert parsed == Message.from_dict(message)
    assert parsed.tool_calls == (ToolCall("3", "f", '{"x":1}'), ToolCall("", "g", "{}"))


# -- usage -------------------------------------------------------------------------------------------------------


def test_usage_to_dict_is_the_wire_form() -> None:
    assert Usage(1, 2, 3).to_dict() == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert Usage(4).to_dict() == {"prompt_tokens": 4, "completion_tokens": None, "total_tokens": None}
    for usage in (Usage(1, 2, 3), Usage(4), Usage()):
        assert Usage.from_dict(usage.to_dict()) == usage


def test_refusal_goes_back_out() -> None:
    message = Message("assistant", None, refusal="I can't help with that.")
    assert message.to_dict() == {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    assert Message.from_dict(message.to_dict()) == message
    assert "refusal" not in Message("assistant", "x").to_dict()
