"""The event-loop thread behind the sync twins: a model runs its coroutines there and blocks for the result."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from azml_client._exceptions import APIConnectionError
from azml_client._transport import EndpointClient

__all__ = ["LoopThread", "existing_runner", "runner_for", "wait"]

T = TypeVar("T")


class LoopThread:
    """A daemon thread running its own asyncio loop, started on first use.

    The sync methods of a model submit coroutines to it and wait, so they work in a plain script, in a
    worker thread and inside a running event loop (Jupyter) alike: the caller's loop is never touched and
    ``asyncio.run`` is never called. A KeyboardInterrupt (or any exception) in the waiting thread cancels the
    coroutine before it propagates.
    """

    __slots__ = ("_lock", "_loop", "_thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread has been started and not stopped."""
        return self._loop is not None

    def is_current_thread(self) -> bool:
        """Whether the caller runs on this runner's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        _shutdown(loop)

                thread = threading.Thread(target=run, name="azml-client-loop", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``make()`` on the thread's loop and return its result."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            raise RuntimeError("a sync method was called from inside its own event-loop thread; await the async one")
        # The coroutine runs in a copy of the caller's context (contextvars, and so its OpenTelemetry span).
        future = contextvars.copy_context().run(asyncio.run_coroutine_threadsafe, make(), loop)
        return wait(future)

    def submit(self, make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Start the coroutine ``make()`` on the thread's loop without waiting: its future.

        Cancelling the future cancels the coroutine; ``asyncio.wrap_future`` awaits it from another loop.
        """
        loop = self._ensure()
        return contextvars.copy_context().run(asyncio.run_coroutine_threadsafe, make(), loop)

    def iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Drive the async iterator ``make()`` on the thread's loop, yielding its items here.

        Closing the returned generator early (``break``) closes the async iterator too.
        """
        loop = self._ensure()
        iterator = make()

        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(iterator)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                step_in_context = contextvars.copy_context().run(asyncio.run_coroutine_threadsafe, step(), loop)
                more, item = wait(step_in_context)
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and not loop.is_closed():
                wait(asyncio.run_coroutine_threadsafe(_call(closer), loop))

    def stop(self, final: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``final()`` on the loop (when given), then stop the thread and close its loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            if final is not None and thread.is_alive():
                asyncio.run_coroutine_threadsafe(_call(final), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if threading.current_thread() is not thread:
                thread.join(timeout=30)


def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the thread's loop, finish its async generators and close it (in its thread)."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


async def _call(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()


def wait(future: concurrent.futures.Future[T]) -> T:
    """The result of a runner future, waited for here; an interrupted wait cancels the coroutine first."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        # The runner's loop was stopped under the call: its client was closed while the call was in flight.
        raise APIConnectionError("the model or its client was closed while this call was in flight") from None
    except BaseException:
        # KeyboardInterrupt or an error in this thread: the coroutine must not run on unobserved.
        if not future.done():
            future.cancel()
            with contextlib.suppress(BaseException):  # its outcome no longer matters: the first error is raised
                future.result(timeout=5)
        raise


_runners: weakref.WeakKeyDictionary[Any, LoopThread] = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


def runner_for(client: EndpointClient) -> LoopThread:
    """The one sync runner of ``client``, shared by every model built on it; started on first use.

    It is stopped when the client closes (or is collected), so a client's sync twins use one event loop and
    one aiohttp session however many models share it.
    """
    with _runners_lock:
        runner = _runners.get(client)
        if runner is None:
            runner = _runners[client] = LoopThread()
            client.call_on_close(functools.partial(_stop_unless_inside, runner))
            weakref.finalize(client, runner.stop)
        return runner


def existing_runner(client: EndpointClient) -> LoopThread | None:
    """The sync runner of ``client`` if one was started, else ``None``."""
    with _runners_lock:
        return _runners.get(client)


def _stop_unless_inside(runner: LoopThread) -> None:
    # Closing the client from its own runner (a model's close() runs aclose there) is stopped by that caller.
    if not runner.is_current_thread():
        runner.stop()
