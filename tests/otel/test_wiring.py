"""How the instrumentation finds OpenTelemetry (in fresh interpreters), and what Application Insights receives."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from aiohttp import web

import azml_client as az
from azml_client.testing import MockEndpoint
from tests.otel.conftest import KEY, Otel


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

    app = web.Application()
    app.router.add_post("/{tail:.*}", track)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
            await chat.ainvoke("hello", model="m1")
        (span,) = otel.finished()
        exporter = AzureMonitorTraceExporter(
            connection_string=(
                f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"
            ),
            disable_offline_storage=True,
            tracer_provider=otel.tracer_provider,  # the resource comes from it (the global one is unset here)
        )
        result = await asyncio.to_thread(exporter.export, [span])
        await asyncio.to_thread(exporter.shutdown)
    finally:
        await runner.cleanup()
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
