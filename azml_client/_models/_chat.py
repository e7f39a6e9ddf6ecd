"""The chat surface: ``ChatModel`` sends conversations through a chat formatter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import aclosing
from typing import Any, cast

from azml_client import _observability
from azml_client._config import ApiType, TimeoutLike
from azml_client._formatters import ChatContentFormatterBase, ContentFormatterBase
from azml_client._models._base import ModelBase, with_call
from azml_client._transport import EndpointClient
from azml_client._types import CallInfo, ChatChunk, ChatResult, MessagesInput, content_text, to_messages

__all__ = ["ChatModel"]


class ChatModel(ModelBase[MessagesInput, ChatResult]):
    """A chat model behind an Azure ML online endpoint.

    ``messages`` may be a str (one user message), a list of :class:`Message`, of ``(role, content)`` tuples
    or of ``{"role": ..., "content": ...}`` dicts; roles are system, user, assistant and tool.

    Args:
        endpoint_url: the endpoint URL (env ``AZUREML_ENDPOINT_URL``).
        api_key: the key (env ``AZUREML_ENDPOINT_API_KEY``); or pass ``credential=``.
        formatter: a registered chat formatter name (default ``"openai-chat"``), an instance or a class.
        model_kwargs: parameters sent with every call (``temperature``, ``max_tokens``, ``tools``...).
        client: an :class:`EndpointClient` to share; it is left open when this model closes.
        max_batch_concurrency: default ``max_concurrency`` of :meth:`abatch` (32).
        **client_options: the :class:`EndpointClient` keywords, when ``client`` is not given.
    """

    _kind = "chat"

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        formatter: str | ContentFormatterBase | type[ContentFormatterBase] = "openai-chat",
        model_kwargs: Mapping[str, Any] | None = None,
        client: EndpointClient | None = None,
        max_batch_concurrency: int | None = None,
        **client_options: Any,
    ) -> None:
        # Spelled out (not inherited) so the signature shows this class's default formatter.
        super().__init__(
            endpoint_url,
            api_key,
            formatter=formatter,
            model_kwargs=model_kwargs,
            client=client,
            max_batch_concurrency=max_batch_concurrency,
            **client_options,
        )

    @property
    def _chat_formatter(self) -> ChatContentFormatterBase:
        # ModelBase checked at construction that the formatter is a chat formatter.
        return cast(ChatContentFormatterBase, self._formatter)

    async def _one(self, item: MessagesInput, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> ChatResult:
        otel = _observability.active()
        if otel is not None:
            messages = to_messages(item)
            return await _observability.traced(
                otel,
                self._client,
                "chat",
                kwargs,
                lambda extra: self._chat(messages, kwargs, timeout, extra),
                _observability.describe_chat,
                lambda: _observability.messages_json(messages),
            )
        return await self._chat(item, kwargs, timeout)

    async def _chat(
        self,
        item: MessagesInput,
        kwargs: Mapping[str, Any],
        timeout: TimeoutLike | None,
        extra: Mapping[str, str] | None = None,
    ) -> ChatResult:
        api_type = self._client.api_type
        formatter = self._chat_formatter
        messages = to_messages(item)
        body = formatter.build_chat_request(messages, kwargs, api_type)
        weight = 0.0
        if self._client.counts_tokens:
            weight = self._weight(sum(len(content_text(message.content)) for message in messages), kwargs)
        headers = self._headers if extra is None else {**self._headers, **extra}
        response = await self._client.post(body, route="chat", headers=headers, timeout=timeout, weight=weight)
        result = formatter.parse_chat_response(response.body, api_type, status=response.status)
        if weight:
            self._settle(weight, result.usage)
        return with_call(result, response)

    #: An untraced batch sends each conversation straight through :meth:`_chat` (one coroutine fewer per call).
    _plain = _chat

    async def ainvoke(
        self,
        messages: MessagesInput,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> ChatResult:
        """Send the conversation and return the answer (all ``n`` choices, tool calls, usage, and ``call``).

        Call-time ``model_kwargs`` and ``stop`` apply to this call only; ``timeout`` is a transport setting.
        """
        return await self._one(messages, self._call_kwargs(stop, model_kwargs), timeout)

    async def astream(
        self,
        messages: MessagesInput,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Yield the answer as it is generated: text deltas, then finish_reason and usage when known.

        Usage comes when asked with ``stream_options={"include_usage": True}``. A dedicated endpoint does not
        stream: its whole answer comes as one chunk. The first chunk's ``call`` describes the HTTP call.
        """
        kwargs = self._call_kwargs(stop, model_kwargs)
        api_type = self._client.api_type
        formatter = self._chat_formatter
        if api_type is ApiType.dedicated:
            result = await self._one(messages, kwargs, timeout)
            yield _whole_answer_chunk(result, result.call)
            return
        sent = to_messages(messages)
        body = formatter.build_chat_request(sent, kwargs, api_type, stream=True)
        chunks = self._stream_chunks(
            body,
            "chat",
            timeout,
            lambda data: formatter.parse_chat_stream_event(data, api_type),
            lambda whole: _whole_answer_chunk(formatter.parse_chat_response(whole, api_type), None),
            "chat",
            kwargs,
            lambda: _observability.messages_json(sent),
        )
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    # ------------------------------------------------------------------ sync twins

    def invoke(
        self,
        messages: MessagesInput,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> ChatResult:
        """Sync twin of :meth:`ainvoke`."""
        return self._runner.run(lambda: self.ainvoke(messages, stop=stop, timeout=timeout, **model_kwargs))

    def stream(
        self,
        messages: MessagesInput,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Iterator[ChatChunk]:
        """Sync twin of :meth:`astream`."""
        return self._runner.iterate(lambda: self.astream(messages, stop=stop, timeout=timeout, **model_kwargs))


def _whole_answer_chunk(result: ChatResult, call: CallInfo | None) -> ChatChunk:
    """A whole (non-streamed) answer as the one chunk of a stream."""
    return ChatChunk(
        content=result.content,
        role="assistant",
        finish_reason=result.finish_reason,
        usage=result.usage,
        raw=result.raw,
        call=call,
    )
