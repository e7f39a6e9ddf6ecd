"""Chat formatters written for the seed work unchanged (but for the import line) through the chat adapter.

The seed hands ``format_messages_request_payload`` LangChain messages and its users call the static
``CustomOpenAIChatContentFormatter._convert_message_to_dict``; ``format_response_payload`` returns a
``ChatGeneration``. The core stays dict-based: a formatter annotated for dicts keeps getting dicts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Dict, List  # noqa: UP035  (as the seed's users wrote them)

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
from langchain_core.outputs import ChatGeneration
from lc_emulator import KEY, EmulatorThread

import azml_client
from azml_client._formatters import _registry
from azml_client.langchain import (
    AzureMLChatOnlineEndpoint,
    AzureMLEndpointApiType,
    ContentFormatterBase,
    CustomOpenAIChatContentFormatter,
    MistralChatContentFormatter,
    load_llm,
)

QUESTION = "Will the Collatz conjecture ever be solved?"


# -- the formatters, written as the seed's users wrote them ---------------------------------------------------


class CustomChatFormatter(CustomOpenAIChatContentFormatter):
    """A seed-notebook-style chat formatter: LangChain messages in, a ChatGeneration out."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[List[BaseMessage]] = []  # noqa: UP006
        self.sent: List[bytes] = []  # noqa: UP006

    def format_messages_request_payload(
        self,
        messages: List[BaseMessage],  # noqa: UP006
        model_kwargs: Dict,  # noqa: UP006
        api_type: AzureMLEndpointApiType,
    ) -> bytes:
        self.seen.append(list(messages))
        chat_messages = [
            CustomOpenAIChatContentFormatter._convert_message_to_dict(message)
            for message in messages
            if message.type != "system" or message.content  # drop empty system prompts
        ]
        if api_type in [AzureMLEndpointApiType.dedicated, AzureMLEndpointApiType.realtime]:
            request_payload = json.dumps({"input_data": {"input_string": chat_messages, "parameters": model_kwargs}})
        elif api_type == AzureMLEndpointApiType.serverless:
            request_payload = json.dumps({"messages": chat_messages, **model_kwargs})
        else:
            raise ValueError(f"`api_type` {api_type} is not supported by this formatter")
        body = str.encode(request_payload)
        self.sent.append(body)
        return body

    def format_response_payload(
        self,
        output: bytes,
        api_type: AzureMLEndpointApiType = AzureMLEndpointApiType.dedicated,
    ) -> ChatGeneration:
        if api_type in [AzureMLEndpointApiType.dedicated, AzureMLEndpointApiType.realtime]:
            choice = json.loads(output)["output"]
            return ChatGeneration(message=AIMessage(content="[custom] " + choice.strip()), generation_info=None)
        choice = json.loads(output)["choices"][0]
        return ChatGeneration(
            message=AIMessage(content="[custom] " + choice["message"]["content"].strip())
            if choice["message"]["role"] == "assistant"
            else BaseMessage(content=choice["message"]["content"].strip(), type=choice["message"]["role"]),
            generation_info={"finish_reason": choice.get("finish_reason"), "logprobs": choice.get("logprobs")},
        )


class PlainBaseChatFormatter(ContentFormatterBase):
    """A chat formatter on the seed's plain ``ContentFormatterBase`` (dedicated only), reading ``message.type``."""

    @property
    def supported_api_types(self) -> List[AzureMLEndpointApiType]:  # noqa: UP006
        return [AzureMLEndpointApiType.dedicated, AzureMLEndpointApiType.realtime]

    def format_messages_request_payload(
        self,
        messages: List[BaseMessage],  # noqa: UP006
        model_kwargs: Dict,  # noqa: UP006
        api_type: AzureMLEndpointApiType,
    ) -> bytes:
        roles = {"human": "user", "ai": "assistant", "system": "system"}
        chat_messages = [{"role": roles[message.type], "content": message.content} for message in messages]
        return str.encode(json.dumps({"input_data": {"input_string": chat_messages, "parameters": model_kwargs}}))

    def format_response_payload(self, output: bytes, api_type: AzureMLEndpointApiType) -> ChatGeneration:
        return ChatGeneration(message=AIMessage(content=json.loads(output)["output"].upper()))


@pytest.fixture
def make_chat(ep: EmulatorThread) -> Iterator[Any]:
    """Build chat models on the emulator (dedicated: the ``openai-chat`` deployment); closed after the test."""
    made: list[AzureMLChatOnlineEndpoint] = []

    def make(api_type: str, formatter: Any, **options: Any) -> AzureMLChatOnlineEndpoint:
        dedicated = api_type == "dedicated"
        settings: dict[str, Any] = {
            "endpoint_url": ep.score_url if dedicated else ep.chat_url,
            "endpoint_api_type": api_type,
            "endpoint_api_key": KEY,
            "deployment_name": "openai-chat" if dedicated else "",
            "content_formatter": formatter,
            **options,
        }
        chat = AzureMLChatOnlineEndpoint(**settings)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.close()


# -- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_type", ["dedicated", "serverless"])
def test_seed_formatter_invoke_ainvoke_batch(ep: EmulatorThread, make_chat: Any, api_type: str) -> None:
    formatter = CustomChatFormatter()
    chat = make_chat(api_type, formatter, model_kwargs={"temperature": 0.5})
    conversation = [SystemMessage(content="Be brief."), HumanMessage(content=QUESTION)]

    answer = chat.invoke(conversation)
    assert isinstance(answer, AIMessage)
    assert answer.content == "[custom] echo: " + QUESTION
    assert answer.tool_calls == []
    # The formatter got LangChain messages, and the wire carries exactly the bytes it built.
    assert [type(m) for m in formatter.seen[-1]] == [SystemMessage, HumanMessage]
    assert [m.content for m in formatter.seen[-1]] == ["Be brief.", QUESTION]
    assert ep.last.body == formatter.sent[-1]
    wire_messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    if api_type == "dedicated":
        assert ep.last.deployment == "openai-chat"
        assert ep.last.json == {"input_data": {"input_string": wire_messages, "parameters": {"temperature": 0.5}}}
    else:
        assert ep.last.json == {"messages": wire_messages, "temperature": 0.5}
    assert ep.last.headers["content-type"] == "application/json"

    answer = asyncio.run(chat.ainvoke("Hello there", max_tokens=50))
    assert answer.content == "[custom] echo: Hello there"
    assert formatter.seen[-1] == [HumanMessage(content="Hello there")]
    assert ep.last.body == formatter.sent[-1]
    assert (ep.last.json.get("input_data", {}).get("parameters") or ep.last.json)["max_tokens"] == 50

    ep.reset()
    prompts = [f"question {i}" for i in range(5)]
    answers = chat.batch(prompts)
    assert [a.content for a in answers] == [f"[custom] echo: {p}" for p in prompts]
    assert sorted(r.body for r in ep.requests) == sorted(formatter.sent[-5:])


def test_seed_formatter_generation_info_and_tool_history_on_serverless(ep: EmulatorThread, make_chat: Any) -> None:
    """Tool calls and tool answers reach the formatter as LangChain objects; the answer is tool-less."""
    formatter = CustomChatFormatter()
    chat = make_chat("serverless", formatter)
    conversation = [
        HumanMessage(content="What is 2 + 3?"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1"}]),
        ToolMessage(content="5", tool_call_id="call_1"),
        HumanMessage(content="Thanks"),
    ]
    result = chat.generate([conversation])
    generation = result.generations[0][0]
    assert generation.text == "[custom] echo: Thanks"
    assert generation.generation_info is not None
    assert generation.generation_info["finish_reason"] == "stop"

    seen = formatter.seen[-1]
    assert [type(m) for m in seen] == [HumanMessage, AIMessage, ToolMessage, HumanMessage]
    ai, tool_message = seen[1], seen[2]
    assert isinstance(ai, AIMessage)
    assert ai.tool_calls == [{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1", "type": "tool_call"}]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.tool_call_id == "call_1"
    assert ep.last.json["messages"][1:3] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
            ],
        },
        {"role": "tool", "content": "5", "tool_call_id": "call_1"},
    ]


def test_seed_formatter_streams_with_the_bytes_it_built(ep: EmulatorThread, make_chat: Any) -> None:
    formatter = CustomChatFormatter()
    chat = make_chat("serverless", formatter)
    chunks = list(chat.stream("one two three"))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert "".join(str(chunk.content) for chunk in chunks) == "echo: one two three"
    assert ep.last.body == formatter.sent[-1]
    assert ep.last.json == {"messages": [{"role": "user", "content": "one two three"}], "stream": True}


def test_convert_message_to_dict_escapes_like_the_seed(ep: EmulatorThread, make_chat: Any) -> None:
    """The seed's helper escapes by hand before JSON encoding: a formatter calling it sends the seed's bytes."""
    formatter = CustomChatFormatter()
    chat = make_chat("dedicated", formatter)
    text = 'Say "hi"\nthen stop'
    assert chat.invoke(text).content == "[custom] echo: " + 'Say \\"hi\\"\\nthen stop'
    assert ep.last.json["input_data"]["input_string"] == [{"role": "user", "content": 'Say \\"hi\\"\\nthen stop'}]

    convert = CustomOpenAIChatContentFormatter._convert_message_to_dict
    assert convert(ChatMessage(role="assistant", content="a")) == {"role": "assistant", "content": "a"}
    assert convert(HumanMessage(content=[{"type": "text", "text": "x"}])) == {
        "role": "user",
        "content": [{"type": "text", "text": "x"}],
    }
    with pytest.raises(ValueError, match="unsupported role 'critic'"):
        convert(ChatMessage(role="critic", content="no"))
    # The built-in formatter, used as is, sends the text unescaped (as the core does).
    plain = make_chat("dedicated", CustomOpenAIChatContentFormatter())
    assert plain.invoke(text).content == "echo: " + text


def test_seed_formatter_on_the_plain_base_class(ep: EmulatorThread, make_chat: Any) -> None:
    chat = make_chat("dedicated", PlainBaseChatFormatter())
    assert chat.invoke([SystemMessage(content="S"), HumanMessage(content="hi")]).content == "ECHO: HI"
    assert ep.last.json == {
        "input_data": {
            "input_string": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
            "parameters": {},
        }
    }
    assert [a.content for a in chat.batch(["a", "b"])] == ["ECHO: A", "ECHO: B"]
    # Its own supported_api_types still decide.
    with pytest.raises(azml_client.ConfigurationError, match="does not support api_type 'serverless'"):
        make_chat("serverless", PlainBaseChatFormatter)


def test_subclass_calling_super_with_langchain_messages(ep: EmulatorThread, make_chat: Any) -> None:
    """``super()`` takes LangChain messages and returns a ChatGeneration, as the seed's classes did."""
    supers: list[Any] = []

    class Shouting(MistralChatContentFormatter):
        def format_messages_request_payload(
            self,
            messages: List[BaseMessage],  # noqa: UP006
            model_kwargs: Dict,  # noqa: UP006
            api_type: AzureMLEndpointApiType,
        ) -> bytes:
            louder = [m.model_copy(update={"content": str(m.content).upper()}) for m in messages]
            return super().format_messages_request_payload(louder, model_kwargs, api_type)

        def format_response_payload(self, output: bytes, api_type: AzureMLEndpointApiType) -> ChatGeneration:
            generation = super().format_response_payload(output, api_type)
            supers.append(generation)
            return ChatGeneration(message=AIMessage(content=generation.message.content + "!"))

    for api_type in ("dedicated", "serverless"):
        ep.reset()
        chat = make_chat(
            api_type, Shouting(), **({"deployment_name": "mistral-chat"} if api_type == "dedicated" else {})
        )
        answer = chat.invoke([SystemMessage(content="be kind"), HumanMessage(content="hi")])
        assert answer.content == "echo: BE KIND\n\nHI!"
        wire = ep.last.json["messages"] if api_type == "serverless" else ep.last.json["input_data"]["input_string"]
        assert wire == [{"role": "user", "content": "BE KIND\n\nHI"}]
        assert isinstance(supers[-1], ChatGeneration)
        assert isinstance(supers[-1].message, AIMessage)


def test_a_formatter_annotated_for_dicts_keeps_getting_dicts(ep: EmulatorThread, make_chat: Any) -> None:
    """A formatter written for azml-client's core (messages as dicts) is not handed LangChain messages."""
    seen: list[Any] = []

    class DictFormatter(azml_client.ChatContentFormatterBase):
        supported_api_types = frozenset({azml_client.ApiType.serverless})

        def format_messages_request_payload(
            self, messages: list[dict[str, Any]], model_kwargs: dict[str, Any], api_type: Any
        ) -> bytes:
            seen.append(messages)
            return json.dumps({"messages": messages, **model_kwargs}).encode()

        def format_response_payload(self, output: bytes, api_type: Any) -> str:
            return str(json.loads(output)["choices"][0]["message"]["content"])

    chat = make_chat("serverless", DictFormatter())
    assert chat.invoke("hi").content == "echo: hi"
    assert seen == [[{"role": "user", "content": "hi"}]]
    # And the core, without LangChain, hands the seed-style formatter dicts as before.
    with azml_client.ChatModel(ep.chat_url, KEY, api_type="serverless", formatter=DictFormatter()) as core:
        assert core.invoke("there").content == "echo: there"
    assert seen[-1] == [{"role": "user", "content": "there"}]


# -- identity: name, headers, saving ----------------------------------------------------------------------------


def test_name_headers_and_saving(
    ep: EmulatorThread, make_chat: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class XmlChat(CustomChatFormatter):
        content_type = "application/x-custom"

    formatter = XmlChat()
    chat = make_chat("serverless", formatter)
    assert chat.content_formatter is formatter
    assert formatter.name == "XmlChat"
    chat.invoke("hi")
    assert ep.last.headers["content-type"] == "application/x-custom"
    with pytest.raises(azml_client.ConfigurationError, match="XmlChat is not registered"):
        chat.save(tmp_path / "unregistered.json")

    monkeypatch.setattr(_registry, "REGISTRY", _registry.REGISTRY.copy())
    azml_client.register_formatter("seed-xml-chat")(XmlChat)
    chat.save(tmp_path / "chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved["content_formatter"] == "seed-xml-chat"
    loaded = load_llm(tmp_path / "chat.json", endpoint_api_key=KEY)
    assert isinstance(loaded, AzureMLChatOnlineEndpoint)
    assert loaded.invoke("again").content == "[custom] echo: again"
    assert json.loads(ep.last.body) == {"messages": [{"role": "user", "content": "again"}]}
    loaded.close()

    # The adapter's built-in chat formatters keep their registered names.
    for builtin, name in (
        (CustomOpenAIChatContentFormatter(), "openai-chat"),
        (MistralChatContentFormatter(), "mistral-chat"),
    ):
        plain = make_chat("serverless", builtin)
        assert builtin.name == name
        plain.save(tmp_path / f"{name}.json")
        assert json.loads((tmp_path / f"{name}.json").read_text())["content_formatter"] == name
        assert plain.invoke("x").content == "echo: x"
