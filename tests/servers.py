"""Small servers the tests write themselves: one handler on 127.0.0.1, and the hostile answers several tests send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["cut_short", "serving"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler, path: str = "/{tail:.*}") -> AsyncIterator[str]:
    """Serve POSTs to ``path`` with ``handler`` on a free loopback port; yield the base URL (no trailing slash)."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def cut_short(request: web.Request) -> web.StreamResponse:
    """Answer 200 ``application/json`` promising 1000 bytes, write 30, then close the connection."""
    await request.read()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 1000
    await response.prepare(request)
    await response.write(b'{"id": "x", "choices": [{"inde')
    assert request.transport is not None
    request.transport.close()
    return response
