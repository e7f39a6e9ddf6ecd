"""What a batch tells its user: the counters, the live progress line on a terminal, and the closing summary."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import time
from typing import Final, TextIO

import attrs

from azml_client._exceptions import SystematicFailureError
from azml_client._types import Usage

__all__ = ["PROGRESS_INTERVAL", "BatchStats", "ProgressBar", "format_duration", "render_progress", "summary_lines"]

#: Seconds between two redraws of the progress line (at most 10 a second).
PROGRESS_INTERVAL: Final = 0.1


@attrs.define
class BatchStats:
    """The counters of one batch run, updated as result lines are written.

    Attributes:
        total: the inputs this run has to send (those already in OUT excluded).
        succeeded: result lines written without an error.
        failed: result lines written with an error.
        retries: attempts beyond the first, over every finished request (written or not).
        requests: HTTP attempts, over every finished request (written or not: a write failure does not
            hide the requests that were sent).
        failure_kinds: failed lines written, by kind (``"AuthenticationError (HTTP 401)"``: type and status).
        systematic: the error that stopped the run early because its requests failed systematically.
        prompt_tokens, completion_tokens, total_tokens: the usage the endpoint reported.
        in_flight: requests being sent now.
        resumed: lines an earlier run left in OUT (skipped now).
        resumed_failed: how many of those hold an error.
        invalid: input lines skipped as malformed (``--skip-invalid``).
        abandoned: requests still in flight when the run stopped (their inputs are sent again on resume).
        unwritten: results that finished after an interruption but could not be written in order
            (``--ordered``); they are sent again on resume.
        interrupted: the signal that stopped the run early, if one did.
        started: :func:`time.monotonic` at the start; ``ended`` at the end (None while running).
    """

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    in_flight: int = 0
    resumed: int = 0
    resumed_failed: int = 0
    invalid: int = 0
    abandoned: int = 0
    unwritten: int = 0
    interrupted: str | None = None
    failure_kinds: collections.Counter[str] = attrs.Factory(collections.Counter)
    systematic: SystematicFailureError | None = None
    started: float = attrs.Factory(time.monotonic)
    ended: float | None = None

    @property
    def done(self) -> int:
        """Lines written by this run."""
        return self.succeeded + self.failed

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the end, once ended)."""
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Lines written per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def sent(self, attempts: int) -> None:
        """Count the HTTP attempts of one finished request (counted when it finishes, before it is written)."""
        self.requests += attempts
        self.retries += max(attempts - 1, 0)

    def record(self, ok: bool, attempts: int, usage: Usage | None, kind: str | None = None) -> None:
        """Count one written line (its attempts are counted by :meth:`sent`); ``kind``: a failure's kind."""
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1
            self.failure_kinds[kind or "error"] += 1
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens or 0
            self.completion_tokens += usage.completion_tokens or 0
            self.total_tokens += usage.total_tokens or 0


def format_duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    whole = max(int(seconds + 0.5), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_progress(stats: BatchStats, width: int) -> str:
    """The progress line for a terminal ``width`` columns wide: done/total, a bar, rate, ETA, errors, retries."""
    total, done = stats.total, stats.done
    rate = stats.rate
    eta = format_duration((total - done) / rate) if rate > 0 and total >= done else "-:--"
    counts = f"{done}/{total}"
    tail = f" {done * 100 // total if total else 100:3d}%  {rate:.1f}/s  ETA {eta}  errors {stats.failed}"
    tail += f"  retries {stats.retries}"
    room = width - 1 - len(counts) - len(tail) - 3
    if room < 10:
        return (counts + tail)[: max(width - 1, 0)]
    bar_width = min(room, 40)
    filled = bar_width * done // total if total else bar_width
    return f"{counts} [{'#' * filled}{'.' * (bar_width - filled)}]{tail}"


def _terminal_width(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to (80 when it does not say)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or shutil.get_terminal_size((80, 24)).columns


class ProgressBar:
    """A one-line progress display on a terminal, redrawn in place with ``\\r`` at most 10 times a second.

    Args:
        stats: the counters to show.
        stream: the terminal (stderr).
    """

    def __init__(self, stats: BatchStats, stream: TextIO) -> None:
        self._stats = stats
        self._stream = stream
        self._shown = 0

    def draw(self) -> None:
        """Redraw the line now."""
        width = _terminal_width(self._stream)
        line = render_progress(self._stats, width)
        self._stream.write("\r" + line + " " * max(self._shown - len(line), 0))
        self._stream.flush()
        self._shown = len(line)

    def clear(self) -> None:
        """Blank the line, so that the next text starts on a clean line."""
        if self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0

    def finish(self) -> None:
        """Draw the final state and move to the next line, leaving the bar on screen."""
        self.draw()
        self._stream.write("\n")
        self._stream.flush()
        self._shown = 0

    def note(self, text: str) -> None:
        """Print a line of text above the progress line."""
        self.clear()
        self._stream.write(text + "\n")
        self._stream.flush()

    async def run(self) -> None:
        """Redraw every :data:`PROGRESS_INTERVAL` seconds until cancelled."""
        while True:
            self.draw()
            await asyncio.sleep(PROGRESS_INTERVAL)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {plural or noun + 's'}"


def summary_lines(stats: BatchStats, output: str) -> list[str]:
    """The summary printed when a batch ends: outcome, timing, retries, tokens and where the lines are."""
    elapsed = stats.elapsed
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    stopped = stats.interrupted is not None or stats.systematic is not None
    verdict = "stopped early" if stopped else "done"
    lines = [
        f"azml batch {verdict}: {stats.succeeded} succeeded, {stats.failed} failed"
        + (f" (of {stats.total})" if stopped else ""),
        f"  elapsed {elapsed:.2f} s, {rate:.1f} req/s; {_count(stats.requests, 'HTTP request')} "
        f"({_count(stats.retries, 'retry', 'retries')})",
    ]
    if stats.total_tokens or stats.prompt_tokens or stats.completion_tokens:
        lines.append(
            f"  tokens {stats.total_tokens} (prompt {stats.prompt_tokens}, completion {stats.completion_tokens})"
        )
    elif stats.done:
        lines.append("  tokens: the endpoint reported no usage")
    where = f"  output {output}: {_count(stats.done, 'line')} written"
    if stats.resumed:
        where += f", {stats.resumed} from an earlier run"
        if stats.resumed_failed:
            where += f" ({stats.resumed_failed} of them failed)"
    lines.append(where)
    if stats.abandoned:
        lines.append(f"  abandoned {_count(stats.abandoned, 'request')} still in flight (sent again on resume)")
    if stats.unwritten:
        lines.append(
            f"  {_count(stats.unwritten, 'result')} finished out of order and not written (sent again on resume)"
        )
    if stats.invalid:
        lines.append(f"  skipped {_count(stats.invalid, 'malformed input line')}")
    if stats.failure_kinds:
        lines.append("  failures by kind:")
        kinds = stats.failure_kinds.most_common()
        lines.extend(f"    {count:>7}  {kind}" for kind, count in kinds[:8])
        if len(kinds) > 8:
            lines.append(f"    {sum(count for _, count in kinds[8:]):>7}  of {len(kinds) - 8} other kinds")
    if stats.failed or stats.resumed_failed:
        lines.append('  failed lines carry {"error": {"type", "message"}}; --resume --retry-failed sends them again')
    return lines
