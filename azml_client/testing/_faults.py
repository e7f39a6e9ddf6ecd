"""Faults the endpoint emulator can inject: one frozen value class with a constructor per kind."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import attrs
import orjson

STATUS: Final = "status"
DROP: Final = "drop"
TRUNCATE: Final = "truncate"
MALFORMED: Final = "malformed"
DELAY: Final = "delay"
HANG: Final = "hang"
SLOW: Final = "slow"
ENDLESS: Final = "endless"
CUT_STREAM: Final = "cut_stream"

FAULT_KINDS: Final = frozenset({STATUS, DROP, TRUNCATE, MALFORMED, DELAY, HANG, SLOW, ENDLESS, CUT_STREAM})

#: Names accepted in ``MockEndpoint(fault_kinds=...)`` besides any 4xx/5xx status code written as a string.
RANDOM_FAULT_KINDS: Final = ("429", "503", "500", "drop", "truncate", "malformed")


def error_code(status: int) -> str:
    """The error code the emulator puts in ``{"error": {"code": ...}}`` for a status: its phrase without spaces."""
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Error{status}"


def error_body(status: int, message: str) -> bytes:
    """The JSON error body the emulator answers: ``{"error": {"code": ..., "message": ...}}``."""
    return orjson.dumps({"error": {"code": error_code(status), "message": message}})


def _looks_like_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _check_kind(_instance: Fault, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {value!r}; expected one of {sorted(FAULT_KINDS)}")


@attrs.frozen
class Fault:
    """One injected fault for the emulator's next request; build it with a constructor, not directly.

    Faults are values: two faults built with the same arguments are equal, which lets tests compare the
    sequence of faults an endpoint served (``[r.fault for r in ep.requests]``).

    Attributes:
        kind: ``"status"``, ``"drop"``, ``"truncate"``, ``"malformed"``, ``"delay"``, ``"hang"``, ``"slow"``,
            ``"endless"`` or ``"cut_stream"``.
        status_code: the status answered by a ``status`` fault (200 for the others).
        body: the body of a ``status`` or ``malformed`` fault.
        content_type: the content type of that body.
        headers: extra response headers of a ``status`` fault, as ``(name, value)`` pairs.
        seconds: the sleep of a ``delay`` fault.
        bytes_per_second: the trickle rate of a ``slow`` fault.
        after_events: the number of SSE events a ``cut_stream`` fault lets through.
    """

    kind: str = attrs.field(validator=_check_kind)
    status_code: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    bytes_per_second: float = 0.0
    after_events: int = 0

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer ``code`` instead of the normal answer, e.g. 429 with ``{"retry-after-ms": "20"}``, 503, 424.

        ``body`` defaults to ``{"error": {"code": ..., "message": ...}}``. A mapping is sent as JSON, a str as
        ``text/plain``; bytes are sent as ``application/json`` when they parse as JSON, else as ``text/plain``.
        A ``content-type`` in ``headers`` wins over all of that.

        Raises:
            ValueError: ``code`` is not between 200 and 599.
        """
        if not 200 <= code <= 599:
            raise ValueError(f"status code must be between 200 and 599, got {code}")
        content_type = "application/json"
        if body is None:
            data = error_body(code, f"Emulated fault: HTTP {code} {error_code(code)}")
        elif isinstance(body, bytes):
            data = body
            if not _looks_like_json(body):
                content_type = "text/plain; charset=utf-8"
        elif isinstance(body, str):
            data = body.encode()
            content_type = "text/plain; charset=utf-8"
        else:
            data = orjson.dumps(body)
        pairs = tuple((str(name), str(value)) for name, value in (headers or {}).items())
        return cls(STATUS, status_code=code, body=data, content_type=content_type, headers=pairs)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response (transport abort)."""
        return cls(DROP)

    @classmethod
    def truncate(cls) -> Fault:
        """Send a 200 whose Content-Length is larger than the bytes sent, then close the connection."""
        return cls(TRUNCATE)

    @classmethod
    def malformed(cls, body: bytes = b"<html>not json", content_type: str = "text/html") -> Fault:
        """Answer 200 with ``body`` (not what the schema promises) as ``content_type``."""
        return cls(MALFORMED, body=body, content_type=content_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep ``seconds``, then answer normally.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds}")
        return cls(DELAY, seconds=float(seconds))

    @classmethod
    def hang(cls) -> Fault:
        """Accept the request and never answer; ends when the client disconnects or the emulator closes."""
        return cls(HANG)

    @classmethod
    def slow(cls, bytes_per_second: float) -> Fault:
        """Answer normally, but trickle the body (or each SSE event) at ``bytes_per_second``.

        Raises:
            ValueError: the rate is not positive.
        """
        if not bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be > 0, got {bytes_per_second}")
        return cls(SLOW, bytes_per_second=float(bytes_per_second))

    @classmethod
    def endless(cls) -> Fault:
        """Answer 200 with a chunked body that never ends: written until the client disconnects or the server closes."""
        return cls(ENDLESS)

    @classmethod
    def cut_stream(cls, after_events: int) -> Fault:
        """For a streaming (SSE) answer, send ``after_events`` ``data:`` events, then close the connection
        without ending the body; for any other answer, the same as :meth:`drop`.

        Raises:
            ValueError: ``after_events`` is negative.
        """
        if after_events < 0:
            raise ValueError(f"after_events must be >= 0, got {after_events}")
        return cls(CUT_STREAM, after_events=after_events)
