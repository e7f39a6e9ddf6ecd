"""``AzureMLChatOnlineEndpoint``: messages, usage and metadata, streaming, tools, structured output, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from lc_emulator import KEY, EmulatorThread
from pydantic import BaseModel, Field

import azml_client
from azml_client.langchain import AzureMLChatOnlineEndpoint, MistralChatContentFormatter, load_llm
from azml_client.testing import Fault


class Joke(BaseModel):
    """A joke."""

    setup: str = Field(description="the question")
    punchline: str = Field(description="the answer")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Shout a text."""
    return text.upper()


@pytest.fixture
def make_chat(ep: EmulatorThread) -> Iterator[Any]:
    """Build serverless chat models on the emulator; each is closed after the test."""
    made: list[AzureMLChatOnlineEndpoint] = []

    def make(**options: Any) -> AzureMLChatOnlineEndpoint:
        settings: dict[str, Any] = {
            "endpoint_url": ep.chat_url,
            "endpoint_api_type": "serverless",
            "endpoint_api_key": KEY,
            **options,
        }
        chat = AzureMLChatOnlineEndpoint(**settings)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.close()


def canned(message: dict[str, Any], finish_reason: str = "stop") -> Fault:
    """A one-off serverless chat answer with ``message``."""
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "model": "canned",
    }
    return Fault.malformed(orjson.dumps(body), content_type="application/json")


# ---------------------------------------------------------------------------------------------- messages


def test_messages_go_out_in_the_openai_form(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    history: list[BaseMessage] = [
        SystemMessage("be brief"),
        HumanMessage("what is 1 + 2?", name="ann"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "call_9", "type": "tool_call"}]),
        ToolMessage("3", tool_call_id="call_9", name="add"),
    ]
    answer = chat.invoke(history)
    assert answer.content == "tool result: 3"
    assert ep.last.json["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is 1 + 2?", "name": "ann"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
            ],
        },
        {"role": "tool", "content": "3", "name": "add", "tool_call_id": "call_9"},
    ]


def test_provider_blocks_are_dropped_from_assistant_messages(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    thinking = AIMessage([{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "Hi."}])
    chat.invoke([HumanMessage("hello"), thinking, HumanMessage("bye")])
    assert ep.last.json["messages"][1] == {"role": "assistant", "content": "Hi."}


def test_multimodal_content_passes_through(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    message = HumanMessage(
        [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image", "base64": "AAAA", "mime_type": "image/png"},
        ]
    )
    assert chat.invoke([message]).content == "echo: what is this?"
    assert ep.last.json["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def test_a_completion_formatter_is_refused_with_a_hint(ep: EmulatorThread) -> None:
    from azml_client.langchain import LlamaContentFormatter

    with (
        pytest.warns(DeprecationWarning, match="LlamaContentFormatter"),
        pytest.raises(azml_client.ConfigurationError, match="CustomOpenAIChatContentFormatter"),
    ):
        AzureMLChatOnlineEndpoint(endpoint_url=ep.score_url, content_formatter=LlamaContentFormatter)


def test_unknown_roles_are_configuration_errors(make_chat: Any) -> None:
    with pytest.raises(azml_client.ConfigurationError, match=r"message 0 .*unknown message role 'critic'"):
        make_chat().invoke([ChatMessage(role="critic", content="meh")])


# ---------------------------------------------------------------------------------------------- answers


def test_usage_and_response_metadata(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat(deployment_name="blue")
    answer = chat.invoke("one two", max_tokens=1)
    assert answer.content == "echo:"
    assert answer.usage_metadata == {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3}
    metadata = answer.response_metadata
    assert metadata["finish_reason"] == "length"
    assert metadata["model_name"] == "azml-emulator"
    assert metadata["deployment"] == "blue"
    assert metadata["request_id"]
    assert ep.last.deployment == "blue"


def test_dedicated_chat_reports_the_deployment_that_answered(ep: EmulatorThread) -> None:
    chat = AzureMLChatOnlineEndpoint(endpoint_url=ep.score_url, endpoint_api_key=KEY, deployment_name="openai-chat")
    answer = chat.invoke([SystemMessage("s"), HumanMessage("hi")], temperature=0.2)
    assert answer.content == "echo: hi"
    assert answer.usage_metadata is None
    assert answer.response_metadata["deployment"] == answer.response_metadata["model_name"] == "openai-chat"
    assert ep.last.json["input_data"]["parameters"] == {"temperature": 0.2}
    chunks = list(chat.stream("hi"))  # a dedicated endpoint does not stream: one chunk
    assert "".join(str(chunk.content) for chunk in chunks) == "echo: hi"
    assert "stream" not in ep.last.json["input_data"]["parameters"]
    chat.close()


def test_mistral_folds_the_system_message(ep: EmulatorThread) -> None:
    chat = AzureMLChatOnlineEndpoint(
        endpoint_url=ep.score_url,
        endpoint_api_key=KEY,
        deployment_name="mistral-chat",
        content_formatter=MistralChatContentFormatter(),
    )
    assert chat.invoke([SystemMessage("be kind"), HumanMessage("hi")]).content == "echo: be kind\n\nhi"
    chat.close()


def test_every_choice_is_a_generation(make_chat: Any) -> None:
    result = make_chat().generate([[HumanMessage("hi")]], n=2)
    assert [g.text for g in result.generations[0]] == ["echo: hi", "echo: hi (1)"]


# ---------------------------------------------------------------------------------------------- streaming


def test_stream_usage_only_when_asked(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    chunks = list(chat.stream("one two"))
    assert "stream_options" not in ep.last.json
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert isinstance(full, AIMessageChunk)
    assert full.content == "echo: one two"
    assert full.usage_metadata is None
    assert full.response_metadata["finish_reason"] == "stop"
    assert full.response_metadata["model_name"] == "azml-emulator"

    chunks = list(chat.stream("one two", stream_usage=True))
    assert ep.last.json["stream_options"] == {"include_usage": True}
    assert sum(1 for chunk in chunks if chunk.usage_metadata) == 1
    usage = next(chunk.usage_metadata for chunk in chunks if chunk.usage_metadata)
    assert usage == {"input_tokens": 2, "output_tokens": 3, "total_tokens": 5}


async def test_astream_with_usage(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat(stream_usage=True, model_kwargs={"temperature": 0.1})
    pieces = [chunk async for chunk in chat.astream("a b c", stop=["b"])]
    assert "".join(str(piece.content) for piece in pieces) == "echo: a "
    assert any(piece.usage_metadata for piece in pieces)
    assert ep.last.json == {
        "messages": [{"role": "user", "content": "a b c"}],
        "temperature": 0.1,
        "stop": ["b"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    await chat.aclose()


def test_streaming_field_streams_invoke(make_chat: Any, ep: EmulatorThread) -> None:
    answer = make_chat(streaming=True).invoke("hi")
    assert answer.content == "echo: hi"
    assert ep.last.json["stream"] is True


# ---------------------------------------------------------------------------------------------- tools


def test_bind_tools_and_tool_calls(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    answer = chat.bind_tools([add, shout], tool_choice="shout").invoke("shout hello")
    assert answer.tool_calls == [{"name": "shout", "args": {"text": "x"}, "id": "call_1", "type": "tool_call"}]
    assert answer.response_metadata["finish_reason"] == "tool_calls"
    sent = ep.last.json
    assert [t["function"]["name"] for t in sent["tools"]] == ["add", "shout"]
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "shout"}}

    chat.bind_tools([add], tool_choice="any").invoke("add")
    assert ep.last.json["tool_choice"] == "required"
    chat.bind_tools([add]).invoke("add")
    assert "tool_choice" not in ep.last.json
    with pytest.raises(azml_client.ConfigurationError, match="neither"):
        chat.bind_tools([add], tool_choice="subtract")


def test_tool_round_trip(make_chat: Any) -> None:
    llm_with_tools = make_chat().bind_tools([add])
    question = HumanMessage("what is 3 + 3?")
    call = llm_with_tools.invoke([question])
    assert isinstance(call, AIMessage)
    result = add.invoke(call.tool_calls[0])
    assert isinstance(result, ToolMessage)
    assert result.content == "6"
    answer = llm_with_tools.invoke([question, call, result])
    assert answer.content == "tool result: 6"
    assert not answer.tool_calls


def test_streamed_tool_calls(make_chat: Any) -> None:
    chunks = list(make_chat().bind_tools([add]).stream("add"))
    assert any(chunk.tool_call_chunks for chunk in chunks)
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert isinstance(full, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("add", {"a": 3, "b": 3})]


def test_invalid_tool_call_arguments(make_chat: Any, ep: EmulatorThread) -> None:
    bad_call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{not json"}}
    ep.enqueue(canned({"content": None, "tool_calls": [bad_call]}, "tool_calls"))
    answer = make_chat().bind_tools([add]).invoke("add")
    assert answer.tool_calls == []
    assert answer.invalid_tool_calls[0]["name"] == "add"
    assert answer.invalid_tool_calls[0]["args"] == "{not json"


# ---------------------------------------------------------------------------------------------- structured output


def test_structured_output_by_function_calling(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    assert chat.with_structured_output(Joke).invoke("a joke") == Joke(setup="x", punchline="x")
    assert ep.last.json["tool_choice"] == {"type": "function", "function": {"name": "Joke"}}
    assert chat.with_structured_output(Joke.model_json_schema()).invoke("a joke") == {"setup": "x", "punchline": "x"}
    raw = chat.with_structured_output(Joke, include_raw=True).invoke("a joke")
    assert isinstance(raw, dict)
    assert isinstance(raw["raw"], AIMessage)
    assert raw["parsed"] == Joke(setup="x", punchline="x")
    assert raw["parsing_error"] is None


def test_structured_output_by_json_mode(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat()
    ep.enqueue(canned({"content": '{"setup": "why?", "punchline": "because"}'}))
    joke = chat.with_structured_output(Joke, method="json_mode").invoke("a joke, as JSON")
    assert joke == Joke(setup="why?", punchline="because")
    assert ep.last.json["response_format"] == {"type": "json_object"}
    assert "tools" not in ep.last.json
    # The emulator answers echo text, not JSON: with include_raw the parsing error is returned.
    raw = chat.with_structured_output(method="json_mode", include_raw=True).invoke("a joke")
    assert isinstance(raw, dict)
    assert raw["parsed"] is None
    assert raw["parsing_error"] is not None


def test_structured_output_by_json_schema(make_chat: Any, ep: EmulatorThread) -> None:
    ep.enqueue(canned({"content": '{"setup": "a", "punchline": "b"}'}))
    chat = make_chat()
    result = chat.with_structured_output(Joke.model_json_schema(), method="json_schema", strict=True).invoke("j")
    assert result == {"setup": "a", "punchline": "b"}
    response_format = ep.last.json["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Joke"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == ["setup", "punchline"]
    with pytest.raises(ValueError, match="unknown method"):
        chat.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- errors, concurrency


def test_errors_are_typed(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat(max_retries=0)
    ep.enqueue(Fault.status(429, headers={"retry-after": "1"}))
    with pytest.raises(azml_client.RateLimitError) as caught:
        chat.invoke("hi")
    assert caught.value.retry_after == 1
    with pytest.raises(azml_client.AuthenticationError):
        make_chat(endpoint_api_key="wrong").invoke("hi")
    ep.enqueue(Fault.status(503))
    with pytest.raises(azml_client.ServerError):
        list(chat.stream("hi"))


def test_max_retries_works_for_streams(make_chat: Any, ep: EmulatorThread) -> None:
    chat = make_chat(max_retries=1)
    ep.enqueue(Fault.status(503, headers={"retry-after-ms": "1"}))
    assert "".join(str(chunk.content) for chunk in chat.stream("hi")) == "echo: hi"
    assert len(ep.requests) == 2


async def test_abatch_is_concurrent(ep: EmulatorThread) -> None:
    chat = AzureMLChatOnlineEndpoint(endpoint_url=ep.chat_url, endpoint_api_type="serverless", endpoint_api_key=KEY)
    ep.enqueue(*[Fault.delay(0.05) for _ in range(8)])
    answers = await chat.abatch([f"q{i}" for i in range(8)])
    assert [answer.content for answer in answers] == [f"echo: q{i}" for i in range(8)]
    assert ep.max_in_flight == 8
    await chat.aclose()


async def test_sync_calls_work_inside_a_running_loop(make_chat: Any) -> None:
    chat = make_chat()
    assert asyncio.get_running_loop().is_running()
    assert chat.invoke("from a notebook cell").content == "echo: from a notebook cell"


def test_chat_save_and_load(make_chat: Any, tmp_path: Any) -> None:
    chat = make_chat(stream_usage=True, model_kwargs={"temperature": 0.3})
    chat.save(tmp_path / "chat.yaml")
    loaded = load_llm(tmp_path / "chat.yaml", endpoint_api_key=KEY)
    assert isinstance(loaded, AzureMLChatOnlineEndpoint)
    assert loaded._identifying_params == chat._identifying_params
    assert loaded.invoke("hi").content == "echo: hi"
    loaded.close()
