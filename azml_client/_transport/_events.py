"""Per-attempt events: what the transport tells ``on_attempt=`` hooks (and the layers built on them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs

__all__ = ["Attempt", "AttemptHook", "AttemptKind"]

#: What happened: ``sent`` (the request leaves), ``answered`` (a status arrived), ``failed`` (no answer:
#: connection error or timeout), ``retry`` (another attempt follows after ``delay`` seconds), ``throttled``
#: (a 429 sent the request back in line).
AttemptKind = Literal["sent", "answered", "failed", "retry", "throttled"]


@attrs.frozen(slots=True)
class Attempt:
    """One event of one attempt of a call, as given to ``EndpointClient(on_attempt=...)``.

    Hooks run in the task making the call (so context variables such as an OpenTelemetry span are the
    caller's), synchronously: keep them quick. An exception a hook raises is logged and swallowed.

    Attributes:
        kind: ``"sent"``, ``"answered"``, ``"failed"``, ``"retry"`` or ``"throttled"``.
        attempt: the attempt's number, 1 for the first.
        url: the URL called, without its query string.
        status: the HTTP status (``answered``, and ``retry`` / ``throttled`` after an answer).
        error: the type name of the error (``failed``, and ``retry`` after a failure), e.g. ``"APITimeoutError"``.
        delay: seconds until the next attempt (``retry`` / ``throttled``).
        request_id: the endpoint's request id, when the answer carried one.
        elapsed: seconds since the call's first attempt started.
        limit: the client's (adaptive) concurrency limit when the event happened.
        in_flight: the requests the client had in flight when the event happened.
    """

    kind: AttemptKind
    attempt: int
    url: str
    status: int | None = None
    error: str | None = None
    delay: float | None = None
    request_id: str | None = None
    elapsed: float = 0.0
    limit: float = 0.0
    in_flight: int = 0


#: A callable that receives every :class:`Attempt`.
AttemptHook = Callable[[Attempt], object]
