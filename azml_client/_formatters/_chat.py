"""The built-in chat formatters: openai-chat and mistral-chat (dedicated and serverless).

Serverless: ``{"messages": [...], **model_kwargs}`` (plus ``"stream": true`` for a stream) -> the OpenAI
chat answer, with every choice, tool calls, usage and model. Dedicated:
``{"input_data": {"input_string": [...], "parameters": {model_kwargs}}}`` -> ``{"output": text}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import _openai
from azml_client._formatters._base import (
    ChatContentFormatterBase,
    DeprecatedFormatterAlias,
    _coerce_api_type,
    as_messages,
)
from azml_client._formatters._lookup import register_formatter
from azml_client._types import ChatChoice, ChatChunk, ChatResult, Message, content_text, defer_raw, defer_single_choice

__all__ = [
    "CustomOpenAIChatContentFormatter",
    "LlamaChatContentFormatter",
    "MistralChatContentFormatter",
]


def _as_dict(model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return model_kwargs if type(model_kwargs) is dict else dict(model_kwargs)


@register_formatter("openai-chat", deprecated_aliases=("llama-chat",))
class CustomOpenAIChatContentFormatter(ChatContentFormatterBase):
    """Chat models with the OpenAI-style schema, on dedicated and serverless endpoints.

    Messages go out as OpenAI message objects: ``"content": null`` is kept for an assistant message that
    only carries ``tool_calls``, a ``tool`` message carries its ``tool_call_id``, and list (multimodal)
    content passes through to serverless endpoints; a dedicated endpoint needs text content.
    """

    supported_api_types: ClassVar[frozenset[ApiType]] = frozenset({ApiType.dedicated, ApiType.serverless})

    # -- the seed's API --------------------------------------------------------------------------------------

    def format_messages_request_payload(
        self, messages: Any, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for a conversation (same bytes as :meth:`build_chat_request`).

        ``messages`` may be anything :func:`azml_client.to_messages` accepts (Message objects, dicts, tuples).
        """
        return self._build_chat(as_messages(messages), model_kwargs, _coerce_api_type(api_type), False)

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
        """Return the first answer's text."""
        return self.read_chat_answer(output, api_type).content

    def read_chat_answer(self, body: bytes, api_type: ApiType | str, *, status: int = 200) -> ChatResult:
        """Read an answer the built-in way: the OpenAI chat answer (serverless) or ``{"output": text}`` (dedicated).

        Unlike :meth:`parse_chat_response`, it never calls a subclass's ``format_response_payload``, so an
        override of that (or a variant's, such as the LangChain adapter's) may call it for the whole result.

        Raises:
            ResponseFormatError: the body does not fit the formatter; the hint says what it looks like.
        """
        return self._parse_chat(body, _coerce_api_type(api_type), status)

    # -- what the SDK calls ----------------------------------------------------------------------------------

    def _wire_messages(self, messages: Sequence[Message], api_type: ApiType) -> list[dict[str, Any]]:
        """Return the messages as the dicts that go on the wire.

        Raises:
            ConfigurationError: a message without content (other than an assistant's tool calls), or list
                content for a dedicated endpoint.
        """
        dedicated = api_type != ApiType.serverless
        escape = self.legacy_escaping
        out: list[dict[str, Any]] = []
        for position, message in enumerate(as_messages(messages)):
            content = message.content
            if content is None and not (message.role == "assistant" and message.tool_calls):
                raise ConfigurationError(
                    f"message {position} ({message.role}) has no content; only an assistant message with "
                    "tool_calls may have content None"
                )
            if dedicated and isinstance(content, list):
                raise ConfigurationError(
                    f"message {position} has a list of content parts, but dedicated chat needs text content; "
                    "send multimodal content to a serverless endpoint"
                )
            wire = message.to_dict()
            if escape and isinstance(content, str):
                wire["content"] = self.escape_special_characters(content)
            out.append(wire)
        return out

    def build_chat_request(
        self,
        messages: Sequence[Message],
        model_kwargs: Mapping[str, Any],
        api_type: ApiType,
        *,
        stream: bool = False,
    ) -> bytes:
        """Return the serverless or dedicated request body for a conversation.

        A user subclass that overrides ``format_messages_request_payload`` gets its override called.

        Raises:
            ConfigurationError: an empty conversation, a message without content, list content for a
                dedicated endpoint, a stream asked of a dedicated endpoint, or model_kwargs that are not JSON.
        """
        if self._overrides_messages:
            return super().build_chat_request(messages, model_kwargs, api_type, stream=stream)
        return self._build_chat(messages, model_kwargs, api_type, stream)

    def parse_chat_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> ChatResult:
        """Read the OpenAI chat answer (serverless) or ``{"output": text}`` (dedicated).

        A dedicated endpoint that answers in the OpenAI chat schema is read as well. A user subclass that
        overrides ``format_response_payload`` gets its override called.

        Raises:
            ResponseFormatError: the body does not fit the formatter; the hint says what it looks like.
        """
        if self._overrides_response:
            return super().parse_chat_response(body, api_type, status=status)
        return self._parse_chat(body, api_type, status)

    def _build_chat(
        self, messages: Sequence[Message], model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool
    ) -> bytes:
        if api_type == ApiType.serverless:
            if "messages" in model_kwargs:
                raise ConfigurationError(
                    "model_kwargs must not contain 'messages': the conversation is the call's input"
                )
            body: dict[str, Any] = {"messages": self._fold(self._wire_messages(messages, api_type))}
            body.update(model_kwargs)
            if stream:
                body["stream"] = True
            return self._dumps(body)
        self.check_api_type(api_type)
        if stream:
            self.check_can_stream(api_type)
        wire = self._fold(self._wire_messages(messages, api_type))
        return self._dumps({"input_data": {"input_string": wire, "parameters": _as_dict(model_kwargs)}})

    def _parse_chat(self, body: bytes, api_type: ApiType, status: int) -> ChatResult:
        data = self._loads(body, status, api_type)
        if api_type == ApiType.serverless:
            return self._openai_chat(data, body, status, api_type)
        self.check_api_type(api_type)
        if isinstance(data, dict):
            output = data.get("output")
            if isinstance(output, str):
                message = Message("assistant", output)
                return ChatResult(message=message, choices=(ChatChoice(message),), raw=data)
            if "choices" in data and "output" not in data:
                return self._openai_chat(data, body, status, api_type)
        raise self._response_error(
            'expected the dedicated chat answer `{"output": text}`', body, status, data=data, api_type=api_type
        )

    def _openai_chat(self, data: Any, body: bytes, status: int, api_type: ApiType) -> ChatResult:
        try:
            result = _openai.parse_chat_body(data)
        except _openai.MalformedAnswer as exc:
            raise self._malformed(exc, body, status, ApiType.serverless) from None
        return defer_single_choice(defer_raw(result, body))

    def parse_chat_stream_event(self, data: str, api_type: ApiType) -> ChatChunk | None:
        """Read one OpenAI chat stream chunk (serverless only).

        Raises:
            StreamError: the chunk is the server's error object.
            ResponseFormatError: the chunk is not a chat chunk.
        """
        self.check_api_type(api_type)
        return super().parse_chat_stream_event(data, api_type)

    def _fold(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adjust the wire messages for the model family (identity here; Mistral folds the system prompt)."""
        return wire


class LlamaChatContentFormatter(DeprecatedFormatterAlias, CustomOpenAIChatContentFormatter, canonical="openai-chat"):
    """Deprecated alias of :class:`CustomOpenAIChatContentFormatter` (formatter name ``llama-chat``)."""


@register_formatter("mistral-chat")
class MistralChatContentFormatter(CustomOpenAIChatContentFormatter):
    """Mistral chat models: as ``openai-chat``, but without a system role.

    A leading system message is folded into the first user message (``system + "\\n\\n" + user``); a system
    message with no user message after it is sent as a user message.
    """

    def _fold(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not wire or wire[0]["role"] != "system":
            return wire
        system, rest = wire[0], wire[1:]
        for position, message in enumerate(rest):
            if message["role"] != "user":
                continue
            merged = dict(message)
            content = message["content"]
            if isinstance(content, list):
                merged["content"] = [{"type": "text", "text": content_text(system["content"]) + "\n\n"}, *content]
            else:
                merged["content"] = content_text(system["content"]) + "\n\n" + content_text(content)
            rest[position] = merged
            return rest
        lone = dict(system)
        lone["role"] = "user"
        return [lone, *rest]
