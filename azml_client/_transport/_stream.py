"""Reading answers: whole bodies under the size cap, error bodies, and the event stream of a streaming call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Final

import aiohttp
import attrs

from azml_client._config import Timeout
from azml_client._exceptions import MAX_ERROR_BODY, ResponseTooLargeError, StreamConsumedError
from azml_client._transport._errors import transport_error
from azml_client._transport._response import request_id_from
from azml_client._transport._sse import ServerSentEvent, SSEDecoder

__all__ = ["NON_SSE_EVENT", "EventStream", "OpenStream", "read_body", "read_error_body"]

#: The event type :class:`EventStream` gives a whole non-SSE body (an endpoint that ignored ``stream``).
NON_SSE_EVENT: Final = "azml-client.body"

_ERROR_BODY_READ_LIMIT = 64 * 1024


async def read_body(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """Read a whole answer body, refusing one over ``limit`` bytes (the connection is then dropped)."""
    length = response.content_length
    if length is not None and length > limit:
        response.close()
        raise ResponseTooLargeError(f"the answer has {length} bytes, more than max_response_size ({limit})", url=url)
    if length is not None and response.headers.get("Content-Encoding") is None:
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLargeError(f"the answer passed max_response_size ({limit} bytes) before it ended", url=url)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_error_body(response: aiohttp.ClientResponse) -> bytes:
    """Read the start of an error answer; drop the connection when the body is longer than that."""
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_READ_LIMIT:
                response.close()
                break
        return b"".join(chunks)[:MAX_ERROR_BODY]
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, TimeoutError):
        return b""
    finally:
        response.release()


@attrs.define(slots=True, eq=False)
class OpenStream:
    """A 2xx answer whose body is still to be read, and how to give back what it holds.

    Attributes:
        response: the aiohttp answer, headers read.
        release: gives back the client's in-flight slot; called exactly once by the stream.
        attempts: the attempts the call took.
        elapsed: seconds from the first attempt to the answer's headers.
    """

    response: aiohttp.ClientResponse
    release: Callable[[], None]
    attempts: int
    elapsed: float


class EventStream:
    """The server-sent events of one streaming call: an async iterator and an async context manager.

    The request is sent when iteration starts. Leaving the ``async with`` block, the end of the stream, an
    error mid-stream or :meth:`aclose` release the connection and the client's in-flight slot. Breaking out of
    an ``async for`` loop does not: the stream may still be iterated, so it holds both until it is closed or
    garbage collected (with ``max_concurrency=1`` the next call waits until then). To stop early, use
    ``async with client.stream(...) as events`` or ``contextlib.aclosing``. Errors while reading are
    :class:`APIConnectionError` / :class:`APITimeoutError`, never raw aiohttp errors. A stream is read once:
    iterating it again raises :class:`StreamConsumedError`.
    """

    def __init__(
        self, opener: Callable[[], Awaitable[OpenStream]], *, url: str, timeout: Timeout, max_response_size: int
    ) -> None:
        self._opener = opener
        self._url = url
        self._timeout = timeout
        self._limit = max_response_size
        self._opened: OpenStream | None = None
        self._released = False
        self._iterator: AsyncIterator[ServerSentEvent] | None = None

    @property
    def status(self) -> int | None:
        """The answer's status once it arrived."""
        return None if self._opened is None else self._opened.response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers once they arrived (empty before)."""
        return {} if self._opened is None else self._opened.response.headers

    @property
    def request_id(self) -> str | None:
        """The endpoint's request id, once the answer arrived."""
        return None if self._opened is None else request_id_from(self._opened.response.headers)

    @property
    def attempts(self) -> int:
        """The attempts the call took until its answer arrived (0 before)."""
        return 0 if self._opened is None else self._opened.attempts

    @property
    def elapsed(self) -> float:
        """Seconds from the first attempt to the answer's headers (0 before)."""
        return 0.0 if self._opened is None else self._opened.elapsed

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        if self._iterator is not None:
            raise StreamConsumedError("this event stream was already iterated; make a new call to read it again")
        self._iterator = self._events()
        return self._iterator

    async def __anext__(self) -> ServerSentEvent:
        if self._iterator is None:
            self.__aiter__()
        assert self._iterator is not None
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        """Stop reading and release the connection and the slot (idempotent)."""
        iterator = self._iterator
        if iterator is not None and hasattr(iterator, "aclose"):
            await iterator.aclose()
        self._release(drop=True)

    def _release(self, *, drop: bool) -> None:
        opened = self._opened
        if opened is None or self._released:
            return
        self._released = True
        if drop:
            opened.response.close()
        else:
            opened.response.release()
        opened.release()

    async def _events(self) -> AsyncIterator[ServerSentEvent]:
        self._opened = opened = await self._opener()
        response = opened.response
        finished = False
        try:
            try:
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    body = await read_body(response, self._limit, self._url)
                    yield ServerSentEvent(data=body.decode("utf-8", "replace"), event=NON_SSE_EVENT)
                    finished = True
                    return
                decoder = SSEDecoder()
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > self._limit:
                        raise ResponseTooLargeError(
                            f"the event stream passed max_response_size ({self._limit} bytes)", url=self._url
                        )
                    for event in decoder.feed(chunk):
                        yield event
                tail = decoder.flush()
            except Exception as exc:
                error = transport_error(
                    exc, url=self._url, timeout=self._timeout, attempts=opened.attempts, mid_stream=True
                )
                if error is None or error is exc:
                    raise
                raise error from exc
            for event in tail:
                yield event
            finished = True
        finally:
            self._release(drop=not finished)
