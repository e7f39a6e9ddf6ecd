"""The completion surface: ``LLM`` turns a prompt into text through a completion formatter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing
from typing import Any, Literal, overload

from azml_client import _observability
from azml_client._config import ApiType, TimeoutLike
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import ContentFormatterBase
from azml_client._models._base import ModelBase, with_call
from azml_client._transport import EndpointClient
from azml_client._types import CallInfo, Completion, CompletionChunk

__all__ = ["LLM"]


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise ConfigurationError(f"a prompt must be a str, got {type(prompt).__name__}")
    return prompt


class LLM(ModelBase[str, str]):
    """A text-completion model behind an Azure ML online endpoint.

    Args:
        endpoint_url: the endpoint URL (env ``AZUREML_ENDPOINT_URL``).
        api_key: the key (env ``AZUREML_ENDPOINT_API_KEY``); or pass ``credential=``.
        formatter: a registered formatter name, a formatter instance or class (default ``"gpt2"`` on a dedicated
            endpoint, ``"openai"`` on a serverless one).
        model_kwargs: parameters sent with every call (``temperature``, ``max_new_tokens``...).
        client: an :class:`EndpointClient` to share; it is left open when this model closes.
        max_batch_concurrency: default ``max_concurrency`` of :meth:`abatch` (32).
        **client_options: the :class:`EndpointClient` keywords (``api_type``, ``deployment_name``,
            ``timeout``, ``retry``, ``credential``...), when ``client`` is not given.

    Every async method has a sync twin (``invoke``, ``complete``, ``batch``, ``batch_as_completed``,
    ``stream``) that runs on the client's own event-loop thread, so it works in scripts and inside a running
    loop (Jupyter). :meth:`acomplete` results and the first :meth:`astream` piece's call are described by
    ``result.call`` (:class:`CallInfo`).
    """

    _kind = "completion"

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        formatter: str | ContentFormatterBase | type[ContentFormatterBase] | None = None,
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

    async def _complete(self, prompt: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> Completion:
        otel = _observability.active()
        if otel is not None:
            return await _observability.traced(
                otel,
                self._client,
                "text_completion",
                kwargs,
                lambda extra: self._completion(prompt, kwargs, timeout, extra),
                _observability.describe_completion,
                lambda: _observability.prompt_json(prompt),
            )
        return await self._completion(prompt, kwargs, timeout, None)

    async def _completion(
        self, prompt: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None, extra: Mapping[str, str] | None
    ) -> Completion:
        api_type = self._client.api_type
        body = self._formatter.build_request(_check_prompt(prompt), kwargs, api_type)
        weight = self._weight(len(prompt), kwargs) if self._client.counts_tokens else 0.0
        headers = self._headers if extra is None else {**self._headers, **extra}
        response = await self._client.post(body, route="completions", headers=headers, timeout=timeout, weight=weight)
        completion = self._formatter.parse_response(response.body, api_type, status=response.status)
        if weight:
            self._settle(weight, completion.usage)
        return with_call(completion, response)

    async def _one(self, item: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> str:
        if _observability.active() is not None:
            return (await self._complete(item, kwargs, timeout)).text
        return await self._plain(item, kwargs, timeout)

    async def _plain(self, item: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> str:
        # What _completion does without describing the call: an untraced batch runs this per prompt.
        if self._client.counts_tokens:
            return (await self._completion(item, kwargs, timeout, None)).text
        api_type = self._client.api_type
        body = self._formatter.build_request(_check_prompt(item), kwargs, api_type)
        response = await self._client.post(body, route="completions", headers=self._headers, timeout=timeout)
        return self._formatter.parse_response(response.body, api_type, status=response.status).text

    async def acomplete(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Completion:
        """Complete ``prompt`` and return the text with its finish reason, usage, decoded answer and ``call``.

        Call-time ``model_kwargs`` and ``stop`` apply to this call only; ``timeout`` is a transport setting.
        """
        return await self._complete(prompt, self._call_kwargs(stop, model_kwargs), timeout)

    async def ainvoke(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> str:
        """Complete ``prompt`` and return the generated text."""
        return await self._one(prompt, self._call_kwargs(stop, model_kwargs), timeout)

    @overload
    async def acomplete_batch(
        self,
        prompts: Iterable[str],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: Literal[False] = ...,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        **model_kwargs: Any,
    ) -> list[Completion]: ...

    @overload
    async def acomplete_batch(
        self,
        prompts: Iterable[str],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: bool,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        **model_kwargs: Any,
    ) -> list[Completion | Exception]: ...

    async def acomplete_batch(
        self,
        prompts: Iterable[str],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> list[Completion] | list[Completion | Exception]:
        """Like :meth:`abatch`, but each result is the whole :class:`Completion` (choices, usage, ``call``)."""
        return await self._run_batch(
            self._complete,
            prompts,
            max_concurrency,
            return_exceptions,
            stop,
            timeout,
            model_kwargs,
            plain=lambda prompt, kwargs, timeout: self._completion(prompt, kwargs, timeout, None),
        )

    async def astream(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> AsyncIterator[str]:
        """Yield the text as it is generated.

        A serverless endpoint streams (server-sent events); a dedicated endpoint does not, so the whole
        answer comes as one piece.
        """
        async for chunk in self.astream_chunks(prompt, stop=stop, timeout=timeout, **model_kwargs):
            if chunk.text:
                yield chunk.text

    async def astream_chunks(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> AsyncIterator[CompletionChunk]:
        """Yield the answer as :class:`CompletionChunk` objects: text, then finish_reason / usage when known.

        The first chunk's ``call`` describes the HTTP call. A dedicated endpoint's whole answer is one chunk.
        """
        kwargs = self._call_kwargs(stop, model_kwargs)
        api_type = self._client.api_type
        if api_type is ApiType.dedicated:
            completion = await self._complete(prompt, kwargs, timeout)
            yield _whole_answer_chunk(completion, completion.call)
            return
        formatter = self._formatter
        body = formatter.build_request(_check_prompt(prompt), kwargs, api_type, stream=True)
        chunks = self._stream_chunks(
            body,
            "completions",
            timeout,
            lambda data: formatter.parse_stream_event(data, api_type),
            lambda whole: _whole_answer_chunk(formatter.parse_response(whole, api_type), None),
            "text_completion",
            kwargs,
            lambda: _observability.prompt_json(prompt),
        )
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    # ------------------------------------------------------------------ sync twins

    def invoke(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> str:
        """Sync twin of :meth:`ainvoke`."""
        return self._runner.run(lambda: self.ainvoke(prompt, stop=stop, timeout=timeout, **model_kwargs))

    def complete(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Completion:
        """Sync twin of :meth:`acomplete`."""
        return self._runner.run(lambda: self.acomplete(prompt, stop=stop, timeout=timeout, **model_kwargs))

    def complete_batch(
        self,
        prompts: Iterable[str],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> list[Completion | Exception]:
        """Sync twin of :meth:`acomplete_batch`."""
        return self._run_sync_batch(
            self.acomplete_batch, prompts, max_concurrency, return_exceptions, stop, timeout, model_kwargs
        )

    def stream(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Iterator[str]:
        """Sync twin of :meth:`astream`."""
        return self._runner.iterate(lambda: self.astream(prompt, stop=stop, timeout=timeout, **model_kwargs))


def _whole_answer_chunk(completion: Completion, call: CallInfo | None) -> CompletionChunk:
    """A whole (non-streamed) answer as the one chunk of a stream."""
    return CompletionChunk(
        text=completion.text,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
        raw=completion.raw,
        call=call,
    )
