"""The client's in-flight cap: one counting limit shared by every event loop and thread that uses the client."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

__all__ = ["InFlightLimit"]


class _Waiter:
    """One task waiting for a slot: its loop's future, the thread that loop runs in, and whether it got one."""

    __slots__ = ("future", "granted", "loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


class InFlightLimit:
    """A semaphore whose slots are shared across event loops and threads, with a limit that may change.

    An ``asyncio.Semaphore`` belongs to one loop; a client used from a service's loop, from the sync twins'
    loop thread and from two threads each running ``asyncio.run`` needs one count for all of them, so the
    count lives under a ``threading.Lock`` and a waiter on another loop is woken with
    ``call_soon_threadsafe``. Slots go to waiters first come, first served.

    A slot handed to a waiter that was cancelled meanwhile is passed on, never lost.
    """

    __slots__ = ("_in_flight", "_limit", "_lock", "_waiters")

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def limit(self) -> int:
        """The most slots held at once."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """The slots held right now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """The tasks waiting for a slot right now."""
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit; waiters are woken when it grows. Slots already held are kept when it shrinks."""
        with self._lock:
            self._limit = max(1, limit)
            self._wake_locked()

    def try_acquire(self) -> bool:
        """Take a slot when one is free and nobody waits; return whether it did (never blocks)."""
        with self._lock:
            if self._in_flight < self._limit and not self._waiters:
                self._in_flight += 1
                return True
            return False

    async def acquire(self) -> None:
        """Wait for a slot and take it."""
        with self._lock:
            if self._in_flight < self._limit and not self._waiters:
                self._in_flight += 1
                return
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._in_flight -= 1
                    self._wake_locked()
                else:
                    with contextlib.suppress(ValueError):  # a release already dropped it as cancelled
                        self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back (from any thread)."""
        with self._lock:
            self._in_flight -= 1
            self._wake_locked()

    def _wake_locked(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if waiter.future.done():  # cancelled while queued; its task removes nothing now
                continue
            waiter.granted = True
            self._in_flight += 1
            if waiter.thread == threading.get_ident():
                waiter.future.set_result(None)
                continue
            try:
                waiter.loop.call_soon_threadsafe(_grant, waiter.future)
            except RuntimeError:  # that loop is closed: its task will never take the slot
                waiter.granted = False
                self._in_flight -= 1


def _grant(future: asyncio.Future[None]) -> None:
    # On the waiter's own loop. A future cancelled in the meantime is handled by its task: it saw ``granted``.
    if not future.done():
        future.set_result(None)
