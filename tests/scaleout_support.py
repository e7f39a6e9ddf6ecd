"""Shared by tests/spark and tests/ray: an emulator on a background thread of the driver (its own loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azml_client.testing import MockEndpoint

KEY = "scale-test-key"
CANARY = "canary-sk-7f3a9c1e5b2d4086"


@contextmanager
def threaded_endpoint(**options: Any) -> Iterator[MockEndpoint]:
    """A :class:`MockEndpoint` served on its own thread and loop, reachable from Spark/Ray worker processes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ep = MockEndpoint(**options)
    asyncio.run_coroutine_threadsafe(ep.start(), loop).result(30)
    try:
        yield ep
    finally:
        asyncio.run_coroutine_threadsafe(ep.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
