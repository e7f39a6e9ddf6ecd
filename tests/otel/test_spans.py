"""GenAI spans, span events and metrics of model calls against the emulator, read back from in-memory exporters."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import azml_client as az
from azml_client import _observability
from azml_client.testing import Fault, MockEndpoint
from tests.otel.conftest import KEY, Otel

BASE = {"gen_ai.provider.name": "azure.ml", "gen_ai.system": "azure.ml", "server.address": "127.0.0.1"}


def _check_base(attributes: dict[str, object], ep: MockEndpoint) -> None:
    for key, value in BASE.items():
        assert attributes[key] == value, key
    assert attributes["server.port"] == ep.port


async def test_chat_span_values(otel: Otel, ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        result = await chat.ainvoke("hi there", temperature=0.2, top_p=0.9, max_tokens=5, stop=["x"], model="m1")
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "chat m1"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    _check_base(attributes, ep)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "m1"
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.request.stop_sequences"] == ("x",)
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["gen_ai.response.id"] == result.raw["id"]
    assert attributes["gen_ai.response.model"] == "azml-emulator"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert result.usage is not None
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert result.call is not None
    assert attributes["azureml.request_id"] == result.call.request_id
    assert attributes["azureml.attempts"] == 1
    assert attributes["http.response.status_code"] == 200
    assert "error.type" not in attributes
    assert span.events == ()
    assert "gen_ai.input.messages" not in attributes  # no content without the opt-in
    assert "gen_ai.output.messages" not in attributes


async def test_dedicated_completion_span_is_named_by_the_deployment(otel: Otel, ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, deployment_name="gpt2") as llm:
        completion = await llm.acomplete("hello", temperature=0.5)
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "text_completion gpt2"
    _check_base(attributes, ep)
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.request.model"] == "gpt2"
    assert attributes["azureml.deployment"] == "gpt2"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert completion.call is not None
    assert attributes["azureml.request_id"] == completion.call.request_id
    # The same through ainvoke (the batch path that skips describing the call when nothing is traced).
    otel.spans.clear()
    async with az.LLM(ep.url, KEY, deployment_name="gpt2") as llm:
        await llm.ainvoke("hello")
    assert [span.name for span in otel.finished()] == ["text_completion gpt2"]


async def test_stream_span_values(otel: Otel, ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        chunks = [chunk async for chunk in chat.astream("one two", stream_options={"include_usage": True})]
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "chat"  # a serverless call that names no model: the operation alone
    assert "gen_ai.request.model" not in attributes
    assert attributes["gen_ai.request.stream"] is True
    first = attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(first, float)
    assert 0 < first < span.end_time - span.start_time  # type: ignore[operator]
    usage = next(chunk.usage for chunk in chunks if chunk.usage is not None)
    assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert chunks[0].call is not None
    assert attributes["azureml.request_id"] == chunks[0].call.request_id
    (point,) = (point for _, point in otel.points("gen_ai.client.operation.time_to_first_chunk"))
    assert point.count == 1  # type: ignore[attr-defined]


async def test_completion_stream_span(otel: Otel, ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, api_type="serverless", formatter="openai") as llm:
        text = "".join([piece async for piece in llm.astream("a b c", max_tokens=2)])
    assert text
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "text_completion"
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.request.max_tokens"] == 2


async def test_retry_event_on_the_retried_call_only(otel: Otel, ep: MockEndpoint) -> None:
    seen: list[az.Attempt] = []
    async with az.ChatModel(ep.url, KEY, api_type="serverless", on_attempt=seen.append) as chat:
        await chat.ainvoke("first")
        ep.enqueue(Fault.status(503))
        await chat.ainvoke("second")
        await chat.ainvoke("third")
    spans = otel.finished()
    assert len(spans) == 3
    assert len({span.context.span_id for span in spans}) == 3  # no duplicate spans
    first, second, third = spans
    assert first.events == ()
    assert third.events == ()
    (event,) = second.events
    assert event.name == "azureml.retry"
    event_attributes = dict(event.attributes or {})
    assert event_attributes["http.response.status_code"] == 503
    assert event_attributes["azureml.attempt"] == 1
    assert event_attributes["error.type"] == "ServerError"
    assert isinstance(event_attributes["azureml.delay_s"], float)
    assert event_attributes["azureml.delay_s"] > 0
    assert dict(second.attributes or {})["azureml.attempts"] == 2
    assert dict(first.attributes or {})["azureml.attempts"] == 1
    # The user's on_attempt still sees every attempt: the tracing subscribed beside it, not instead.
    assert [event.kind for event in seen].count("retry") == 1


async def test_failing_call(otel: Otel, ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(400))
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        with pytest.raises(az.BadRequestError):
            await chat.ainvoke("bad")
    (span,) = otel.finished()
    attributes = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "BadRequestError"
    assert attributes["http.response.status_code"] == 400
    assert "gen_ai.usage.input_tokens" not in attributes
    ((point_attributes, point),) = otel.points("gen_ai.client.operation.duration")
    assert point_attributes["error.type"] == "BadRequestError"
    assert point.count == 1  # type: ignore[attr-defined]


async def test_batch_is_one_span_with_the_throttled_call_under_it(otel: Otel, ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(429, headers={"retry-after-ms": "10"}))
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        results = await chat.abatch(["a", "b", "c"], max_concurrency=1)
    spans = otel.finished()
    (batch,) = [span for span in spans if span.name == "batch"]
    calls = [span for span in spans if span.name == "chat"]
    assert len(calls) == 3
    assert len(spans) == 4
    assert all(call.parent is not None and call.parent.span_id == batch.context.span_id for call in calls)
    assert all(call.context.trace_id == batch.context.trace_id for call in calls)
    throttled = [call for call in calls if call.events]
    assert len(throttled) == 1
    (event,) = throttled[0].events
    assert event.name == "azureml.throttled"
    assert dict(event.attributes or {})["http.response.status_code"] == 429
    assert dict(event.attributes or {})["azureml.delay_s"] == pytest.approx(0.01, abs=0.005)
    attributes = dict(batch.attributes or {})
    assert attributes["azureml.batch.calls"] == 3
    assert attributes["azureml.batch.throttled"] == 1
    assert attributes["azureml.batch.retry"] == 0
    assert attributes["azureml.batch.errors"] == 0
    assert attributes["azureml.batch.input_tokens"] == sum(r.usage.prompt_tokens for r in results)  # type: ignore[misc, union-attr]


async def test_a_big_batch_stays_a_small_trace(otel: Otel, ep: MockEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_OTEL_BATCH_CALL_SPANS", "2")
    ep.enqueue(Fault.status(503))
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        await chat.abatch([f"p{i}" for i in range(20)], max_concurrency=4)
    spans = otel.finished()
    assert sorted(span.name for span in spans) == ["batch", "chat", "chat"]
    (batch,) = [span for span in spans if span.name == "batch"]
    attributes = dict(batch.attributes or {})
    assert attributes["azureml.batch.calls"] == 20
    assert attributes["azureml.batch.retry"] == 1
    # Every call is still measured, spans or not.
    ((_, point),) = otel.points("gen_ai.client.operation.duration")
    assert point.count == 20  # type: ignore[attr-defined]


async def test_batch_as_completed_is_one_span(otel: Otel, ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, deployment_name="gpt2") as llm:
        got = [index async for index, _ in llm.abatch_as_completed(["a", "b", "c"], max_concurrency=2)]
    assert sorted(got) == [0, 1, 2]
    spans = otel.finished()
    (batch,) = [span for span in spans if span.name == "batch gpt2"]
    calls = [span for span in spans if span.name == "text_completion gpt2"]
    assert len(calls) == 3
    assert all(call.parent is not None and call.parent.span_id == batch.context.span_id for call in calls)
    assert dict(batch.attributes or {})["azureml.batch.calls"] == 3


def test_sync_twin_carries_the_callers_context(otel: Otel) -> None:
    async def serve() -> None:
        pass

    tracer = otel.tracer_provider.get_tracer("test")
    with (
        MockEndpointThread() as url,
        az.ChatModel(url, KEY, api_type="serverless") as chat,
        tracer.start_as_current_span("caller") as parent,
    ):
        chat.invoke("hi")
        list(chat.stream("hi"))
        chat.batch(["a", "b"])
    spans = {span.name: span for span in otel.finished()}
    calls = [span for span in otel.finished() if span.name == "chat"]
    assert len(calls) == 4  # invoke, stream and the batch's two
    batch = spans["batch"]
    caller_id = parent.get_span_context().span_id
    assert batch.parent is not None
    assert batch.parent.span_id == caller_id
    direct = [call for call in calls if call.parent is not None and call.parent.span_id == caller_id]
    assert len(direct) == 2  # invoke and stream, on the runner thread, under the caller's span


class MockEndpointThread:
    """The emulator on a loop of its own thread, for the sync twins."""

    def __enter__(self) -> str:
        import threading

        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self._url

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        async with MockEndpoint(api_key=KEY) as ep:
            self._url = ep.url
            self._ready.set()
            await self._stop.wait()

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def test_traceparent_only_when_asked(otel: Otel, ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        await chat.ainvoke("plain")
    async with az.ChatModel(ep.url, KEY, api_type="serverless", propagate_trace=True) as chat:
        await chat.ainvoke("traced")
        async for _ in chat.astream("streamed"):
            pass
    plain, traced, streamed = ep.requests
    assert "traceparent" not in plain.headers
    spans = otel.finished()
    for request, span in zip((traced, streamed), spans[1:], strict=True):
        version, trace_id, span_id, flags = request.headers["traceparent"].split("-")
        assert (version, flags) == ("00", "01")
        assert int(trace_id, 16) == span.context.trace_id
        assert int(span_id, 16) == span.context.span_id


async def test_content_only_with_the_opt_in(otel: Otel, ep: MockEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        await chat.ainvoke("secret prompt words")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        await chat.ainvoke("shown prompt words")
    hidden, shown = otel.finished()
    assert "secret prompt words" not in json.dumps(hidden.to_json())
    attributes = dict(shown.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "shown prompt words"}]}
    ]
    (output,) = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["role"] == "assistant"
    assert output["finish_reason"] == "stop"
    assert output["parts"][0]["content"] == "echo: shown prompt words"


async def test_the_key_never_reaches_exported_data(
    otel: Otel, ep: MockEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    async with az.ChatModel(ep.url, KEY, api_type="serverless", propagate_trace=True) as chat:
        await chat.ainvoke("hello", max_tokens=3)
        ep.enqueue(Fault.status(503))
        async for _ in chat.astream("again"):
            pass
        ep.enqueue(Fault.status(401))
        with pytest.raises(az.AuthenticationError):
            await chat.ainvoke("refused")
        await chat.abatch(["x", "y"])
    exported = "".join(span.to_json() for span in otel.finished())
    data = otel.metrics.get_metrics_data()
    assert data is not None
    exported += data.to_json()
    assert "hello" in exported  # content was opted in, so the check below looks at real data
    assert KEY not in exported
    assert "Bearer" not in exported


@pytest.mark.parametrize(
    ("opt_in", "prefix"), [(None, "gen_ai.client."), ("gen_ai_latest_experimental", "gen_ai.client.inference.")]
)
async def test_metric_names_and_values(
    otel: Otel, ep: MockEndpoint, monkeypatch: pytest.MonkeyPatch, opt_in: str | None, prefix: str
) -> None:
    if opt_in is not None:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
        _observability._use_providers(otel.tracer_provider, otel.meter_provider)
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        result = await chat.ainvoke("a b c", model="m2")
        names = otel.metric_names()
        limit = chat.client.stats().limit
        gauges = otel.points("azureml.client.concurrency.limit")
    assert f"{prefix}operation.duration" in names
    assert f"{prefix}token.usage" in names
    other = "gen_ai.client.inference." if opt_in is None else "gen_ai.client.operation"
    assert not any(name.startswith(other) for name in names)
    tokens = {attrs["gen_ai.token.type"]: point for attrs, point in otel.points(f"{prefix}token.usage")}
    assert result.usage is not None
    assert tokens["input"].sum == result.usage.prompt_tokens  # type: ignore[attr-defined]
    assert tokens["output"].sum == result.usage.completion_tokens  # type: ignore[attr-defined]
    ((attrs, duration),) = otel.points(f"{prefix}operation.duration")
    assert attrs["gen_ai.request.model"] == "m2"
    assert attrs["gen_ai.response.model"] == "azml-emulator"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert duration.count == 1  # type: ignore[attr-defined]
    ((gauge_attributes, gauge),) = gauges
    assert gauge_attributes == {"server.address": "127.0.0.1"}
    assert gauge.value == limit  # type: ignore[attr-defined]


async def test_no_span_without_instrumentation(ep: MockEndpoint) -> None:
    _observability._reset_for_tests()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # this process sets no global one
    assert _observability.active() is None
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        await chat.ainvoke("x")
        assert chat.client._hooks == ()  # nothing subscribed


async def test_a_retried_stream_has_the_retry_event(otel: Otel, ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(503))
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        async for _ in chat.astream("again"):
            pass
        async for _ in chat.astream("once"):
            break  # stopped early: still one span, ended, without an error
    retried, stopped = otel.finished()
    assert [event.name for event in retried.events] == ["azureml.retry"]
    assert dict(retried.attributes or {})["azureml.attempts"] == 2
    assert stopped.events == ()
    assert "error.type" not in dict(stopped.attributes or {})
    assert stopped.status.status_code is StatusCode.UNSET
