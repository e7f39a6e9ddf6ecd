"""Pins the aiohttp and asyncio internals that ``_transport/_pool.py`` (and only it) relies on.

When an aiohttp or Python release renames one of them, these tests say which, before users see a leak.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import threading

import aiohttp

import azml_client as az
from azml_client.testing import MockEndpoint


async def test_the_connector_internals_the_pool_reads_exist() -> None:
    connector = aiohttp.TCPConnector()
    try:
        assert callable(connector._close)
        assert inspect.signature(connector._close).parameters.keys() <= {"abort_ssl"}
        assert isinstance(connector._conns, dict)
        assert isinstance(connector._acquired, set)
        assert connector._closed is False
    finally:
        await connector.close()


async def test_selector_transports_keep_their_socket_in_sock() -> None:
    async with MockEndpoint() as ep:
        host, port = ep.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        try:
            raw = writer.transport._sock  # type: ignore[attr-defined]
            assert isinstance(raw, socket.socket)
        finally:
            writer.close()
            await writer.wait_closed()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_sessions_of_closed_loops_have_their_sockets_closed() -> None:
    """asyncio.run on a client, twice: the first loop's pooled sockets are closed when the second makes its session."""

    async def call(client: az.EndpointClient) -> None:
        assert await az.LLM(client=client).ainvoke("x") == "echo: x"

    server_loop = asyncio.new_event_loop()
    ep = MockEndpoint()
    server_loop.run_until_complete(ep.start())
    thread = threading.Thread(target=server_loop.run_forever, daemon=True)
    thread.start()
    try:
        client = az.EndpointClient(ep.url)
        asyncio.run(call(client))
        assert client.stats().sessions == 0  # its loop is closed: not counted
        before = _open_fds()
        asyncio.run(call(client))
        # The first loop's keep-alive socket was closed when the second loop made its session.
        assert _open_fds() <= before
        client.close()
    finally:
        asyncio.run_coroutine_threadsafe(ep.aclose(), server_loop).result(10)
        server_loop.call_soon_threadsafe(server_loop.stop)
        thread.join(10)
        server_loop.close()


async def test_pool_counts_idle_and_lent_connections() -> None:
    async with MockEndpoint(latency=0.05) as ep, az.EndpointClient(ep.url) as client:
        llm = az.LLM(client=client)
        task = asyncio.ensure_future(llm.abatch(["a", "b", "c"]))
        for _ in range(200):
            if client.stats().connections_in_use == 3:
                break
            await asyncio.sleep(0.005)
        assert client.stats().connections_in_use == 3
        assert client.stats().in_flight == 3
        await task
        stats = client.stats()
        assert (stats.connections_in_use, stats.pooled_connections, stats.in_flight) == (0, 3, 0)
