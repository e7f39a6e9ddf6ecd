"""Translating between LangChain messages and azml-client's: requests out, answers and stream chunks back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    UsageMetadata,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from azml_client._exceptions import ConfigurationError
from azml_client._types import ChatChoice, ChatChunk, Message, Usage, content_text
from azml_client._types import ChatResult as CoreChatResult
from azml_client._types import ToolCall as CoreToolCall

__all__ = [
    "chat_result",
    "stream_chunk",
    "to_core_messages",
    "to_lc_messages",
    "usage_metadata",
]

#: LangChain roles with no wire equivalent that map onto one that has.
_ROLE_ALIASES: Final = {"developer": "system", "human": "user", "ai": "assistant"}


def to_core_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """Convert LangChain messages to azml-client :class:`Message` objects in the OpenAI wire form.

    System, human, AI (with ``tool_calls``) and tool messages (with ``tool_call_id``) are kept; multimodal
    list content of user and tool messages passes through in the OpenAI format (LangChain's standard image
    blocks become ``image_url`` parts). An assistant message keeps only its text: its tool calls travel in
    ``tool_calls``, and provider-specific blocks (tool_use, thinking, reasoning) are dropped.

    Raises:
        azml_client.ConfigurationError: a message with a role the endpoints do not know (``function``...).
    """
    out: list[Message] = []
    for position, wire in enumerate(convert_to_openai_messages(list(messages))):
        role = _ROLE_ALIASES.get(wire.get("role", ""), wire.get("role", ""))
        data = dict(wire)
        data["role"] = role
        if role == "assistant":
            data["content"] = content_text(data.get("content"))
        try:
            out.append(Message.from_dict(data))
        except ConfigurationError as exc:
            raise ConfigurationError(f"message {position} ({type(messages[position]).__name__}): {exc}") from None
    return out


def to_lc_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """Convert azml-client :class:`Message` objects back to LangChain messages (for seed-style formatters).

    ``system`` / ``user`` / ``assistant`` / ``tool`` become System / Human / AI / Tool messages; an assistant's
    OpenAI ``tool_calls`` become LangChain tool calls (arguments that are not JSON become invalid tool calls),
    a tool message keeps its ``tool_call_id``, and names are kept. Content (str or list of parts) is kept as
    is; an assistant's ``None`` content becomes ``""``.
    """
    out: list[BaseMessage] = []
    for message in messages:
        content: Any = message.content if message.content is not None else ""
        named: dict[str, Any] = {"name": message.name} if message.name is not None else {}
        if message.role == "system":
            out.append(SystemMessage(content=content, **named))
        elif message.role == "user":
            out.append(HumanMessage(content=content, **named))
        elif message.role == "assistant":
            valid, invalid = _tool_calls(message.tool_calls)
            out.append(AIMessage(content=content, tool_calls=valid, invalid_tool_calls=invalid, **named))
        elif message.role == "tool":
            out.append(ToolMessage(content=content, tool_call_id=message.tool_call_id or "", **named))
        else:  # pragma: no cover - Message only holds the roles above
            out.append(ChatMessage(content=content, role=message.role, **named))
    return out


def usage_metadata(usage: Usage | None) -> UsageMetadata | None:
    """LangChain's usage record for an endpoint's token counts; ``None`` when the endpoint sent none."""
    if usage is None or (usage.prompt_tokens is None and usage.completion_tokens is None):
        return None
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=total)


def _tool_calls(calls: Sequence[CoreToolCall]) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    valid: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in calls:
        raw = call.to_dict()
        try:
            parsed = parse_tool_call(raw, return_id=True)
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(raw, str(exc)))
            continue
        except RecursionError:  # its json.loads of arguments nested deeper than the interpreter's stack
            invalid.append(make_invalid_tool_call(raw, "the arguments are nested too deeply to decode"))
            continue
        if parsed is not None:
            valid.append(ToolCall(name=parsed["name"], args=parsed["args"], id=parsed.get("id"), type="tool_call"))
    return valid, invalid


def _metadata(model: str | None, deployment: str | None, request_id: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    name = model or deployment
    if name:
        metadata["model_name"] = name
    if deployment:
        metadata["deployment"] = deployment
    if request_id:
        metadata["request_id"] = request_id
    return metadata


def chat_result(result: CoreChatResult, deployment: str | None) -> ChatResult:
    """Turn an azml-client chat result into LangChain's: one generation per choice, usage, metadata.

    ``response_metadata`` carries ``finish_reason``, ``model_name`` (the model the endpoint named, else the
    deployment), ``deployment`` (the one that answered, else the configured one) and ``request_id``.
    """
    call = result.call
    answered_by = (call.deployment if call is not None else None) or deployment
    metadata = _metadata(result.model, answered_by, call.request_id if call is not None else None)
    usage = usage_metadata(result.usage)
    generations = []
    for choice in result.choices or (ChatChoice(result.message, result.finish_reason),):
        message = choice.message
        valid, invalid = _tool_calls(message.tool_calls)
        content = message.content if message.content is not None else ""
        info: dict[str, Any] = {"finish_reason": choice.finish_reason}
        if choice.logprobs is not None:
            info["logprobs"] = choice.logprobs
        ai = AIMessage(
            content=content,
            # where langchain-openai puts it
            additional_kwargs={"refusal": message.refusal} if message.refusal is not None else {},
            tool_calls=valid,
            invalid_tool_calls=invalid,
            usage_metadata=usage,
            response_metadata=dict(metadata),
        )
        generations.append(ChatGeneration(message=ai, generation_info=info))
    llm_output: dict[str, Any] = dict(metadata)
    if usage is not None and result.usage is not None:
        llm_output["token_usage"] = result.usage.to_dict()
    return ChatResult(generations=generations, llm_output=llm_output)


def stream_chunk(chunk: ChatChunk, metadata: Mapping[str, Any] | None) -> ChatGenerationChunk:
    """Turn one streamed azml-client chunk into LangChain's.

    ``metadata`` (model name, deployment) is given for one chunk of a stream only, since LangChain joins the
    string values of every chunk's ``response_metadata``.
    """
    chunks: list[ToolCallChunk] = [
        tool_call_chunk(name=delta.name, args=delta.arguments or None, id=delta.id, index=delta.index)
        for delta in chunk.tool_call_deltas
    ]
    info: dict[str, Any] = dict(metadata or {})
    if chunk.finish_reason is not None:
        info["finish_reason"] = chunk.finish_reason
    message = AIMessageChunk(
        content=chunk.content,
        additional_kwargs={"refusal": chunk.refusal} if chunk.refusal else {},  # joined like the content
        tool_call_chunks=chunks,
        usage_metadata=usage_metadata(chunk.usage),
    )
    return ChatGenerationChunk(message=message, generation_info=info or None)
