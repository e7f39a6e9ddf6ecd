"""Probes for the reliability tests: connections, slots, tasks, file descriptors and memory of this process."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable

from azml_client._transport import EndpointClient
from azml_client.testing import MockEndpoint

#: The key the reliability tests' emulators accept.
KEY = "sk-reliability-4d1e"


def acquired_connections(client: EndpointClient) -> int:
    """How many connections the client's pools hand out right now (0 when nothing is in flight)."""
    return client.stats().connections_in_use


def pooled_connections(client: EndpointClient) -> int:
    """How many idle keep-alive connections the client's pools hold."""
    return client.stats().pooled_connections


def free_slots(client: EndpointClient) -> float:
    """The in-flight slots of the client's current (adaptive) limit that are free."""
    stats = client.stats()
    return stats.limit - stats.in_flight


def _serves_a_connection(task: asyncio.Task[object]) -> bool:
    return task.get_coro().__qualname__ == "RequestHandler.start"  # type: ignore[union-attr]


def other_tasks() -> set[asyncio.Task[object]]:
    """The unfinished tasks of the running loop besides the current one and the emulator's connection handlers."""
    current = asyncio.current_task()
    return {
        task
        for task in asyncio.all_tasks()
        if task is not current and not task.done() and not _serves_a_connection(task)
    }


def server_connections() -> int:
    """How many connections the in-process aiohttp servers (the emulator) hold open."""
    return sum(1 for task in asyncio.all_tasks() if not task.done() and _serves_a_connection(task))


async def eventually(condition: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.01)


async def assert_quiet(ep: MockEndpoint, client: EndpointClient, baseline: set[asyncio.Task[object]]) -> None:
    """Soon nothing is in flight on either side, all of the client's slots are free, and no task is left over.

    "Soon": a generator left by ``break`` is closed by the loop a moment later, not at once.
    """

    def quiet() -> bool:
        return (
            ep.in_flight == 0
            and acquired_connections(client) == 0
            and client.stats().in_flight == 0  # every slot given back
            and not (other_tasks() - baseline)
            and server_connections() == pooled_connections(client)  # the server holds no connection we dropped
        )

    try:
        await eventually(quiet, what="quiet")
    except AssertionError:
        state = (
            f"in_flight={ep.in_flight}, acquired={acquired_connections(client)}, free_slots={free_slots(client)}, "
            f"server connections={server_connections()}, pooled={pooled_connections(client)}, "
            f"new tasks={other_tasks() - baseline}"
        )
        raise AssertionError(f"still busy after 3 s: {state}") from None


def open_fds() -> int:
    """The number of open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """The resident set size of this process, after a garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
