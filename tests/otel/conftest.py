"""In-memory OpenTelemetry providers handed to the instrumentation directly, so the global API stays untouched
and the rest of the suite runs uninstrumented."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from azml_client import _observability
from azml_client.testing import MockEndpoint

KEY = "sk-otel-canary-7f3e9a"


@dataclass
class Otel:
    """What a test reads back: the finished spans and the metrics."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, object], object]]:
        """(attributes, data point) of every point of the metric ``name``."""
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, object], object]] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend((dict(point.attributes or {}), point) for point in metric.data.data_points)
        return found

    def metric_names(self) -> set[str]:
        data = self.metrics.get_metrics_data()
        return {
            metric.name
            for resource in (data.resource_metrics if data is not None else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    monkeypatch.delenv("AZUREML_OTEL_BATCH_CALL_SPANS", raising=False)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    _observability._use_providers(tracer_provider, meter_provider)
    try:
        yield Otel(exporter, reader, tracer_provider, meter_provider)
    finally:
        _observability._reset_for_tests()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint
