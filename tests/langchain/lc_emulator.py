"""The endpoint emulator on a thread of its own, for tests that call LangChain's blocking sync methods.

LangChain's sync methods block the calling thread, so the emulator cannot share the test's event loop: it
runs on a background thread with its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from azml_client.testing import Fault, MockEndpoint, RecordedRequest

T = TypeVar("T")

#: The key the emulator accepts.
KEY = "test-key"


class EmulatorThread:
    """A :class:`MockEndpoint` served by a daemon thread running its own event loop."""

    def __init__(self, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lc-emulator", daemon=True)
        self.endpoint = MockEndpoint(**options)

    def start(self) -> EmulatorThread:
        """Start the thread and the server."""
        self._thread.start()
        self._wait(self.endpoint.start())
        return self

    def stop(self) -> None:
        """Stop the server, the loop and the thread."""
        try:
            self._wait(self.endpoint.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the emulator's loop (where its state lives) and return what it returns."""

        async def call() -> T:
            return fn()

        return self._wait(call())

    @property
    def url(self) -> str:
        """The base URL."""
        return self.endpoint.url

    @property
    def score_url(self) -> str:
        """The dedicated ``/score`` URL."""
        return self.endpoint.score_url

    @property
    def chat_url(self) -> str:
        """The serverless chat URL."""
        return self.endpoint.url + "/v1/chat/completions"

    @property
    def completions_url(self) -> str:
        """The serverless completions URL."""
        return self.endpoint.url + "/v1/completions"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far."""
        return self.run(lambda: self.endpoint.requests)

    @property
    def last(self) -> RecordedRequest:
        """The last request received."""
        return self.requests[-1]

    @property
    def max_in_flight(self) -> int:
        """The most requests the emulator handled at once since the last reset."""
        return self.run(lambda: self.endpoint.max_in_flight)

    def enqueue(self, *faults: Fault) -> None:
        """Queue faults for the next requests."""
        self.run(lambda: self.endpoint.enqueue(*faults))

    def reset(self) -> None:
        """Forget requests, counters and queued faults."""
        self.run(self.endpoint.reset)
