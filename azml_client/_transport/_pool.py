"""The sessions of a client, one per event loop, and the only code that touches aiohttp's or asyncio's internals.

Everything here that reads a private attribute does so for one of two reasons, each pinned by a test against
the installed aiohttp (``tests/transport/test_pool_internals.py``):

- closing a session from code that cannot await (a finalizer, a sync ``close()``, another thread's loop):
  ``BaseConnector._close()`` closes every transport at once and is what ``close()`` itself runs first;
- closing the sockets of a session whose event loop is already closed: its transports can no longer close
  themselves, so the raw socket (``transport._sock`` on asyncio's selector transports) is closed directly.
  Where that attribute does not exist (uvloop) nothing is closed by hand and aiohttp's own "Unclosed
  connector" warning is left to say so.

Counting pooled and lent-out connections for :meth:`EndpointClient.stats` reads ``_conns`` and ``_acquired``.
"""

from __future__ import annotations

import asyncio
import atexit
import ssl
import threading
import weakref
from typing import Any

import aiohttp

__all__ = ["SessionPool", "pool_connections"]

_mmap_threshold_raised = False


def _raise_mmap_threshold_once() -> None:
    """Free one 512 KiB block, once per process, so that glibc stops serving each socket read with mmap.

    asyncio reads a socket into a fresh 256 KiB buffer and then shrinks it. glibc's malloc serves blocks above
    its mmap threshold (128 KiB until a larger mmap'd block has been freed) with mmap, so until then every read
    costs an mmap, an mremap and a munmap: measured, 10-17% of the client CPU of a small request.
    Freeing one block larger than that buffer lifts the threshold above it (glibc's dynamic threshold), which
    most long-running processes reach by chance sooner or later. Elsewhere this is one harmless allocation.
    """
    global _mmap_threshold_raised
    if not _mmap_threshold_raised:
        _mmap_threshold_raised = True
        block = bytes(512 * 1024)
        del block


def pool_connections(session: aiohttp.ClientSession) -> tuple[int, int]:
    """Return ``(idle pooled connections, connections lent to requests)`` of a session's connector."""
    connector = session.connector
    if connector is None or connector.closed:
        return 0, 0
    conns: Any = getattr(connector, "_conns", {})
    acquired: Any = getattr(connector, "_acquired", ())
    return sum(len(pool) for pool in conns.values()), len(acquired)


def close_without_waiting(session: aiohttp.ClientSession) -> None:
    """Close a session's connections now, on the thread of its own (open) loop, without awaiting."""
    connector = session.connector
    if connector is not None:
        connector._close()
    session.detach()


def abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session whose event loop is closed, closing its pooled sockets without that loop.

    (The loop cannot run ``session.close()`` any more; left alone, the sockets would leak until garbage
    collection.) The connector is marked closed only when every socket was closed here, so that aiohttp's
    own leak warning still speaks where this could not.
    """
    connector = session.connector
    session.detach()
    if connector is None or connector.closed:
        return
    conns: Any = getattr(connector, "_conns", None)
    if conns is None:
        return
    all_closed = not getattr(connector, "_acquired", ())
    for pool in list(conns.values()):
        for entry in pool:
            transport: Any = getattr(entry[0], "transport", None)
            raw_socket = getattr(transport, "_sock", None)
            if raw_socket is None:
                all_closed = all_closed and transport is None
                continue
            raw_socket.close()
            transport._sock = None
    if all_closed:
        conns.clear()
        connector._closed = True


_live_pools: weakref.WeakSet[SessionPool] = weakref.WeakSet()
#: Sessions whose close was handed to a loop that was not running then (a notebook's loop at exit, say).
_parked: list[aiohttp.ClientSession] = []


@atexit.register
def _close_what_no_loop_will_close() -> None:
    """At interpreter exit, close by hand the sockets of sessions whose loop will never run again.

    A model used with ``await`` on a loop that stays open (a notebook) and is never closed would otherwise
    make aiohttp warn "Unclosed client session" as the interpreter exits. Registered at import, this runs
    after the finalizers of unclosed models (atexit runs last-registered first), which park their sessions
    here.
    """
    sessions = list(_parked)
    _parked.clear()
    for pool in list(_live_pools):
        sessions.extend(pool.take_idle_sessions())
    for session in sessions:
        if not session.closed:
            abandon(session)


class SessionPool:
    """At most one aiohttp session per event loop, created on first use on that loop, all closed together.

    Sessions of loops that have closed are dropped (their sockets closed) the next time a session is made.
    """

    __slots__ = ("__weakref__", "_closed", "_connector_options", "_lock", "_sessions")

    def __init__(self, *, limit: int, ssl_setting: bool | ssl.SSLContext) -> None:
        self._connector_options: dict[str, Any] = {
            "limit": limit,
            "limit_per_host": 0,
            "ttl_dns_cache": 300,
            "ssl": ssl_setting,
        }
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lock = threading.Lock()
        self._closed = False
        _live_pools.add(self)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def session(self) -> aiohttp.ClientSession | None:
        """The running loop's session, creating it when there is none; ``None`` once the pool is closed."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        with self._lock:
            if self._closed:
                return None
            for other in [other for other in self._sessions if other.is_closed()]:
                abandon(self._sessions.pop(other))
            session = self._sessions.get(loop)
            if session is None or session.closed:
                # No skip_auto_headers: every request carries our User-Agent, so aiohttp adds none, and a
                # session-wide skip list would send each request down aiohttp's slow header path.
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(**self._connector_options),
                    timeout=aiohttp.ClientTimeout(total=None),
                    auto_decompress=True,
                )
                _raise_mmap_threshold_once()
                self._sessions[loop] = session
            return session

    def counts(self) -> tuple[int, int, int]:
        """Return ``(sessions, idle pooled connections, connections in use)`` over every loop."""
        with self._lock:
            sessions = [session for loop, session in self._sessions.items() if not loop.is_closed()]
        pooled = in_use = 0
        for session in sessions:
            idle, lent = pool_connections(session)
            pooled += idle
            in_use += lent
        return len(sessions), pooled, in_use

    def take_idle_sessions(self) -> list[aiohttp.ClientSession]:
        """Remove and return the sessions whose loop is not running (for the exit-time clean-up)."""
        with self._lock:
            idle = [loop for loop in self._sessions if not loop.is_running()]
            return [self._sessions.pop(loop) for loop in idle]

    def _take_all(self, *, final: bool) -> list[tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]]:
        with self._lock:
            if final:
                self._closed = True
            taken = list(self._sessions.items())
            self._sessions.clear()
        return taken

    async def close(self) -> None:
        """Close every session; the pool makes no new ones afterwards."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, session in self._take_all(final=True):
            if loop is current:
                await session.close()
            else:
                _close_elsewhere(loop, session)

    def discard(self, *, final: bool = False) -> None:
        """Close every session without awaiting, from any thread; new sessions may be made afterwards unless
        ``final``."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, session in self._take_all(final=final):
            if loop is current:
                close_without_waiting(session)
            else:
                _close_elsewhere(loop, session)


def _close_elsewhere(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close a session of another loop: on that loop when it still runs, by hand when it is closed.

    That loop's thread may be blocked waiting for the caller (a sync twin called inside a running loop), so
    the close is handed to it rather than awaited.
    """
    if loop.is_closed():
        abandon(session)
        return
    try:
        loop.call_soon_threadsafe(close_without_waiting, session)
    except RuntimeError:  # closed in the meantime
        abandon(session)
        return
    if not loop.is_running():
        # It closes there if that loop runs again; if it never does, the exit-time clean-up closes it.
        _parked.append(session)
