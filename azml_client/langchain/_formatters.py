"""Chat formatters written for the seed, on azml-client's dict-based core.

The seed hands a chat formatter's ``format_messages_request_payload`` LangChain messages, and its
``CustomOpenAIChatContentFormatter`` has a static ``_convert_message_to_dict(message)`` that user formatters
call. The core stays LangChain-free and hands formatters message dicts, so the adapter:

- wraps a user formatter that overrides ``format_messages_request_payload`` in :class:`SeedChatFormatter`,
  which converts the conversation back to LangChain messages for that one call and delegates the rest;
- exports ``CustomOpenAIChatContentFormatter`` / ``LlamaChatContentFormatter`` / ``MistralChatContentFormatter``
  as subclasses of the core classes that add the seed's helper, take LangChain messages in
  ``format_messages_request_payload`` (for a user subclass calling ``super()``) and return a ``ChatGeneration``
  from ``format_response_payload``, as the seed's did. Unchanged, they build and read the same bytes as the
  core classes, and are saved under the same registered names.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration

from azml_client._config import ApiType
from azml_client._formatters import (
    ChatContentFormatterBase,
    ContentFormatterBase,
    is_user_method,
)
from azml_client._formatters import CustomOpenAIChatContentFormatter as CoreOpenAIChat
from azml_client._formatters import LlamaChatContentFormatter as CoreLlamaChat
from azml_client._formatters import MistralChatContentFormatter as CoreMistralChat
from azml_client._types import ChatChunk, ChatResult, Message
from azml_client.langchain._messages import chat_result, to_core_messages, to_lc_messages

__all__ = [
    "CustomOpenAIChatContentFormatter",
    "LlamaChatContentFormatter",
    "MistralChatContentFormatter",
    "SeedChatFormatter",
    "lc_chat_formatter",
]

#: Names in a ``messages`` annotation that mean LangChain messages; names that mean the core's dicts.
_LC_NAMES: Final = frozenset(
    {
        "BaseMessage",
        "AnyMessage",
        "HumanMessage",
        "AIMessage",
        "SystemMessage",
        "ToolMessage",
        "ChatMessage",
        "MessageLikeRepresentation",
    }
)
_DICT_NAMES: Final = frozenset({"dict", "Dict", "Mapping", "MutableMapping", "Message"})


def _classes_in(annotation: Any) -> list[type]:
    """The classes an annotation names: ``List[BaseMessage]`` gives list and BaseMessage."""
    found: list[type] = []
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and origin is None:
        found.append(annotation)
    if isinstance(origin, type):
        found.append(origin)
    for arg in typing.get_args(annotation):
        found.extend(_classes_in(arg))
    return found


def _annotated_as_dicts(cls: type) -> bool:
    """Whether ``cls.format_messages_request_payload`` annotates ``messages`` as dicts (the core's contract).

    ``List[BaseMessage]`` (the seed's), no annotation, or anything unclear means LangChain messages.
    """
    method = "format_messages_request_payload"
    try:
        params = list(inspect.signature(getattr(cls, method)).parameters.values())
    except (TypeError, ValueError):
        return False
    if not isinstance(inspect.getattr_static(cls, method), (staticmethod, classmethod)):
        params = params[1:]  # self
    if not params or params[0].annotation is inspect.Parameter.empty:
        return False
    annotation = params[0].annotation
    if isinstance(annotation, str):  # postponed annotations: read the names
        names = set(re.findall(r"[A-Za-z_]\w*", annotation))
        return not names & _LC_NAMES and bool(names & _DICT_NAMES)
    classes = _classes_in(annotation)
    if any(issubclass(item, BaseMessage) for item in classes):
        return False
    return any(issubclass(item, (dict, Mapping, Message)) for item in classes)


def wants_lc_messages(formatter: ContentFormatterBase) -> bool:
    """Whether ``formatter`` is a user's chat formatter written for the seed (LangChain messages in).

    That is: its class overrides ``format_messages_request_payload``, and does not annotate ``messages`` as
    dicts (a formatter written for azml-client's core keeps getting dicts).
    """
    return is_user_method(formatter, "format_messages_request_payload") and not _annotated_as_dicts(type(formatter))


def lc_chat_formatter(formatter: ContentFormatterBase) -> ContentFormatterBase:
    """The formatter the core chat model gets: a seed-style user formatter wrapped, any other one as is."""
    return SeedChatFormatter(formatter) if wants_lc_messages(formatter) else formatter


class SeedChatFormatter(ChatContentFormatterBase):
    """A user's chat formatter written for the seed, as the core sees it.

    ``build_chat_request`` hands the user's ``format_messages_request_payload`` the conversation as LangChain
    messages (tool calls and ``tool_call_id`` kept); everything else (name, headers, api types, answer
    parsing, streaming) is the wrapped formatter's.
    """

    def __init__(self, inner: ContentFormatterBase) -> None:
        super().__init__(legacy_escaping=inner.legacy_escaping)
        self.inner = inner
        self.content_type = inner.content_type
        self.accepts = inner.accepts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    @property
    def name(self) -> str:
        """The wrapped formatter's name."""
        return self.inner.name

    def check_api_type(self, api_type: ApiType | str) -> None:
        """Check ``api_type`` against the wrapped formatter's ``supported_api_types``."""
        self.inner.check_api_type(api_type)

    def seed_messages(self, messages: Sequence[Message]) -> list[Any]:
        """The conversation as LangChain messages (tool calls and ``tool_call_id`` kept)."""
        return to_lc_messages(messages)

    def call_format_messages_request_payload(
        self, messages: list[Any], model_kwargs: dict[str, Any], api_type: ApiType
    ) -> bytes:
        """Call the wrapped formatter's ``format_messages_request_payload``."""
        return self.inner.call_format_messages_request_payload(messages, model_kwargs, api_type)

    def call_format_response_payload(self, body: bytes, api_type: ApiType, *, status: int = 200) -> Any:
        """Call the wrapped formatter's ``format_response_payload``."""
        return self.inner.call_format_response_payload(body, api_type, status=status)

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> Any:
        """The wrapped ``format_response_payload`` (text, ``Generation`` or ``ChatGeneration``)."""
        return self.inner.call_format_response_payload(output, api_type)

    def parse_chat_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> ChatResult:
        """The wrapped chat formatter's parsing, or the seed-style ``format_response_payload`` of a plain one."""
        if isinstance(self.inner, ChatContentFormatterBase):
            return self.inner.parse_chat_response(body, api_type, status=status)
        return super().parse_chat_response(body, api_type, status=status)

    def parse_chat_stream_event(self, data: str, api_type: ApiType) -> ChatChunk | None:
        """The wrapped chat formatter's chunk parsing, or the OpenAI chat chunk reader."""
        if isinstance(self.inner, ChatContentFormatterBase):
            return self.inner.parse_chat_stream_event(data, api_type)
        return super().parse_chat_stream_event(data, api_type)


def _openai_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call.get("args", {}))},
    }


class CustomOpenAIChatContentFormatter(CoreOpenAIChat, variant_of="openai-chat"):
    """Chat models with the OpenAI-style schema (formatter ``openai-chat``), with the seed's LangChain API.

    It is :class:`azml_client.CustomOpenAIChatContentFormatter` plus what a formatter written for the seed
    uses: the static ``_convert_message_to_dict(message)``, ``SUPPORTED_ROLES``, a
    ``format_messages_request_payload`` that takes LangChain messages, and a ``format_response_payload``
    that returns a ``ChatGeneration``. Subclass it as you subclassed the seed's.
    """

    SUPPORTED_ROLES: ClassVar[list[str]] = ["user", "assistant", "system"]

    @staticmethod
    def _convert_message_to_dict(message: BaseMessage) -> dict[str, Any]:
        """Return a LangChain message as the seed did: ``{"role", "content"}``, the content escaped by hand.

        As the seed: human, AI, system messages and chat messages with a role in ``SUPPORTED_ROLES``, their
        str content passed through :meth:`escape_special_characters`. Beyond it: list content is kept as is,
        an AI message's tool calls go in ``tool_calls`` (OpenAI form), a tool message becomes
        ``{"role": "tool", "content", "tool_call_id"}``.

        Raises:
            ValueError: a message of another role (as the seed).
        """
        content: Any = message.content
        if isinstance(content, str):
            content = ContentFormatterBase.escape_special_characters(content)
        supported = CustomOpenAIChatContentFormatter.SUPPORTED_ROLES
        if isinstance(message, HumanMessage):
            return {"role": "user", "content": content}
        if isinstance(message, AIMessage):
            out: dict[str, Any] = {"role": "assistant", "content": content}
            if message.tool_calls:
                out["tool_calls"] = [_openai_tool_call(call) for call in message.tool_calls]
            return out
        if isinstance(message, SystemMessage):
            return {"role": "system", "content": content}
        if isinstance(message, ChatMessage) and message.role in supported:
            return {"role": message.role, "content": content}
        if isinstance(message, ToolMessage):
            return {"role": "tool", "content": content, "tool_call_id": message.tool_call_id}
        raise ValueError(
            f"Received unsupported role {getattr(message, 'role', message.type)!r} ({type(message).__name__}); "
            f"supported roles: {','.join(supported)}, and tool messages"
        )

    def format_messages_request_payload(
        self, messages: Any, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for a conversation of LangChain messages (or anything the core accepts).

        The same bytes as the core class: the messages as OpenAI message objects, not escaped (unless
        ``legacy_escaping``).
        """
        items = list(messages)
        if items and all(isinstance(item, BaseMessage) for item in items):
            items = to_core_messages(items)
        else:
            items = [to_core_messages([item])[0] if isinstance(item, BaseMessage) else item for item in items]
        return super().format_messages_request_payload(items, model_kwargs, api_type)

    def format_response_payload(  # type: ignore[override]  # the seed's return type
        self, output: bytes, api_type: ApiType = ApiType.dedicated
    ) -> ChatGeneration:
        """Return the first answer as the seed did: a ``ChatGeneration`` of an ``AIMessage`` (with tool calls)."""
        return chat_result(self.read_chat_answer(output, api_type), None).generations[0]


class LlamaChatContentFormatter(CustomOpenAIChatContentFormatter, CoreLlamaChat):
    """Deprecated alias of :class:`CustomOpenAIChatContentFormatter` (formatter name ``llama-chat``)."""


class MistralChatContentFormatter(CustomOpenAIChatContentFormatter, CoreMistralChat, variant_of="mistral-chat"):
    """Mistral chat models (formatter ``mistral-chat``), with the seed's LangChain API.

    A leading system message is folded into the first user message, as :class:`azml_client.MistralChatContentFormatter`.
    """
