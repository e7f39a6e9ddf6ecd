"""Reading the ``data:`` payloads of serverless streams: completion and chat chunks, usage, tool call fragments."""

from __future__ import annotations

import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError, ResponseFormatError, StreamError
from azml_client._formatters import (
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    MistralChatContentFormatter,
)
from azml_client._types import ChatChunk, CompletionChunk, ToolCallDelta, Usage

S, D = ApiType.serverless, ApiType.dedicated
chat = CustomOpenAIChatContentFormatter()
completion = CustomOpenAIContentFormatter()


def test_completion_chunks() -> None:
    assert completion.parse_stream_event('{"choices":[{"text":"Hel","finish_reason":null}]}', S) == CompletionChunk(
        "Hel"
    )
    assert completion.parse_stream_event('{"choices":[{"text":"","finish_reason":"stop","index":0}]}', S) == (
        CompletionChunk("", "stop")
    )
    assert completion.parse_stream_event('{"choices":[{"text":"b","index":1}]}', S) == CompletionChunk("b", index=1)
    usage = completion.parse_stream_event(
        '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}', S
    )
    assert usage == CompletionChunk(usage=Usage(3, 5, 8))
    chunk = completion.parse_stream_event(
        '{"choices":[{"text":"x"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}', S
    )
    assert chunk == CompletionChunk("x", usage=Usage(1, 1, 2))
    assert chunk is not None
    assert chunk.raw == {
        "choices": [{"text": "x"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }


def test_completion_events_without_content_are_none() -> None:
    assert completion.parse_stream_event('{"choices":[]}', S) is None
    assert completion.parse_stream_event('{"choices":[{"text":""}]}', S) is None
    assert completion.parse_stream_event('{"choices":[],"usage":null}', S) is None
    assert completion.parse_stream_event("[DONE]", S) is None


def test_chat_chunks() -> None:
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{"role":"assistant","content":""}}]}', S) == (
        ChatChunk(role="assistant")
    )
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}', S) == (
        ChatChunk("Hi")
    )
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{},"finish_reason":"stop"}]}', S) == (
        ChatChunk(finish_reason="stop")
    )
    assert chat.parse_chat_stream_event('{"choices":[{"finish_reason":"length"}]}', S) == ChatChunk(
        finish_reason="length"
    )
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{"content":"x"},"index":2}]}', S) == ChatChunk(
        "x", index=2
    )
    assert chat.parse_chat_stream_event('{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}', S) == (
        ChatChunk(usage=Usage(2, 3, 5))
    )
    assert MistralChatContentFormatter().parse_chat_stream_event('{"choices":[{"delta":{"content":"M"}}]}', S) == (
        ChatChunk("M")
    )


def test_chat_events_without_content_are_none() -> None:
    assert chat.parse_chat_stream_event('{"choices":[]}', S) is None  # e.g. Azure's prompt_filter_results chunk
    assert chat.parse_chat_stream_event('{"choices":[],"prompt_filter_results":[]}', S) is None
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{}}]}', S) is None
    assert chat.parse_chat_stream_event('{"choices":[{"delta":{"content":null}}]}', S) is None
    assert chat.parse_chat_stream_event("[DONE]", S) is None


def test_chat_tool_call_fragments() -> None:
    first = chat.parse_chat_stream_event(
        '{"choices":[{"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1",'
        '"type":"function","function":{"name":"weather","arguments":""}}]}}]}',
        S,
    )
    assert first == ChatChunk(role="assistant", tool_call_deltas=(ToolCallDelta(0, "call_1", "weather", ""),))
    more = chat.parse_chat_stream_event(
        '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}}]}', S
    )
    assert more == ChatChunk(tool_call_deltas=(ToolCallDelta(0, None, None, '{"city":'),))
    second = chat.parse_chat_stream_event('{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_2"}]}}]}', S)
    assert second == ChatChunk(tool_call_deltas=(ToolCallDelta(1, "call_2", None, ""),))


def test_the_completion_view_of_a_chat_stream() -> None:
    assert chat.parse_stream_event('{"choices":[{"delta":{"content":"Hi"}}]}', S) == CompletionChunk("Hi")
    assert chat.parse_stream_event('{"choices":[]}', S) is None


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        ("", "empty"),
        ("not json", "not JSON"),
        ("<html>", "HTML"),
        ("[1, 2]", "list of numbers"),
        ('"text"', "bare JSON string"),
        ('{"foo": 1}', "JSON object with keys ['foo']"),
        ('{"choices": {}}', "JSON object"),
        ('{"choices": ["x"]}', "unknown shape"),
    ],
)
def test_bad_events_raise_for_both_parsers(data: str, hint: str) -> None:
    for parse in (chat.parse_chat_stream_event, completion.parse_stream_event):
        with pytest.raises(ResponseFormatError) as info:
            parse(data, S)
        assert hint in info.value.hint
        assert info.value.formatter in {"openai", "openai-chat"}
        assert f"formatter={info.value.formatter!r}" in str(info.value)


def test_error_objects_mid_stream_are_the_servers_errors() -> None:
    # Until issue 12 this was a ResponseFormatError (hint "content filtered"), which blames the formatter.
    data = '{"error": {"message": "content filtered", "code": "content_filter"}}'
    for parse in (chat.parse_chat_stream_event, completion.parse_stream_event):
        with pytest.raises(StreamError, match="content filtered") as info:
            parse(data, S)
        assert not isinstance(info.value, ResponseFormatError)
        assert info.value.code == "content_filter"
        assert info.value.data == data


def test_a_chat_chunk_given_to_the_completion_parser_and_the_reverse() -> None:
    with pytest.raises(ResponseFormatError, match="chat chunk, not a completion chunk") as info:
        completion.parse_stream_event('{"choices":[{"delta":{"content":"x"}}]}', S)
    assert "use formatter 'openai-chat'" in info.value.hint
    with pytest.raises(ResponseFormatError, match="completion chunk, not a chat chunk") as info:
        chat.parse_chat_stream_event('{"choices":[{"text":"x"}]}', S)
    assert "use formatter 'openai'" in info.value.hint
    with pytest.raises(ResponseFormatError, match="whole chat answer"):
        chat.parse_chat_stream_event('{"choices":[{"message":{"content":"x"}}]}', S)


@pytest.mark.parametrize(
    "data",
    [
        '{"choices":[{"delta":"x"}]}',
        '{"choices":[{"delta":{"content":5}}]}',
        '{"choices":[{"delta":{"role":1}}]}',
        '{"choices":[{"delta":{"tool_calls":{}}}]}',
        '{"choices":[{"delta":{"tool_calls":["x"]}}]}',
        '{"choices":[{"delta":{"tool_calls":[{"function":"f"}]}}]}',
        '{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":1}}]}}]}',
        '{"choices":[{"delta":{},"finish_reason":1}]}',
    ],
)
def test_malformed_chat_chunks(data: str) -> None:
    with pytest.raises(ResponseFormatError, match="formatter='openai-chat'"):
        chat.parse_chat_stream_event(data, S)


def test_surrogates_in_event_data_are_a_format_error() -> None:
    with pytest.raises(ResponseFormatError):
        chat.parse_chat_stream_event('"\ud800"', S)


def test_dedicated_streams_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="only serverless endpoints stream"):
        chat.parse_chat_stream_event('{"choices":[]}', D)
    with pytest.raises(ConfigurationError, match="only serverless endpoints stream"):
        completion.parse_stream_event('{"choices":[]}', D)
