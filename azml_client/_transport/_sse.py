"""An incremental decoder for ``text/event-stream`` bodies, following the WHATWG server-sent events spec."""

from __future__ import annotations

import codecs
import re

import attrs

__all__ = ["SSEDecoder", "ServerSentEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@attrs.frozen(slots=True)
class ServerSentEvent:
    """One dispatched event: its ``data`` (lines joined by LF), type, last event id and retry hint."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turn the bytes of an event stream, cut into chunks anywhere, into :class:`ServerSentEvent` objects.

    Handles LF, CRLF and CR line ends (a CRLF split across two chunks included), comments, ``event:``,
    ``id:`` and ``retry:`` fields, multi-line ``data:``, a leading BOM, and UTF-8 characters split across
    chunks. Feed chunks with :meth:`feed`; call :meth:`flush` at the end of the body. Unlike the spec, which
    drops an event that the stream ends without a blank line after, :meth:`flush` still dispatches it, so
    nothing a server sent is lost.
    """

    __slots__ = ("_data", "_decoder", "_event", "_last_id", "_pending", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending: list[str] = []  # the open (unterminated) line, in the pieces it arrived in
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one chunk and return the events it completes (possibly none)."""
        return self._feed_text(self._decoder.decode(chunk))

    def flush(self) -> list[ServerSentEvent]:
        """End the stream: decode what is buffered and dispatch any event still open."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        if self._pending:
            line, self._pending = "".join(self._pending), []
            self._line(line, events)
        self._dispatch(events)
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        if not text:
            return events
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if not text:
            return events
        if "\n" not in text and "\r" not in text:
            # Only more of the open line: keep the piece without re-scanning the line so far, so a line that
            # never ends costs linear time up to the response size cap, not quadratic.
            self._pending.append(text)
            return events
        buffer = "".join(self._pending) + text if self._pending else text
        lines = _LINE_END.split(buffer)
        if buffer[-1] == "\r":
            # The CR ends a line, but a LF may follow in the next chunk: it must not end another one.
            self._skip_lf = True
            self._pending = []
            lines.pop()
        else:
            last = lines.pop()
            self._pending = [last] if last else []
        for line in lines:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        if self._data:
            events.append(
                ServerSentEvent(
                    data="\n".join(self._data), event=self._event or "message", id=self._last_id, retry=self._retry
                )
            )
            self._data = []
        self._event = ""
