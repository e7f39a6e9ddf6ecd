"""The adapter uses the formatter layer through its public API only, and passes on what the formatters read."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import orjson
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

import azml_client.langchain
from azml_client._config import ApiType
from azml_client._formatters import _registry, default_formatter_name, is_user_method, registered_name
from azml_client._types import ChatChunk, ChatResult, Message, ToolCall, Usage
from azml_client.langchain import (
    AzureMLChatOnlineEndpoint,
    AzureMLOnlineEndpoint,
    CustomOpenAIChatContentFormatter,
    LlamaChatContentFormatter,
    MistralChatContentFormatter,
)
from azml_client.langchain._messages import chat_result, stream_chunk, to_core_messages
from azml_client.langchain._settings import EndpointSettings

ADAPTER = Path(azml_client.langchain.__file__).parent
S = ApiType.serverless


@pytest.mark.parametrize("module", ["_formatters.py", "_messages.py"])
def test_the_adapter_imports_only_public_names_of_the_layers_below(module: str) -> None:
    tree = ast.parse((ADAPTER / module).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("azml_client."):
            assert not node.module.startswith("azml_client._formatters."), f"{node.module}: use azml_client._formatters"
            for alias in node.names:
                assert not alias.name.startswith("_"), f"{module} imports {node.module}.{alias.name}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            mine = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            mine = mine or (
                isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"
            )
            assert mine, f"{module}:{node.lineno} reads {node.attr} of another object"


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (CustomOpenAIChatContentFormatter, "openai-chat"),
        (LlamaChatContentFormatter, "openai-chat"),
        (MistralChatContentFormatter, "mistral-chat"),
    ],
)
def test_the_adapters_formatters_are_variants_of_the_built_ins(
    cls: type, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registry, "REGISTRY", _registry.registry().copy())
    assert registered_name(cls) == name
    for method in ("format_messages_request_payload", "format_response_payload", "format_request_payload"):
        assert not is_user_method(cls, method)

    class Users(cls):  # type: ignore[misc, valid-type]
        def format_response_payload(self, output: bytes, api_type: Any = None) -> Any:
            return super().format_response_payload(output, api_type)

    # A user's subclass is the user's formatter, but for the subclass of a deprecated class name, which keeps it.
    assert registered_name(Users) == (name if cls is LlamaChatContentFormatter else None)
    assert is_user_method(Users, "format_response_payload")


def test_the_default_formatter_rule_is_the_formatter_layers() -> None:
    for cls, kind in ((AzureMLOnlineEndpoint, "completion"), (AzureMLChatOnlineEndpoint, "chat")):
        for api_type in ("dedicated", "serverless"):
            url = (
                "https://e.inference.ml.azure.com/score" if api_type == "dedicated" else "https://e.models.ai.azure.com"
            )
            model = cls(endpoint_url=url, endpoint_api_key="k", endpoint_api_type=api_type)
            assert EndpointSettings._default_formatter(model) == default_formatter_name(kind, api_type)  # type: ignore[arg-type]
            assert model._default_formatter() == default_formatter_name(kind, api_type)  # type: ignore[arg-type]


def test_a_refusal_reaches_langchain() -> None:
    message = Message("assistant", None, refusal="I can't help with that.")
    result = chat_result(ChatResult(message, "stop"), None)
    ai = result.generations[0].message
    assert isinstance(ai, AIMessage)
    assert ai.content == ""
    assert ai.additional_kwargs == {"refusal": "I can't help with that."}
    assert chat_result(ChatResult(Message("assistant", "x")), None).generations[0].message.additional_kwargs == {}
    pieces = [stream_chunk(ChatChunk(refusal=text), None).message for text in ("I can", "'t.")]
    joined = pieces[0] + pieces[1]
    assert isinstance(joined, AIMessageChunk)
    assert joined.additional_kwargs == {"refusal": "I can't."}


def test_token_usage_is_the_usage_wire_form() -> None:
    for usage in (Usage(3, 4, 7), Usage(3, None)):
        result = chat_result(ChatResult(Message("assistant", "x"), usage=usage), None)
        assert result.llm_output is not None
        assert result.llm_output["token_usage"] == usage.to_dict()
    assert "token_usage" not in (chat_result(ChatResult(Message("assistant", "x")), None).llm_output or {})


def test_tool_call_arguments_nested_too_deeply_are_an_invalid_tool_call() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    message = Message("assistant", None, tool_calls=[ToolCall("c1", "f", deep), ToolCall("c2", "g", '{"a": 1}')])
    ai = chat_result(ChatResult(message, "tool_calls"), None).generations[0].message
    assert isinstance(ai, AIMessage)
    assert [call["name"] for call in ai.tool_calls] == ["g"]
    assert [call["name"] for call in ai.invalid_tool_calls] == ["f"]
    assert "nested too deeply" in (ai.invalid_tool_calls[0]["error"] or "")


def test_assistant_content_text_is_the_core_reading() -> None:
    thinking = AIMessage([{"type": "thinking", "thinking": "hmm", "text": "no"}, {"type": "text", "text": "Hi."}, "!"])
    assert to_core_messages([thinking])[0].content == "Hi.!"


def test_a_seed_chat_formatters_refusal_free_answer_still_parses() -> None:
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "length"}]})
    generation = CustomOpenAIChatContentFormatter().format_response_payload(body, S)
    assert generation.message.content == ""
    assert generation.generation_info == {"finish_reason": "length"}
