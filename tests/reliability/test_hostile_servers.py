"""Slow and hostile servers: each call ends with a typed error, in bounded time and bounded memory.

Besides the emulator's faults, small raw asyncio servers play what an HTTP framework will not: a peer that reads
the request and never answers, a body that streams as fast as the socket takes it and never ends, endless headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import pytest

import azml_client as az
from azml_client.testing import Fault, MockEndpoint

from .probes import KEY, assert_quiet, other_tasks

MIB = 1024 * 1024
NO_RETRY = az.RetryPolicy.none()
BODY = {"inputs": {"input_string": ["hi"]}, "parameters": {}}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on loopback running ``handler`` per connection; counts the connections still open."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepted = 0
        self.open = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/score"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self._idle.clear()
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self._handler(reader, writer)
        finally:
            self._writers.discard(writer)
            self.open -= 1
            if not self.open:
                self._idle.set()
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # handlers still running end with a ConnectionError
            writer.transport.abort()
        await self._server.wait_closed()
        await self._idle.wait()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    await reader.readexactly(length)


async def answers_never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await reader.read()  # until the client gives up and closes


def endless_body(status: bytes, content_type: bytes, piece: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nConnection: close\r\n\r\n")
        while True:  # no length, no chunking: the body ends when the connection does, which is never
            writer.write(piece)
            await writer.drain()

    return handler


async def endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        writer.write(b"X-Filler: " + b"f" * 100 + b"\r\n")
        await writer.drain()


async def announces_a_huge_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n[")
    await writer.drain()
    await reader.read()


@contextlib.asynccontextmanager
async def peak_memory() -> AsyncIterator[list[int]]:
    """Trace Python allocations inside the block; the list gets the peak in bytes above the start."""
    result: list[int] = []
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        yield result
        _, peak = tracemalloc.get_traced_memory()
        result.append(peak - start)
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- never answers


async def test_a_server_that_accepts_and_never_answers_ends_on_the_read_timeout() -> None:
    policy = az.RetryPolicy(max_retries=1, initial_delay=0.01, jitter=0)
    async with (
        RawServer(answers_never) as server,
        az.LLM(server.url, KEY, timeout=az.Timeout(read=0.3), retry=policy) as llm,
    ):
        started = time.monotonic()
        with pytest.raises(az.APITimeoutError, match="read timeout") as info:
            await llm.ainvoke("hello")
        assert 0.6 <= time.monotonic() - started < 2
        assert info.value.attempts == 2  # a timeout is retried like any connection error
        await asyncio.sleep(0.1)
        assert server.accepted == 2
        assert server.open == 0  # the client hung up both times


async def test_a_hung_request_ends_on_the_total_timeout_with_no_read_timeout(ep: MockEndpoint) -> None:
    baseline = other_tasks()
    ep.enqueue(Fault.hang(), Fault.hang(), Fault.hang())
    timeout = az.Timeout(total=0.5, read=None)
    async with az.LLM(ep.url, KEY, timeout=timeout, retry=az.RetryPolicy(initial_delay=0.01)) as llm:
        started = time.monotonic()
        with pytest.raises(az.APITimeoutError, match="total timeout"):
            await llm.ainvoke("hello")
        assert time.monotonic() - started < 1.0
        await assert_quiet(ep, llm.client, baseline)


# ---------------------------------------------------------------- one byte per second


async def test_one_byte_per_second_ends_on_the_total_timeout(ep: MockEndpoint) -> None:
    """Every gap is shorter than the read timeout, so only the total timeout can end it."""
    baseline = other_tasks()
    ep.enqueue(Fault.slow(bytes_per_second=1))
    async with az.LLM(ep.url, KEY, timeout=az.Timeout(total=2.0, read=1.5), retry=NO_RETRY) as llm:
        started = time.monotonic()
        with pytest.raises(az.APITimeoutError, match="total timeout"):
            await llm.ainvoke("hello")
        assert 1.9 < time.monotonic() - started < 3
        await assert_quiet(ep, llm.client, baseline)


async def test_a_stream_at_one_byte_per_second_ends_on_the_total_timeout(ep: MockEndpoint) -> None:
    baseline = other_tasks()
    ep.enqueue(Fault.slow(bytes_per_second=1))
    timeout = az.Timeout(total=1.5, read=1.2)
    async with az.ChatModel(ep.url, KEY, api_type="serverless", timeout=timeout, retry=NO_RETRY) as chat:
        started = time.monotonic()
        with pytest.raises(az.APITimeoutError, match="total timeout"):  # not "read timeout": it is not idle
            async for _ in chat.astream("hello there"):
                pass
        assert time.monotonic() - started < 2.5
        await assert_quiet(ep, chat.client, baseline)


# ---------------------------------------------------------------- endless bodies and the size cap


async def test_an_endless_body_stops_at_the_default_64_mib_cap_in_bounded_memory() -> None:
    handler = endless_body(b"200 OK", b"application/json", b"[" * (256 * 1024))
    async with RawServer(handler) as server, az.LLM(server.url, KEY, retry=NO_RETRY) as llm:
        assert llm.client.max_response_size == 64 * MIB
        started = time.monotonic()
        async with peak_memory() as peak:
            with pytest.raises(az.ResponseTooLargeError, match="max_response_size"):
                await llm.ainvoke("hello")
        elapsed = time.monotonic() - started
    assert 64 * MIB <= peak[0] < 64 * MIB * 1.25  # what the cap allows, and not much more
    assert elapsed < 10
    print(f"\nendless body: stopped at the 64 MiB cap in {elapsed:.2f} s, peak {peak[0] / MIB:.1f} MiB")


async def test_a_configured_cap_bounds_memory_for_bodies_and_event_streams() -> None:
    cap = 2 * MIB
    async with (
        RawServer(endless_body(b"200 OK", b"application/json", b"x" * 65536)) as server,
        az.LLM(server.url, KEY, retry=NO_RETRY, max_response_size=cap) as llm,
        peak_memory() as peak,
    ):
        with pytest.raises(az.ResponseTooLargeError):
            await llm.ainvoke("hello")
    assert peak[0] < cap + 2 * MIB
    # An event stream that never ends its line (linear time: no re-scan of the open line per chunk), and one
    # that never ends its events: both stop at the cap.
    cap = MIB
    for piece in (b"data: " + b"y" * 65536, b'data: {"choices": []}\n\n' * 3000):
        handler = endless_body(b"200 OK", b"text/event-stream", piece)
        options = {"api_type": "serverless", "retry": NO_RETRY, "max_response_size": cap}
        async with RawServer(handler) as server:
            url = server.url.replace("/score", "/v1/chat/completions")
            async with az.ChatModel(url, KEY, **options) as chat, peak_memory() as peak:
                with pytest.raises(az.ResponseTooLargeError, match="event stream"):
                    async for _ in chat.astream("hello"):
                        pass
        assert peak[0] < cap + 4 * MIB  # the cap, plus a constant for read buffers and a chunk's events


async def test_an_event_stream_line_that_never_ends_stops_at_the_default_cap_in_linear_time() -> None:
    handler = endless_body(b"200 OK", b"text/event-stream", b"data: " + b"z" * (256 * 1024))
    async with RawServer(handler) as server:
        url = server.url.replace("/score", "/v1/chat/completions")
        async with az.ChatModel(url, KEY, api_type="serverless", retry=NO_RETRY) as chat:
            started = time.monotonic()

            async def drain() -> None:
                async for _ in chat.astream("hello"):
                    pass

            with pytest.raises(az.ResponseTooLargeError, match="event stream"):
                await asyncio.wait_for(drain(), timeout=20)  # re-scanning the open line per chunk took minutes
            elapsed = time.monotonic() - started
    assert elapsed < 10
    print(f"\nendless SSE line: stopped at the 64 MiB cap in {elapsed:.2f} s")


async def test_an_endless_error_body_is_cut_and_the_error_keeps_its_start() -> None:
    handler = endless_body(b"500 Internal Server Error", b"text/plain", b"boom " * 10_000)
    async with RawServer(handler) as server:
        async with az.LLM(server.url, KEY, retry=NO_RETRY) as llm, peak_memory() as peak:
            started = time.monotonic()
            with pytest.raises(az.ServerError) as info:
                await llm.ainvoke("hello")
        assert time.monotonic() - started < 2
        await asyncio.sleep(0.1)
        assert server.open == 0  # the client dropped the connection instead of draining it
    assert info.value.body.startswith(b"boom boom")
    assert len(info.value.body) <= 4096
    assert peak[0] < 2 * MIB


async def test_a_huge_announced_length_is_refused_before_reading() -> None:
    async with RawServer(announces_a_huge_body) as server:
        async with az.LLM(server.url, KEY, retry=NO_RETRY) as llm:
            with pytest.raises(az.ResponseTooLargeError, match="1099511627776"):
                await llm.ainvoke("hello")
        await asyncio.sleep(0.1)
        assert server.open == 0


async def test_endless_headers_are_a_connection_error() -> None:
    async with RawServer(endless_headers) as server:
        async with az.LLM(server.url, KEY, retry=NO_RETRY) as llm, peak_memory() as peak:
            with pytest.raises(az.APIConnectionError):
                await llm.ainvoke("hello")
        await asyncio.sleep(0.1)
        assert server.open == 0
    assert peak[0] < 2 * MIB
