"""How the instrumentation finds OpenTelemetry (in fresh interpreters), and what Application Insights receives."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

import azml_client as az
from azml_client.testing import MockEndpoint
from tests.otel.conftest import KEY, Otel
from tests.servers import serving


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


CALL = """
    import asyncio, sys
    import azml_client as az
    from azml_client.testing import MockEndpoint

    async def call():
        async with MockEndpoint() as ep, az.ChatModel(ep.url, "k", api_type="serverless") as chat:
            return (await chat.ainvoke("hi")).content
"""


def test_importing_and_calling_without_a_provider_loads_no_sdk() -> None:
    out = _run(
        CALL
        + """
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print("before", loaded)
    print(asyncio.run(call()))
    print("sdk", any(name.startswith("opentelemetry.sdk") for name in sys.modules))
    """
    )
    assert out.splitlines() == ["before []", "echo: hi", "sdk False"]


def test_a_call_works_when_opentelemetry_cannot_be_imported() -> None:
    out = _run(
        """
    import sys
    sys.modules["opentelemetry"] = None  # what an environment without azml-client[otel] looks like
    """
        + CALL
        + """
    from azml_client import _observability
    print(asyncio.run(call()), _observability.active())
    """
    )
    assert out == "echo: hi None"


def test_a_global_tracer_provider_set_after_import_is_found() -> None:
    out = _run(
        CALL
        + """
    print(asyncio.run(call()))  # before any provider: nothing traced
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    print(len(exporter.get_finished_spans()))
    asyncio.run(call())
    print([span.name for span in exporter.get_finished_spans()])
    """
    )
    assert out.splitlines() == ["echo: hi", "0", "['chat']"]


async def test_application_insights_receives_a_genai_dependency(
    otel: Otel, ep: MockEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Azure Monitor exporter, pointed at a loopback ingestion endpoint, sends the span as a dependency."""
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter

    received: list[dict[str, Any]] = []
    paths: list[str] = []

    async def track(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        paths.append(request.path)
        items = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if len(items) == 1 and isinstance(items[0], list):
            items = items[0]
        received.extend(items)
        return web.json_response({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

    async with serving(track) as ingestion:
        async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
            await chat.ainvoke("hello", model="m1")
        (span,) = otel.finished()
        exporter = AzureMonitorTraceExporter(
            connection_string=(
                f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion}/"
            ),
            disable_offline_storage=True,
            tracer_provider=otel.tracer_provider,  # the resource comes from it (the global one is unset here)
        )
        result = await asyncio.to_thread(exporter.export, [span])
        await asyncio.to_thread(exporter.shutdown)
    assert result.name == "SUCCESS"
    assert paths
    assert all(path.endswith("/v2.1/track") for path in paths), paths
    (envelope,) = (item for item in received if item["data"]["baseType"] == "RemoteDependencyData")
    data = envelope["data"]["baseData"]
    assert data["type"] == "azure.ml"  # the GenAI dependency type comes from gen_ai.system
    assert data["name"] == "chat m1"
    assert data["success"] is True
    assert data["properties"]["gen_ai.provider.name"] == "azure.ml"
    assert data["properties"]["gen_ai.usage.input_tokens"] == "1"
    assert KEY not in json.dumps(received)


async def test_cli_batch_is_one_span_with_a_bounded_number_of_call_spans(
    otel: Otel, ep: MockEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azml_client.cli import main

    for name in [name for name in os.environ if name.startswith("AZUREML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", ep.url)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"prompt {i}\n" for i in range(15)))
    out = tmp_path / "out.jsonl"
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("job") as job:
        status = await asyncio.to_thread(main, ["batch", str(source), "-o", str(out), "--concurrency", "3"])
    assert status == 0
    assert out.read_text().count("\n") == 15
    spans = otel.finished()
    (batch,) = [span for span in spans if span.name.startswith("batch")]
    calls = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert len(calls) == 10  # the default budget of call spans; the other 5 only counted
    assert len(spans) == 12  # the 10 calls, the batch and the test's own span
    assert batch.parent is not None
    assert batch.parent.span_id == job.get_span_context().span_id  # the caller's context reached the CLI's loop
    assert all(call.parent is not None and call.parent.span_id == batch.context.span_id for call in calls)
    assert dict(batch.attributes or {})["azureml.batch.calls"] == 15
