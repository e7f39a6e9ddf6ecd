"""What the LLM and the chat model share: the client they use, model kwargs, batching, sync twins, closing."""

from __future__ import annotations

import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from azml_client import _observability
from azml_client._config import TimeoutLike
from azml_client._exceptions import ConfigurationError, StreamError
from azml_client._formatters import ContentFormatterBase, default_formatter_name, registered_name, resolve_formatter
from azml_client._json import loads
from azml_client._models._batch import FailFast, check_concurrency, fail_fast_for, run_as_completed, run_batch
from azml_client._models._sync import LoopThread, existing_runner, runner_for
from azml_client._transport import NON_SSE_EVENT, EndpointClient, EventStream, Response, Route
from azml_client._types import CallInfo, Usage, new_call_info

__all__ = ["ModelBase", "call_info"]

In = TypeVar("In")
Out = TypeVar("Out")
Self = TypeVar("Self", bound="ModelBase[Any, Any]")


def call_info(answer: Response | EventStream) -> CallInfo:
    """Describe the HTTP call behind an answer (a whole Response, or an event stream whose headers arrived)."""
    headers = answer.headers
    return new_call_info(
        answer.status or 0,
        answer.attempts,
        answer.request_id,
        headers.get("azureml-model-deployment"),
        answer.elapsed,
        headers,
    )


_R = TypeVar("_R")


def with_call(result: _R, answer: Response | EventStream) -> _R:
    """Set ``result.call`` on a result the formatter has just built and nobody else has seen yet."""
    # The result classes are frozen for their users; filling in the one field the formatter cannot know,
    # before the result leaves the model layer, is cheaper than copying it with attrs.evolve.
    object.__setattr__(result, "call", call_info(answer))
    return result


def _error_event(data: str) -> StreamError:
    """The server's ``event: error`` as a typed error carrying its message (and code, when it gave one)."""
    try:
        decoded: Any = loads(data)
    except ValueError:
        decoded = None
    error = decoded.get("error", decoded) if isinstance(decoded, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    text = message if isinstance(message, str) and message else (data.strip() or "no details")
    return StreamError(
        f"the server reported an error in the event stream: {text[:500]}",
        data=data,
        code=None if code is None else str(code)[:200],
    )


_C = TypeVar("_C")


def _with_info(chunk: _C, call: CallInfo | None) -> _C:
    """``chunk`` with ``call`` set when given (the first chunk of a stream); see :func:`with_call`."""
    if call is not None:
        object.__setattr__(chunk, "call", call)
    return chunk


def _release_owned(client: EndpointClient) -> None:
    """What a model that made its own client releases when it is collected unclosed (or at exit)."""
    runner = existing_runner(client)
    if runner is not None and runner.running:
        runner.stop(client.aclose)
    else:
        client.discard_sessions()


class ModelBase(Generic[In, Out]):
    """Shared machinery of :class:`~azml_client.LLM` and :class:`~azml_client.ChatModel`."""

    _kind: Literal["completion", "chat"]

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
        fmt = resolve_formatter(
            formatter if formatter is not None else default_formatter_name(self._kind, self._client.api_type)
        )
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
        # A stream must ask for text/event-stream, whatever the formatter accepts for whole answers.
        self._stream_headers: Mapping[str, str] = {"Content-Type": fmt.content_type}
        self._finalizer = weakref.finalize(self, _release_owned, self._client) if self._owns_client else None

    @property
    def _runner(self) -> LoopThread:
        """The client's sync runner, on which every sync twin runs its coroutine."""
        return runner_for(self._client)

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

    async def _stream_chunks(
        self,
        body: bytes,
        route: Route,
        timeout: TimeoutLike | None,
        parse_chunk: Callable[[str], _C | None],
        parse_whole: Callable[[bytes], _C],
        operation: str = "chat",
        kwargs: Mapping[str, Any] | None = None,
        content: Callable[[], Any] | None = None,
    ) -> AsyncGenerator[_C, None]:
        """Yield the chunks of a streaming call until ``[DONE]``, the first one carrying the call's ``CallInfo``.

        ``parse_chunk`` reads one event's data (``None``: nothing to yield); an endpoint that ignored ``stream``
        and answered with a whole body gives one chunk from ``parse_whole``. Events that are not chunks (a
        keep-alive ``event: ping``) are skipped; ``event: error`` raises :class:`StreamError`. With OpenTelemetry
        configured the stream is one span (``operation``, ``kwargs`` and, when opted in, ``content()``).
        """
        call: CallInfo | None = None
        pending: CallInfo | None = None  # the call, until a chunk carried it
        headers = self._stream_headers
        scope = facts = None
        otel = _observability.active()
        if otel is not None:
            scope = _observability.call_scope(otel, self._client, operation, kwargs or {}, stream=True, content=content)
            facts = _observability.StreamFacts()
            headers = scope.headers(self._client, headers)
            scope.enter()  # left in this same step, once the answer's headers are in (or the call failed)
        try:
            async with self._client.stream(body, route=route, headers=headers, timeout=timeout) as events:
                async for event in events:
                    if call is None:
                        call = pending = call_info(events)
                        if scope is not None:
                            scope.leave()
                    if event.event == NON_SSE_EVENT:
                        whole = parse_whole(event.data.encode())
                        if scope is not None and facts is not None:
                            scope.chunk()
                            facts.add(whole)
                        yield _with_info(whole, pending)
                        return
                    if event.event == "error":
                        raise _error_event(event.data)
                    if event.event != "message":  # a keep-alive ping, or another kind the chunks do not use
                        continue
                    if event.data == "[DONE]":
                        return
                    chunk = parse_chunk(event.data)
                    if chunk is not None:
                        if scope is not None and facts is not None:
                            scope.chunk()
                            facts.add(chunk)
                        yield _with_info(chunk, pending)
                        pending = None
        except BaseException as error:
            if scope is not None:
                scope.leave()
                if isinstance(error, GeneratorExit) and facts is not None:  # stopped early: the call went well
                    scope.finish(**facts.describe(call))
                else:
                    scope.finish(error=error)
                scope = None
            raise
        finally:
            if scope is not None:
                scope.leave()
                if facts is not None:
                    scope.finish(**facts.describe(call))

    def _run_sync_batch(
        self,
        method: Callable[..., Coroutine[Any, Any, list[Any]]],
        inputs: Iterable[Any],
        max_concurrency: int | None,
        return_exceptions: bool,
        stop: str | list[str] | None,
        timeout: TimeoutLike | None,
        model_kwargs: Mapping[str, Any],
        **batch_options: Any,
    ) -> list[Any]:
        """The sync twin of a batch method: the inputs read here, the batch run on the client's runner."""
        items = list(inputs)
        return self._runner.run(
            lambda: method(
                items,
                max_concurrency=max_concurrency,
                return_exceptions=return_exceptions,
                stop=stop,
                timeout=timeout,
                **batch_options,
                **model_kwargs,
            )
        )

    def _run_batch(
        self,
        one: Callable[[Any, Mapping[str, Any], TimeoutLike | None], Awaitable[Any]],
        inputs: Iterable[Any],
        max_concurrency: int | None,
        return_exceptions: bool,
        stop: str | list[str] | None,
        timeout: TimeoutLike | None,
        model_kwargs: Mapping[str, Any],
        stop_on_systematic_failure: bool | FailFast = False,
        deadline: float | None = None,
        plain: Callable[[Any, Mapping[str, Any], TimeoutLike | None], Awaitable[Any]] | None = None,
    ) -> Awaitable[list[Any]]:
        """What every batch method does: check the limit, merge the kwargs once, run ``one`` per input in order.

        ``plain`` is ``one`` without its OpenTelemetry check, run per input when the batch found none at its start.
        """
        limit = check_concurrency(max_concurrency, self._batch_concurrency)
        guard = fail_fast_for(stop_on_systematic_failure)
        merged = self._call_kwargs(stop, model_kwargs)
        otel = _observability.active()
        if otel is not None:
            return self._traced_batch(otel, one, inputs, limit, return_exceptions, timeout, merged, guard, deadline)
        untraced = one if plain is None else plain
        return run_batch(
            lambda item: untraced(item, merged, timeout),
            inputs,
            max_concurrency=limit,
            return_exceptions=return_exceptions,
            fail_fast=guard,
            deadline=deadline,
        )

    async def _traced_batch(
        self,
        otel: Any,
        one: Callable[[Any, Mapping[str, Any], TimeoutLike | None], Awaitable[Any]],
        inputs: Iterable[Any],
        limit: int,
        return_exceptions: bool,
        timeout: TimeoutLike | None,
        merged: Mapping[str, Any],
        guard: FailFast | None,
        deadline: float | None,
    ) -> list[Any]:
        """A batch in one span; its workers are created inside it, so their calls' spans are its children."""
        with _observability.batch(otel, self._client, merged):
            return await run_batch(
                lambda item: one(item, merged, timeout),
                inputs,
                max_concurrency=limit,
                fail_fast=guard,
                return_exceptions=return_exceptions,
                deadline=deadline,
            )

    def _weight(self, characters: int, kwargs: Mapping[str, Any]) -> float:
        """A request's token estimate for a stated token quota, made as Azure makes it: prompt + ``max_tokens``.

        No tokenizer is at hand (none is in the stack, and tiktoken downloads its files at run time), so prompt
        tokens are estimated as characters / 4; the answer's usage corrects it (:meth:`_settle`).
        """
        budget = kwargs.get("max_tokens", kwargs.get("max_new_tokens"))
        completion = budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else 16
        return float(-(-characters // 4) + completion)

    def _settle(self, weight: float, usage: Usage | None) -> None:
        """Tell the client's token bucket what a request really used, when its answer said."""
        if weight and usage is not None and usage.total_tokens is not None:
            self._client.correct_tokens(weight, float(usage.total_tokens))

    # ------------------------------------------------------------------ batching

    async def _one(self, item: In, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> Out:
        """Run one input with already merged model kwargs, traced when OpenTelemetry is active."""
        raise NotImplementedError

    async def _plain(self, item: In, kwargs: Mapping[str, Any], timeout: TimeoutLike | None) -> Out:
        """What :meth:`_one` does untraced: the call an untraced batch makes per input (its hot path).

        A batch looks for OpenTelemetry once, when it starts; a batch that found none does not look again per
        input (a provider configured while it runs applies from the next batch).
        """
        raise NotImplementedError

    @overload
    async def abatch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: Literal[False] = ...,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out]: ...

    @overload
    async def abatch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: Literal[True],
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out | Exception]: ...

    @overload
    async def abatch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: bool,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out] | list[Out | Exception]: ...

    async def abatch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        stop_on_systematic_failure: bool | FailFast = False,
        deadline: float | None = None,
        **model_kwargs: Any,
    ) -> list[Out] | list[Out | Exception]:
        """Run every input concurrently (at most ``max_concurrency`` at once, default 32); results in input order.

        An :class:`LLM` returns the texts, a :class:`ChatModel` the :class:`ChatResult` objects. With
        ``return_exceptions=True`` a failed input gets its exception at its index instead of failing the whole
        batch; otherwise the first failure cancels the rest and is raised. Call-time ``model_kwargs`` and
        ``stop`` apply to every input of this batch.

        ``stop_on_systematic_failure=True`` (off by default: a library call's failures are the caller's to
        see) stops a batch whose last 20 finished calls all failed the same way for a reason no retry fixes
        (a wrong key, path or deployment, the same 400 for every input, a refused connection: the rule of
        :class:`~azml_client._models._batch.FailFast`, which may be passed instead of True for another
        threshold): no more inputs are sent and :class:`~azml_client.SystematicFailureError` is raised, even
        with ``return_exceptions=True``. Transient faults and throttling never stop a batch.

        ``deadline`` (seconds) bounds the whole batch, however long the endpoint keeps it waiting: when it runs
        out the calls still running are cancelled and every input without an answer gets an
        :class:`~azml_client.APITimeoutError` (raised, unless ``return_exceptions=True``). Each prompt's own
        ``timeout`` runs from its first send, not while it waits in the client's line.
        """
        return await self._run_batch(
            self._one,
            inputs,
            max_concurrency,
            return_exceptions,
            stop,
            timeout,
            model_kwargs,
            stop_on_systematic_failure,
            deadline,
            plain=self._plain,
        )

    def abatch_as_completed(
        self,
        inputs: Iterable[In] | AsyncIterable[In],
        *,
        max_concurrency: int | None = None,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        stop_on_systematic_failure: bool | FailFast = False,
        **model_kwargs: Any,
    ) -> AsyncIterator[tuple[int, Out | Exception]]:
        """Yield ``(input index, result or exception)`` as each call finishes.

        ``inputs`` may be any iterable or async iterable and is read lazily, so memory stays flat however
        many there are. Failures are yielded, not raised. Leaving the loop early cancels what is running. If
        ``inputs`` raises, the results of the inputs already taken are yielded first, then its error is raised.
        ``stop_on_systematic_failure`` (off by default) is :meth:`abatch`'s: once it trips no more inputs are
        taken, the calls running are yielded, then :class:`~azml_client.SystematicFailureError` is raised.
        """
        limit = check_concurrency(max_concurrency, self._batch_concurrency)
        guard = fail_fast_for(stop_on_systematic_failure)
        merged = self._call_kwargs(stop, model_kwargs)
        otel = _observability.active()
        if otel is not None:
            return _observability.traced_as_completed(
                otel,
                self._client,
                merged,
                lambda: run_as_completed(
                    lambda item: self._one(item, merged, timeout), inputs, max_concurrency=limit, fail_fast=guard
                ),
            )
        return run_as_completed(
            lambda item: self._plain(item, merged, timeout), inputs, max_concurrency=limit, fail_fast=guard
        )

    @overload
    def batch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: Literal[False] = ...,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out]: ...

    @overload
    def batch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: Literal[True],
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out | Exception]: ...

    @overload
    def batch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = ...,
        return_exceptions: bool,
        stop: str | list[str] | None = ...,
        timeout: TimeoutLike | None = ...,
        stop_on_systematic_failure: bool | FailFast = ...,
        deadline: float | None = ...,
        **model_kwargs: Any,
    ) -> list[Out] | list[Out | Exception]: ...

    def batch(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        stop_on_systematic_failure: bool | FailFast = False,
        deadline: float | None = None,
        **model_kwargs: Any,
    ) -> list[Out] | list[Out | Exception]:
        """Sync twin of :meth:`abatch`, with the same arguments.

        ``stop_on_systematic_failure=True`` (or a ``FailFast``) stops a batch whose last 20 finished calls all
        failed the same way no retry fixes, raising :class:`~azml_client.SystematicFailureError`; ``deadline``
        (seconds) bounds the whole batch, every input without an answer then getting an
        :class:`~azml_client.APITimeoutError`. See :meth:`abatch`.
        """
        options = {"stop_on_systematic_failure": stop_on_systematic_failure, "deadline": deadline}
        return self._run_sync_batch(
            self.abatch, inputs, max_concurrency, return_exceptions, stop, timeout, model_kwargs, **options
        )

    def batch_as_completed(
        self,
        inputs: Iterable[In],
        *,
        max_concurrency: int | None = None,
        stop: str | list[str] | None = None,
        timeout: TimeoutLike | None = None,
        stop_on_systematic_failure: bool | FailFast = False,
        **model_kwargs: Any,
    ) -> Iterable[tuple[int, Out | Exception]]:
        """Sync twin of :meth:`abatch_as_completed` (a sync iterable of inputs, read lazily).

        With ``stop_on_systematic_failure`` (off by default) no more inputs are taken once the rule trips, the
        calls running are yielded, then :class:`~azml_client.SystematicFailureError` is raised.
        """
        return self._runner.iterate(
            lambda: self.abatch_as_completed(
                inputs,
                max_concurrency=max_concurrency,
                stop=stop,
                timeout=timeout,
                stop_on_systematic_failure=stop_on_systematic_failure,
                **model_kwargs,
            )
        )

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the client when this model created it (a shared ``client=`` is left open)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            await self._client.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`; safe to call from a script or inside a running loop."""
        if self._finalizer is not None:
            self._finalizer.detach()
            runner = existing_runner(self._client)
            if runner is not None and runner.running:
                runner.stop(self._client.aclose)
            else:
                self._client.close()

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
        from azml_client._models._persist import ModelConfig, write_config  # cattrs only for those who save

        name = registered_name(self._formatter)
        if name is None:
            raise ConfigurationError(
                f"formatter {type(self._formatter).__name__} is not registered, so a saved config could not name "
                "it: register it with @azml_client.register_formatter('name') (or an 'azml_client.formatters' "
                "entry point)"
            )
        client = self._client
        config = ModelConfig(
            kind="chat" if self._kind == "chat" else "llm",
            endpoint_url=client.endpoint_url,
            api_type=client.api_type,
            deployment_name=client.deployment_name,
            formatter=name,
            legacy_escaping=bool(getattr(self._formatter, "legacy_escaping", False)),
            model_kwargs=dict(self._model_kwargs),
            timeout=client.timeout,
            retry=client.retry,
            max_connections=client.max_connections,
            max_concurrency=client.max_concurrency,
        )
        write_config(config, Path(path))
