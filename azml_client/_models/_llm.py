"""The completion surface: ``LLM`` turns a prompt into text through a completion formatter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing
from typing import Any

from azml_client._config import ApiType, TimeoutLike
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import ContentFormatterBase
from azml_client._models._base import ModelBase
from azml_client._transport import EndpointClient, Response
from azml_client._types import Completion

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
        formatter: a registered formatter name (default ``"gpt2"``), a formatter instance or class.
        model_kwargs: parameters sent with every call (``temperature``, ``max_new_tokens``...).
        client: an :class:`EndpointClient` to share; it is left open when this model closes.
        max_batch_concurrency: default ``max_concurrency`` of :meth:`abatch` (32).
        **client_options: the :class:`EndpointClient` keywords (``api_type``, ``deployment_name``,
            ``timeout``, ``retry``, ``credential``...), when ``client`` is not given.

    Every async method has a sync twin (``invoke``, ``complete``, ``batch``, ``batch_as_completed``,
    ``stream``) that runs on a thread of the model's own, so it works in scripts and inside a running loop
    (Jupyter).
    """

    _kind = "completion"
    _default_formatter = "gpt2"

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        formatter: str | ContentFormatterBase | type[ContentFormatterBase] = "gpt2",
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

    async def _send(
        self, prompt: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None
    ) -> tuple[Completion, Response]:
        api_type = self._client.api_type
        body = self._formatter.build_request(_check_prompt(prompt), kwargs, api_type)
        response = await self._client.post(body, route="completions", headers=self._headers, timeout=timeout)
        return self._formatter.parse_response(response.body, api_type, status=response.status), response

    async def _one(self, item: str, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> str:
        # What _send does, one coroutine shallower: a batch runs this once per prompt.
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
        """Complete ``prompt`` and return the text with its finish reason, usage and decoded answer.

        Call-time ``model_kwargs`` and ``stop`` apply to this call only; ``timeout`` is a transport setting.
        """
        completion, _ = await self._send(prompt, self._call_kwargs(stop, model_kwargs), timeout)
        return completion

    async def ainvoke(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> str:
        """Complete ``prompt`` and return the generated text."""
        completion, _ = await self._send(prompt, self._call_kwargs(stop, model_kwargs), timeout)
        return completion.text

    async def abatch(
        self,
        inputs: Iterable[str],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> list[str | Exception]:
        """Complete every prompt concurrently (at most ``max_concurrency`` at once, default 32), in input order.

        With ``return_exceptions=True`` a failed prompt gets its exception at its index; otherwise the first
        failure cancels the rest and is raised.
        """
        return await super().abatch(
            inputs,
            max_concurrency=max_concurrency,
            return_exceptions=return_exceptions,
            stop=stop,
            timeout=timeout,
            **model_kwargs,
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
        kwargs = self._call_kwargs(stop, model_kwargs)
        api_type = self._client.api_type
        if api_type is ApiType.dedicated:
            completion, _ = await self._send(prompt, kwargs, timeout)
            yield completion.text
            return
        body = self._formatter.build_request(_check_prompt(prompt), kwargs, api_type, stream=True)
        async with aclosing(self._stream_payloads(body, "completions", timeout)) as payloads:
            async for whole, data in payloads:
                if whole:
                    yield self._formatter.parse_response(data.encode(), api_type).text
                    return
                chunk = self._formatter.parse_stream_event(data, api_type)
                if chunk is not None and chunk.text:
                    yield chunk.text

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
        return self._loop_thread.run(lambda: self.ainvoke(prompt, stop=stop, timeout=timeout, **model_kwargs))

    def complete(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Completion:
        """Sync twin of :meth:`acomplete`."""
        return self._loop_thread.run(lambda: self.acomplete(prompt, stop=stop, timeout=timeout, **model_kwargs))

    def stream(
        self,
        prompt: str,
        *,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Iterator[str]:
        """Sync twin of :meth:`astream`."""
        return self._loop_thread.iterate(lambda: self.astream(prompt, stop=stop, timeout=timeout, **model_kwargs))
