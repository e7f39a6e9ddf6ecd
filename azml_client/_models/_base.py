"""What the LLM and the chat model share: the client they use, model kwargs, batching, sync twins, closing."""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Literal, TypeVar

from azml_client._config import TimeoutLike
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import ContentFormatterBase, resolve_formatter
from azml_client._models._batch import check_concurrency, run_as_completed, run_batch
from azml_client._models._sync import LoopThread
from azml_client._transport import NON_SSE_EVENT, EndpointClient, Route

__all__ = ["ModelBase"]

In = TypeVar("In")
Out = TypeVar("Out")
Self = TypeVar("Self", bound="ModelBase[Any, Any]")

_MISSING: Any = object()


def _finalize(thread: LoopThread, client: EndpointClient | None) -> None:
    """What a model left unclosed releases when it is collected (or at exit): its thread and its client."""
    if client is not None and thread.running:
        thread.stop(client.aclose)
    else:
        thread.stop()
        if client is not None:
            client.discard_sessions()


class ModelBase(Generic[In, Out]):
    """Shared machinery of :class:`~azml_client.LLM` and :class:`~azml_client.ChatModel`."""

    _kind: Literal["completion", "chat"]
    _default_formatter: str

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        formatter: str | ContentFormatterBase | type[ContentFormatterBase] | None = None,  # None: the default
        model_kwargs: Mapping[str, Any] | None = None,
        client: EndpointClient | None = None,
        max_batch_concurrency: int | None = None,
        **client_options: Any,
    ) -> None:
        if client is not None:
            if not isinstance(client, EndpointClient):
                raise ConfigurationError(f"client must be an EndpointClient, got {type(client).__name__}")
            if endpoint_url is not None or api_key is not None or client_options:
                named = sorted(
                    {*client_options, *(["endpoint_url"] if endpoint_url else []), *(["api_key"] if api_key else [])}
                )
                raise ConfigurationError(
                    f"pass either client= or endpoint options, not both (got client= and {', '.join(named)})"
                )
            self._client = client
            self._owns_client = False
        else:
            try:
                self._client = EndpointClient(endpoint_url, api_key, **client_options)
            except TypeError as exc:
                raise ConfigurationError(f"unknown option: {exc}") from None
            self._owns_client = True
        fmt = resolve_formatter(formatter if formatter is not None else self._default_formatter)
        if fmt.kind != self._kind:
            other = "ChatModel" if fmt.kind == "chat" else "LLM"
            raise ConfigurationError(
                f"formatter {fmt.name!r} is a {fmt.kind} formatter; {type(self).__name__} needs a {self._kind} "
                f"formatter (use {other} for this one)"
            )
        fmt.check_api_type(self._client.api_type)
        self._formatter = fmt
        if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
            raise ConfigurationError(f"model_kwargs must be a mapping, got {type(model_kwargs).__name__}")
        self._model_kwargs: Mapping[str, Any] = MappingProxyType(dict(model_kwargs or {}))
        if "timeout" in self._model_kwargs:
            raise ConfigurationError("timeout is a transport setting: pass timeout=, not model_kwargs={'timeout': ...}")
        self._batch_concurrency = check_concurrency(max_batch_concurrency)
        self._headers: Mapping[str, str] = {"Content-Type": fmt.content_type, "Accept": fmt.accepts}
        self._loop_thread = LoopThread()
        self._finalizer = weakref.finalize(
            self, _finalize, self._loop_thread, self._client if self._owns_client else None
        )

    # ------------------------------------------------------------------ properties

    @property
    def client(self) -> EndpointClient:
        """The transport this model sends through."""
        return self._client

    @property
    def formatter(self) -> ContentFormatterBase:
        """The formatter that builds request bodies and parses answers."""
        return self._formatter

    @property
    def model_kwargs(self) -> Mapping[str, Any]:
        """The construction-time model parameters (read-only; calls never change them)."""
        return self._model_kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client={self._client!r}, formatter={self._formatter.name!r})"

    # ------------------------------------------------------------------ per-call helpers

    def _call_kwargs(self, stop: str | Iterable[str] | None, call_kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Merge call-time kwargs and ``stop`` over the construction-time ones, without mutating either."""
        if not call_kwargs and stop is None:
            return self._model_kwargs
        merged = dict(self._model_kwargs)
        merged.update(call_kwargs)
        if stop is not None:
            if isinstance(stop, str):
                merged["stop"] = [stop]
            else:
                stops = list(stop)
                if not all(isinstance(item, str) for item in stops):
                    raise ConfigurationError(f"stop must be a str or a list of str, got {stop!r}")
                merged["stop"] = stops
        return merged

    async def _stream_payloads(
        self, body: bytes, route: Route, timeout: TimeoutLike | None
    ) -> AsyncGenerator[tuple[bool, str], None]:
        """Yield ``(False, data)`` for each event of a streaming call until ``[DONE]``.

        An endpoint that ignored ``stream`` and answered with a whole body gives one ``(True, body)``.
        """
        async with self._client.stream(body, route=route, headers=self._headers, timeout=timeout) as events:
            async for event in events:
                if event.event == NON_SSE_EVENT:
                    yield True, event.data
                    return
                if event.data == "[DONE]":
                    return
                yield False, event.data

    # ------------------------------------------------------------------ batching

    async def _one(self, item: In, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> Out:
        """Run one input with already merged model kwargs (what a batch calls per input)."""
        raise NotImplementedError

    async def abatch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> list[Any]:
        """Run every input concurrently (at most ``max_concurrency`` at once) and return results in input order.

        With ``return_exceptions=True`` a failed input gets its exception at its index instead of failing the
        whole batch; otherwise the first failure cancels the rest and is raised.
        """
        limit = check_concurrency(max_concurrency, self._batch_concurrency)
        merged = self._call_kwargs(stop, model_kwargs)
        return await run_batch(
            lambda item: self._one(item, merged, timeout),
            inputs,
            max_concurrency=limit,
            return_exceptions=return_exceptions,
        )

    def abatch_as_completed(
        self,
        inputs: Iterable[In] | AsyncIterable[In],
        *,
        max_concurrency: int | None = None,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(input index, result or exception)`` as each call finishes.

        ``inputs`` may be any iterable or async iterable and is read lazily, so memory stays flat however
        many there are. Failures are yielded, not raised. Leaving the loop early cancels what is running.
        """
        limit = check_concurrency(max_concurrency, self._batch_concurrency)
        merged = self._call_kwargs(stop, model_kwargs)
        return run_as_completed(lambda item: self._one(item, merged, timeout), inputs, max_concurrency=limit)

    def batch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> list[Any]:
        """Sync twin of :meth:`abatch`."""
        items = list(inputs)
        return self._loop_thread.run(
            lambda: self.abatch(
                items,
                max_concurrency=max_concurrency,
                return_exceptions=return_exceptions,
                stop=stop,
                timeout=timeout,
                **model_kwargs,
            )
        )

    def batch_as_completed(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        **model_kwargs: Any,
    ) -> Iterable[tuple[int, Any]]:
        """Sync twin of :meth:`abatch_as_completed` (a sync iterable of inputs, read lazily)."""
        return self._loop_thread.iterate(
            lambda: self.abatch_as_completed(
                inputs, max_concurrency=max_concurrency, stop=stop, timeout=timeout, **model_kwargs
            )
        )

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Release the client (when this model created it) and the sync twins' thread."""
        if self._owns_client:
            await self._client.aclose()
        self._finalizer.detach()
        self._loop_thread.stop()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`; safe to call from a script or inside a running loop."""
        self._finalizer.detach()
        if self._owns_client:
            if not self._loop_thread.running:
                self._loop_thread.run(_noop)
            self._loop_thread.stop(self._client.aclose)
        else:
            self._loop_thread.stop()

    async def __aenter__(self: Self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ configuration

    def save(self, path: str | Path) -> None:
        """Write what is needed to rebuild this model (never a key or token) to a ``.json`` or ``.yaml`` file."""
        from azml_client._models._persist import save_model

        save_model(self, Path(path))


async def _noop() -> None:
    return None
