"""A streaming call whose 200 answer is plain JSON cut short: an ``APIConnectionError``, never a raw aiohttp error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

import azml_client as az


async def _cut_short(request: web.Request) -> web.StreamResponse:
    """Answer 200 ``application/json`` promising 1000 bytes, write 30, then close the connection."""
    await request.read()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 1000
    await response.prepare(request)
    await response.write(b'{"id": "x", "choices": [{"inde')
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    """A small hostile server on 127.0.0.1; yields its base URL."""
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", _cut_short)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_chat_astream_raises_api_connection_error(hostile: str) -> None:
    async with az.ChatModel(hostile, "key", api_type="serverless", retry=az.RetryPolicy.none(), proxy=False) as chat:
        with pytest.raises(az.APIConnectionError) as caught:
            async for _ in chat.astream("hi"):
                pass
    assert not isinstance(caught.value, aiohttp.ClientError)
    assert caught.value.url.startswith(hostile)


async def test_client_stream_raises_api_connection_error(hostile: str) -> None:
    async with az.EndpointClient(
        hostile, "key", api_type="serverless", retry=az.RetryPolicy.none(), proxy=False
    ) as client:
        with pytest.raises(az.APIConnectionError) as caught:
            async with client.stream({"messages": [], "stream": True}, route="chat") as events:
                async for _ in events:
                    pass
    assert not isinstance(caught.value, aiohttp.ClientError)
