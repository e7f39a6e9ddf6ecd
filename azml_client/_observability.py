"""OpenTelemetry GenAI spans and metrics for model calls, layered over the client's per-attempt seam.

Nothing here imports OpenTelemetry until a model call asks :func:`active`; that imports ``opentelemetry.trace``
and ``opentelemetry.metrics`` once (the API only, never the SDK) and answers whether a tracer or meter provider
other than the API's default is configured. With none, a call costs one function call and a global read.

Span: ``{gen_ai.operation.name} {gen_ai.request.model}``, kind CLIENT, with the GenAI semantic conventions'
attributes. ``gen_ai.provider.name`` and the older ``gen_ai.system`` are both :data:`PROVIDER` (``"azure.ml"``:
the conventions' registry lists ``azure.ai.inference`` and ``azure.ai.openai`` but nothing for Azure ML online
endpoints). The Azure Monitor exporter types a GenAI dependency by ``gen_ai.system``, so Application Insights
shows these calls as dependencies of type ``azure.ml``. ``gen_ai.request.model`` is the ``model`` the call sent
when it sent one, else the client's deployment name (dedicated endpoints), else absent (the span is then named
by the operation alone).

A batch is one span (``batch {model}``); the first :data:`BATCH_CALL_SPANS` calls (env
``AZUREML_OTEL_BATCH_CALL_SPANS``, default 10; 0 for none, -1 for all) get their own child span, the others only
add to the batch span's counters (``azureml.batch.calls`` / ``errors`` / ``retries`` / ``throttled`` and the token
sums), so a million-prompt batch is a trace of 11 spans.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from azml_client._transport import Attempt, EndpointClient

__all__ = ["PROVIDER", "BatchScope", "CallScope", "active", "batch_scope", "call_scope", "record_attempt"]

PROVIDER = "azure.ml"
"""The one ``gen_ai.provider.name`` / ``gen_ai.system`` value of Azure ML online endpoints."""

_SCOPE_NAME = "azml_client"
_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
_BATCH_SPANS_ENV = "AZUREML_OTEL_BATCH_CALL_SPANS"
_DEFAULT_BATCH_CALL_SPANS = 10
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# Request parameters recorded (the model kwarg -> the attribute); values only of plain types, never content.
_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_new_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}

_otel: _Otel | None = None  # set once OpenTelemetry was found and a provider configured
_checked = False  # whether opentelemetry could not be imported (then never asked again)
_api: tuple[Any, Any, Any, Any] | None = None  # (trace, metrics, propagate, context) once imported
# The clients whose concurrency limit the gauge reports: id -> (a weak reference to it, its server.address).
_clients: dict[int, tuple[Any, str]] = {}
_CALL: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("azml_otel_call", default=None)
_BATCH: contextvars.ContextVar[BatchScope | None] = contextvars.ContextVar("azml_otel_batch", default=None)


class _Otel:
    """The OpenTelemetry objects, made once a provider is configured."""

    def __init__(
        self,
        trace: Any,
        metrics: Any,
        propagate: Any,
        context: Any,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        self.trace = trace
        self.propagate = propagate
        self.context = context
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(_SCOPE_NAME)
        self.client_kind = trace.SpanKind.CLIENT
        self.error_status = trace.Status(trace.StatusCode.ERROR)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE_NAME)
        latest = "gen_ai_latest_experimental" in os.environ.get(_OPT_IN_ENV, "")
        prefix = "gen_ai.client.inference." if latest else "gen_ai.client."
        self.duration = meter.create_histogram(
            f"{prefix}operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            f"{prefix}token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            f"{prefix}operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed answer",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.clients = _clients

        def observe_limits(options: Any) -> Iterable[Any]:
            for key, (ref, address) in list(_clients.items()):
                client = ref()
                if client is None or client.closed:
                    _clients.pop(key, None)
                    continue
                yield metrics.Observation(client.stats().limit, {"server.address": address})

        meter.create_observable_gauge(
            "azureml.client.concurrency.limit",
            callbacks=[observe_limits],
            unit="{request}",
            description="The client's adaptive concurrency limit",
        )


def _load() -> _Otel | None:
    """Import the OpenTelemetry API (once) and build the instruments once a provider is configured."""
    global _otel, _checked, _api
    if _api is None:
        try:
            from opentelemetry import context, metrics, propagate, trace
        except ImportError:
            _checked = True
            return None
        _api = (trace, metrics, propagate, context)
    # Only the API's public calls: the project reads dependency internals in one room only (the session pool).
    trace, metrics, propagate, context = _api
    tracer_set = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    meter_provider = metrics.get_meter_provider()
    meter_set = not isinstance(meter_provider, metrics.NoOpMeterProvider) and (
        type(meter_provider).__name__ != "_ProxyMeterProvider"
    )
    if not (tracer_set or meter_set):
        return None
    _otel = _Otel(trace, metrics, propagate, context)
    return _otel


def active() -> _Otel | None:
    """The instrumentation, when OpenTelemetry is importable and a provider configured; else ``None`` (cheap)."""
    if _otel is not None:
        return _otel
    if _checked:
        return None
    return _load()


def _reset_for_tests() -> None:
    """Forget what :func:`active` found (tests that switch providers or block the import)."""
    global _otel, _checked, _api
    _otel, _checked, _api = None, False, None


def _use_providers(tracer_provider: Any, meter_provider: Any) -> None:
    """Instrument with these providers instead of the global ones (tests: the global API stays untouched)."""
    global _otel
    from opentelemetry import context, metrics, propagate, trace

    _otel = _Otel(trace, metrics, propagate, context, tracer_provider, meter_provider)


def capture_content() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` opts in to recording message content."""
    return os.environ.get(_CAPTURE_ENV, "").strip().lower() == "true"


def batch_call_spans() -> int:
    """How many calls of a batch get their own span (env ``AZUREML_OTEL_BATCH_CALL_SPANS``; -1: all)."""
    raw = os.environ.get(_BATCH_SPANS_ENV, "").strip()
    try:
        return int(raw) if raw else _DEFAULT_BATCH_CALL_SPANS
    except ValueError:
        return _DEFAULT_BATCH_CALL_SPANS


def _server(client: EndpointClient) -> tuple[str, int]:
    from yarl import URL

    url = URL(client.endpoint_url)
    return url.host or "", url.port or (443 if url.scheme == "https" else 80)


def _model_name(client: EndpointClient, kwargs: Mapping[str, Any]) -> str | None:
    model = kwargs.get("model")
    if isinstance(model, str) and model:
        return model
    return client.deployment_name


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    return None


class CallScope:
    """One model call's span (or, past a batch's span budget, its batch's counters) and its metrics."""

    __slots__ = (
        "_attached",
        "_attrs",
        "_batch",
        "_first_chunk",
        "_otel",
        "_start",
        "_token",
        "attempts",
        "request_id",
        "span",
    )

    def __init__(self, otel: _Otel, span: Any, attrs: dict[str, Any], batch: BatchScope | None) -> None:
        self._otel = otel
        self.span = span
        self._attrs = attrs  # the metrics' attributes
        self._batch = batch
        self._start = time.perf_counter()
        self._first_chunk: float | None = None
        self._token: contextvars.Token[CallScope | None] | None = None
        self._attached: Any = None
        self.attempts = 0
        self.request_id: str | None = None

    # The attempt seam: the client's hooks run in the calling task, where this scope is the current one.
    def attempt(self, event: Attempt) -> None:
        """Record one :class:`~azml_client.Attempt` of this call: retries and throttling waits as span events."""
        self.attempts = max(self.attempts, event.attempt)
        if event.request_id:
            self.request_id = event.request_id
        if event.kind not in ("retry", "throttled"):
            return
        if self._batch is not None:
            self._batch.count(event.kind)
        if self.span is not None:
            attributes: dict[str, Any] = {"azureml.attempt": event.attempt, "azureml.delay_s": event.delay or 0.0}
            if event.status is not None:
                attributes["http.response.status_code"] = event.status
            if event.error is not None:
                attributes["error.type"] = event.error
            if event.request_id:
                attributes["azureml.request_id"] = event.request_id
            attributes["azureml.concurrency.limit"] = event.limit
            self.span.add_event(f"azureml.{event.kind}", attributes)

    def enter(self) -> None:
        """Make this scope the one the attempt seam reports to, and its span the current one (in this context)."""
        self._token = _CALL.set(self)
        if self.span is not None:
            otel = self._otel
            self._attached = otel.context.attach(otel.trace.set_span_in_context(self.span))

    def leave(self) -> None:
        """Undo :meth:`enter` (in the same context)."""
        token, self._token = self._token, None
        attached, self._attached = self._attached, None
        if attached is not None:
            self._otel.context.detach(attached)
        if token is not None:
            try:
                _CALL.reset(token)
            except ValueError:  # a stream resumed in another context (the sync twin's steps): set it back plainly
                _CALL.set(None)

    def headers(self, client: EndpointClient, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``headers`` plus the span's W3C ``traceparent`` when the client asks to propagate it."""
        if not client.propagate_trace or self.span is None:
            return headers
        carrier: dict[str, str] = dict(headers)
        self._otel.propagate.inject(carrier, context=self._otel.trace.set_span_in_context(self.span))
        return carrier

    def chunk(self) -> None:
        """Note a streamed chunk: the first one sets the time to first chunk."""
        if self._first_chunk is None:
            self._first_chunk = time.perf_counter() - self._start
            if self.span is not None:
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", self._first_chunk)

    def finish(
        self,
        *,
        call: Any = None,
        usage: Any = None,
        finish_reasons: Iterable[str | None] = (),
        response_id: str | None = None,
        response_model: str | None = None,
        output: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """End the call: response attributes, the error, metrics; then end its span."""
        otel, span, attrs = self._otel, self.span, self._attrs
        elapsed = time.perf_counter() - self._start
        attempts = getattr(call, "attempts", None) or getattr(error, "attempts", None) or self.attempts
        request_id = getattr(call, "request_id", None) or getattr(error, "request_id", None) or self.request_id
        deployment = getattr(call, "deployment", None) or getattr(error, "deployment", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        if error is not None:
            attrs = {**attrs, "error.type": type(error).__name__}
        if response_model:
            attrs = {**attrs, "gen_ai.response.model": response_model}
        if span is not None:
            values: dict[str, Any] = {}
            if attempts:
                values["azureml.attempts"] = attempts
            if request_id:
                values["azureml.request_id"] = request_id
            if deployment:
                values["azureml.deployment"] = deployment
            if response_id:
                values["gen_ai.response.id"] = response_id
            if response_model:
                values["gen_ai.response.model"] = response_model
            reasons = [reason for reason in finish_reasons if reason]
            if reasons:
                values["gen_ai.response.finish_reasons"] = reasons
            if input_tokens is not None:
                values["gen_ai.usage.input_tokens"] = input_tokens
            if output_tokens is not None:
                values["gen_ai.usage.output_tokens"] = output_tokens
            status = getattr(error, "status_code", None) or getattr(call, "status", None)
            if status:
                values["http.response.status_code"] = status
            if output is not None and capture_content():
                values["gen_ai.output.messages"] = output
            if error is not None:
                values["error.type"] = type(error).__name__
                span.set_status(otel.error_status)
            span.set_attributes(values)
            span.end()
        otel.duration.record(elapsed, attrs)
        if input_tokens is not None:
            otel.tokens.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            otel.tokens.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if self._first_chunk is not None:
            otel.first_chunk.record(self._first_chunk, attrs)
        if self._batch is not None:
            self._batch.done(error, input_tokens, output_tokens)


class BatchScope:
    """A batch's span: calls past its span budget only add to its counters."""

    __slots__ = ("_left", "counts", "span")

    def __init__(self, span: Any, budget: int) -> None:
        self.span = span
        self._left = budget
        self.counts = {"calls": 0, "errors": 0, "retry": 0, "throttled": 0, "input_tokens": 0, "output_tokens": 0}

    def take_span(self) -> bool:
        """Whether the next call gets a span of its own (one of the first N)."""
        if self._left == 0:
            return False
        if self._left > 0:
            self._left -= 1
        return True

    def count(self, kind: str) -> None:
        """Count a retry or a throttling wait of one of the batch's calls."""
        self.counts[kind] += 1

    def done(self, error: BaseException | None, input_tokens: int | None, output_tokens: int | None) -> None:
        """Count one finished call of the batch."""
        counts = self.counts
        counts["calls"] += 1
        if error is not None:
            counts["errors"] += 1
        counts["input_tokens"] += input_tokens or 0
        counts["output_tokens"] += output_tokens or 0


def record_attempt(event: Attempt) -> None:
    """The hook the model layer subscribes to its client: hand the attempt to the current call's scope."""
    scope = _CALL.get()
    if scope is not None:
        scope.attempt(event)


def _register(otel: _Otel, client: EndpointClient, address: str) -> None:
    key = id(client)
    known = otel.clients.get(key)
    if known is None or known[0]() is not client:
        import weakref

        otel.clients[key] = (weakref.ref(client), address)
        client.add_attempt_hook(record_attempt)


def call_scope(
    otel: _Otel,
    client: EndpointClient,
    operation: str,
    kwargs: Mapping[str, Any],
    *,
    stream: bool = False,
    content: Callable[[], Any] | None = None,
) -> CallScope:
    """Start one model call's span (made current by the caller with :meth:`CallScope.enter`)."""
    attrs, model, address = _base_attributes(client, kwargs)
    _register(otel, client, address)
    attrs["gen_ai.operation.name"] = operation
    batch = _BATCH.get()
    if batch is not None and not batch.take_span():
        return CallScope(otel, None, attrs, batch)
    span_attrs = dict(attrs)
    for key, name in _PARAMS.items():
        value = _scalar(kwargs.get(key))
        if value is not None:
            span_attrs[name] = value
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        span_attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(item, str) for item in stop):
        span_attrs["gen_ai.request.stop_sequences"] = list(stop)
    span_attrs["gen_ai.request.stream"] = stream
    if client.deployment_name:
        span_attrs["azureml.deployment"] = client.deployment_name
    if content is not None and capture_content():
        span_attrs["gen_ai.input.messages"] = content()
    name = f"{operation} {model}" if model else operation
    span = otel.tracer.start_span(name, kind=otel.client_kind, attributes=span_attrs)
    return CallScope(otel, span, attrs, batch)


_R = TypeVar("_R")
_T = TypeVar("_T")
_END: Any = object()


async def traced(
    otel: _Otel,
    client: EndpointClient,
    operation: str,
    kwargs: Mapping[str, Any],
    run: Callable[[Mapping[str, str] | None], Awaitable[_R]],
    describe: Callable[[_R], dict[str, Any]],
    content: Callable[[], Any] | None = None,
) -> _R:
    """Run one whole (not streamed) call in its span: ``run(extra headers or None)``, then ``describe(result)``."""
    scope = call_scope(otel, client, operation, kwargs, content=content)
    extra = scope.headers(client, {}) if client.propagate_trace else None
    scope.enter()
    try:
        result = await run(extra or None)
    except BaseException as error:
        scope.leave()
        scope.finish(error=error)
        raise
    scope.leave()
    scope.finish(**describe(result))
    return result


def _base_attributes(client: EndpointClient, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, str]:
    """What every span of a client carries (provider, server, the requested model), the model and the address."""
    address, port = _server(client)
    model = _model_name(client, kwargs)
    attrs: dict[str, Any] = {
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.system": PROVIDER,
        "server.address": address,
        "server.port": port,
    }
    if model:
        attrs["gen_ai.request.model"] = model
    return attrs, model, address


def _batch_span(otel: _Otel, client: EndpointClient, kwargs: Mapping[str, Any]) -> BatchScope:
    attrs, model, _ = _base_attributes(client, kwargs)
    name = f"batch {model}" if model else "batch"
    span = otel.tracer.start_span(name, kind=otel.trace.SpanKind.INTERNAL, attributes=attrs)
    return BatchScope(span, batch_call_spans())


def _end_batch(otel: _Otel, scope: BatchScope, error: BaseException | None) -> None:
    span = scope.span
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(otel.error_status)
    span.set_attributes({f"azureml.batch.{key}": value for key, value in scope.counts.items()})
    span.end()


@contextlib.contextmanager
def batch(otel: _Otel, client: EndpointClient, kwargs: Mapping[str, Any]) -> Iterator[BatchScope]:
    """A batch's span, current (with its budget of call spans) for what runs inside, tasks created there too."""
    scope = _batch_span(otel, client, kwargs)
    token = _BATCH.set(scope)
    attached = otel.context.attach(otel.trace.set_span_in_context(scope.span))
    try:
        yield scope
    except BaseException as error:
        _end_batch(otel, scope, error)
        raise
    else:
        _end_batch(otel, scope, None)
    finally:
        otel.context.detach(attached)
        _BATCH.reset(token)


async def traced_as_completed(
    otel: _Otel, client: EndpointClient, kwargs: Mapping[str, Any], make: Callable[[], AsyncIterator[_T]]
) -> AsyncIterator[_T]:
    """``make()``'s items in a batch span: its workers start in the first step, where the span is current."""
    scope = _batch_span(otel, client, kwargs)
    inner = make()
    failure: BaseException | None = None
    try:
        token = _BATCH.set(scope)
        attached = otel.context.attach(otel.trace.set_span_in_context(scope.span))
        try:
            first = await anext(inner, _END)
        finally:
            otel.context.detach(attached)
            _BATCH.reset(token)
        if first is _END:
            return
        yield first
        async for item in inner:
            yield item
    except BaseException as error:
        if not isinstance(error, GeneratorExit):
            failure = error
        raise
    finally:
        closer = getattr(inner, "aclose", None)
        if closer is not None:
            await closer()
        _end_batch(otel, scope, failure)


def batch_scope() -> BatchScope | None:
    """The batch the current task's calls belong to, if any."""
    return _BATCH.get()


# ---------------------------------------------------------------------- what a model call's result says


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    return [{"type": "text", "content": part} if isinstance(part, str) else part for part in content]


def messages_json(messages: Iterable[Any]) -> str:
    """Chat messages as the conventions' ``gen_ai.input.messages`` JSON (only called when content is opted in)."""
    import orjson

    return orjson.dumps(
        [{"role": message.role, "parts": _parts(message.content)} for message in messages], default=str
    ).decode()


def prompt_json(prompt: str) -> str:
    """A completion prompt as ``gen_ai.input.messages`` JSON (one user message)."""
    import orjson

    return orjson.dumps([{"role": "user", "parts": _parts(prompt)}]).decode()


def _output_json(text: Any, finish_reason: str | None) -> str:
    import orjson

    return orjson.dumps(
        [{"role": "assistant", "parts": _parts(text), "finish_reason": finish_reason or ""}], default=str
    ).decode()


def _raw_field(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None


def describe_chat(result: Any) -> dict[str, Any]:
    """The response facts of a :class:`~azml_client.ChatResult` for :meth:`CallScope.finish`."""
    reasons = [choice.finish_reason for choice in result.choices] or [result.finish_reason]
    return {
        "call": result.call,
        "usage": result.usage,
        "finish_reasons": reasons,
        "response_id": _raw_field(result.raw, "id"),
        "response_model": result.model or _raw_field(result.raw, "model"),
        "output": _output_json(result.message.content, result.finish_reason) if capture_content() else None,
    }


def describe_completion(result: Any) -> dict[str, Any]:
    """The response facts of a :class:`~azml_client.Completion` for :meth:`CallScope.finish`."""
    reasons = [choice.finish_reason for choice in result.choices] or [result.finish_reason]
    return {
        "call": result.call,
        "usage": result.usage,
        "finish_reasons": reasons,
        "response_id": _raw_field(result.raw, "id"),
        "response_model": _raw_field(result.raw, "model"),
        "output": _output_json(result.text, result.finish_reason) if capture_content() else None,
    }


class StreamFacts:
    """What the chunks of a stream said, gathered for its span as they pass."""

    __slots__ = ("finish_reasons", "response_id", "response_model", "texts", "usage")

    def __init__(self) -> None:
        self.finish_reasons: list[str] = []
        self.usage: Any = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.texts: list[str] | None = [] if capture_content() else None

    def add(self, chunk: Any) -> None:
        """Note one chunk (a :class:`~azml_client.ChatChunk` or :class:`~azml_client.CompletionChunk`)."""
        if chunk.finish_reason:
            self.finish_reasons.append(chunk.finish_reason)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if self.response_id is None:
            self.response_id = _raw_field(chunk.raw, "id")
            self.response_model = _raw_field(chunk.raw, "model")
        if self.texts is not None:
            text = getattr(chunk, "content", None)
            if text is None:
                text = getattr(chunk, "text", "")
            if text:
                self.texts.append(text)

    def describe(self, call: Any) -> dict[str, Any]:
        """The facts for :meth:`CallScope.finish`."""
        reason = self.finish_reasons[-1] if self.finish_reasons else None
        return {
            "call": call,
            "usage": self.usage,
            "finish_reasons": self.finish_reasons,
            "response_id": self.response_id,
            "response_model": self.response_model,
            "output": None if self.texts is None else _output_json("".join(self.texts), reason),
        }
