"""A minimal aiohttp server with pre-encoded answers, used when nginx is not installed.

Run as ``python -m benchmarks._fallback_server``: it listens on a free loopback port and prints that port.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from benchmarks._bodies import CHAT_BODY, SCORE_BODY

_BODIES = {"/score": SCORE_BODY.encode(), "/v1/chat/completions": CHAT_BODY.encode()}
_HEADERS = {"Content-Type": "application/json", "x-request-id": "bench"}
_NOT_FOUND = b'{"error": {"message": "not found"}}'


async def _answer(request: web.BaseRequest) -> web.Response:
    body = _BODIES.get(request.path)
    await request.read()
    if body is None:
        return web.Response(status=404, body=_NOT_FOUND, headers=_HEADERS)
    return web.Response(body=body, headers=_HEADERS)


async def _serve() -> None:
    server = web.Server(_answer, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())
