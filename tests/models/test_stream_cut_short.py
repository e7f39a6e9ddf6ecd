"""A streaming call whose 200 answer is plain JSON cut short: an ``APIConnectionError``, never a raw aiohttp error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

import azml_client as az
from tests.servers import cut_short, serving


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    """A small hostile server on 127.0.0.1 (every answer cut short); yields its base URL."""
    async with serving(cut_short) as url:
        yield url


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
