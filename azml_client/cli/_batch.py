"""The batch job behind ``azml batch``: input checked up front, bounded concurrency, every result line written
as it finishes, resume after a crash, and a graceful stop on Ctrl-C.

Memory stays flat whatever the input's size: the input is read one line at a time (twice: a first pass keeps
only the ids, to refuse repeated ids before anything is sent), at most ``concurrency`` requests are in flight,
and a result is written (one ``write`` per line) as soon as it is known; only ``--ordered`` holds finished
results back, at most a window of ``max(4 * concurrency, 8192)`` of them (a few MB of result lines), until the
ones before them are written. The window is wide so that a line waiting out its retries' backoff (a second or
two) does not stall the lines after it: at 5% transient faults ``--ordered`` costs about as much as unordered.

Stdin (or any other pipe) can be read only once, so it is first copied to a temporary file (on disk, not in
memory) and the batch starts when it ends; that also gives the progress line its total.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final, Literal, TextIO

import attrs
import orjson

from azml_client import _observability
from azml_client._exceptions import ConfigurationError
from azml_client._models import LLM, ChatModel
from azml_client._models._batch import (
    DEFAULT_BATCH_CONCURRENCY,
    SYSTEMATIC_FAILURE_THRESHOLD,
    FailFast,
    failure_kind,
)
from azml_client._types import Usage
from azml_client.cli._jobs import IdSet, InputFormat, InputScan, Job, detect_format, iter_jobs, scan_input
from azml_client.cli._output import LineWriter, ResumeState, open_output, prepare_resume
from azml_client.cli._report import BatchStats, ProgressBar, summary_lines

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_GRACE",
    "EXIT_SYSTEMATIC",
    "BatchError",
    "BatchJob",
    "BatchOptions",
    "BatchRunner",
    "exit_code",
]

#: Requests in flight unless ``--concurrency`` says otherwise (the core batch default).
DEFAULT_CONCURRENCY: Final = DEFAULT_BATCH_CONCURRENCY
#: The exit status of a batch stopped early because its requests failed systematically (see ``FailFast``).
EXIT_SYSTEMATIC: Final = 3
#: Seconds that requests in flight get to finish after Ctrl-C before they are abandoned.
DEFAULT_GRACE: Final = 5.0
#: ``--ordered`` holds at most this many finished results per unit of concurrency...
ORDER_WINDOW_FACTOR: Final = 4
#: ... and at least this many: wide enough to cover a few seconds of results behind one slow retry.
ORDER_WINDOW_MIN: Final = 8192


class BatchError(Exception):
    """The batch cannot start: bad input lines, repeated ids, unreadable input. Nothing was sent."""


@attrs.frozen(slots=True)
class BatchOptions:
    """What ``azml batch`` was asked to do.

    Attributes:
        input: the input file, or ``-`` for stdin.
        output: the output file, or ``-`` for stdout.
        concurrency: requests in flight at once.
        resume: finish the run that OUT holds: skip ids already there, drop a torn last line.
        retry_failed: with ``resume``, send the lines that failed again (their error lines are removed).
        ordered: write results in input order instead of as they finish.
        skip_invalid: skip malformed input lines (reported) instead of refusing to start.
        overwrite: replace an existing OUT.
        input_format: ``"jsonl"``, ``"text"``, or ``"auto"`` (by suffix, else by the first line).
        grace: seconds in-flight requests get after Ctrl-C.
        progress: show the progress line; ``None`` shows it when stderr is a terminal.
        resume_command: the command line that resumes this run, printed after an interruption.
        fail_fast: stop taking inputs once this many finished requests in a row failed the same systematic way
            (the rule of :class:`~azml_client._models._batch.FailFast`); 0 never stops.
    """

    input: str
    output: str
    concurrency: int = DEFAULT_CONCURRENCY
    resume: bool = False
    retry_failed: bool = False
    ordered: bool = False
    skip_invalid: bool = False
    overwrite: bool = False
    input_format: Literal["auto", "jsonl", "text"] = "auto"
    grace: float = DEFAULT_GRACE
    progress: bool | None = None
    resume_command: str | None = None
    fail_fast: int = SYSTEMATIC_FAILURE_THRESHOLD


@attrs.frozen(slots=True)
class _Result:
    """One finished job: its output line and what the counters and the systematic-failure rule need."""

    line: bytes
    ok: bool
    attempts: int
    usage: Usage | None
    error: Exception | None = None
    kind: str | None = None


class BatchRunner:
    """Sends jobs with at most ``concurrency`` in flight and writes each result line as it finishes.

    Workers pull the next job from a shared lazy iterator, so only the jobs in flight are in memory.
    :meth:`stop` stops taking jobs and gives the ones in flight until a deadline; :meth:`abort` abandons
    them at once. Finished results are always written; abandoned ones are not, and are sent again on resume.

    Args:
        llm: the model for prompt lines (None when there are none).
        chat: the model for chat lines (None when there are none).
        writer: where result lines go.
        stats: the counters to update.
        concurrency: the most requests in flight.
        ordered: write in input order (holding back at most ``max(4 * concurrency, 8192)`` finished results).
        order_window: with ``ordered``, the most finished results held back (default
            ``max(4 * concurrency, 8192)``).
        fail_fast: the systematic-failure rule; once it trips no new job is taken, the ones in flight finish
            and are written, and ``stats.systematic`` holds its error.
    """

    def __init__(
        self,
        *,
        llm: LLM | None,
        chat: ChatModel | None,
        writer: LineWriter,
        stats: BatchStats,
        concurrency: int,
        ordered: bool = False,
        fail_fast: FailFast | None = None,
        order_window: int | None = None,
    ) -> None:
        self._llm = llm
        self._guard = fail_fast
        self._chat = chat
        self._writer = writer
        self._stats = stats
        self._concurrency = concurrency
        self._ordered = ordered
        self._window = order_window or max(ORDER_WINDOW_FACTOR * concurrency, ORDER_WINDOW_MIN)
        self._taken = 0
        self._next_write = 0
        self._held: dict[int, _Result] = {}
        self._advanced = asyncio.Event()
        self._aborted = asyncio.Event()
        self._stopping = False
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def stop(self, grace: float) -> None:
        """Take no new jobs; abandon the ones in flight if they are not done within ``grace`` seconds."""
        if self._stopping:
            return
        self._stopping = True
        self._advanced.set()
        self._deadline = asyncio.get_running_loop().call_later(grace, self._aborted.set)

    def abort(self) -> None:
        """Take no new jobs and abandon the ones in flight now."""
        self._stopping = True
        self._advanced.set()
        self._aborted.set()

    async def run(self, jobs: Iterator[Job]) -> None:
        """Send every job of ``jobs`` (until stopped) and write the results.

        Raises:
            OSError: a result could not be written (the other requests are abandoned first).
        """
        model = self._chat if self._chat is not None else self._llm
        otel = _observability.active() if model is not None else None
        with contextlib.ExitStack() as stack:
            if otel is not None and model is not None:  # one span; its first calls are its children
                stack.enter_context(_observability.batch(otel, model.client, {}))
            await self._run(jobs)

    async def _run(self, jobs: Iterator[Job]) -> None:
        workers = [asyncio.create_task(self._worker(jobs)) for _ in range(max(self._concurrency, 1))]
        aborted = asyncio.create_task(self._aborted.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(workers)
            while pending:
                done, pending = await asyncio.wait({*pending, aborted}, return_when=asyncio.FIRST_COMPLETED)
                if aborted in done:
                    self._stats.abandoned = self._stats.in_flight
                    break
                pending.discard(aborted)
                for task in done:
                    error = task.exception()
                    if error is not None:
                        raise error
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            for task in [*workers, aborted]:
                task.cancel()
            await asyncio.gather(*workers, aborted, return_exceptions=True)
            self._stats.unwritten = len(self._held)

    async def _worker(self, jobs: Iterator[Job]) -> None:
        while not self._stopping:
            # Workers share one iterator; next() never awaits, so two of them cannot be inside it at once.
            job = next(jobs, None)
            if job is None:
                return
            seq = self._taken
            self._taken += 1
            if self._ordered and not await self._admit(seq):
                return
            if self._guard is not None:
                self._guard.taken()
            self._stats.in_flight += 1
            try:
                result = await self.send(job)
            finally:
                self._stats.in_flight -= 1
            self._stats.sent(result.attempts)
            if self._guard is not None and self._guard.observe(result.error or result) is not None:
                self._stop_systematic()
            self._emit(seq, result)

    def _stop_systematic(self) -> None:
        """The rule tripped: take no new job; the ones in flight finish (they fail fast) and are written."""
        if self._stats.systematic is None and self._guard is not None:
            self._stats.systematic = self._guard.error
        self._stopping = True
        self._advanced.set()

    async def _admit(self, seq: int) -> bool:
        """Wait until ``seq`` is inside the order window; False when the run stops meanwhile."""
        while seq >= self._next_write + self._window and not self._stopping:
            self._advanced.clear()
            await self._advanced.wait()
        return not self._stopping

    def _emit(self, seq: int, result: _Result) -> None:
        if not self._ordered:
            self._write(result)
            return
        self._held[seq] = result
        while self._next_write in self._held:
            self._write(self._held.pop(self._next_write))
            self._next_write += 1
        self._advanced.set()

    def _write(self, result: _Result) -> None:
        self._writer.write(result.line)
        self._stats.record(result.ok, result.attempts, result.usage, result.kind)

    async def send(self, job: Job) -> _Result:
        """Send one job and return its result line; a failure becomes a line with an ``error``, never raises."""
        started = time.perf_counter()
        output: str | None = None
        finish_reason: str | None = None
        usage: Usage | None = None
        tool_calls: list[dict[str, Any]] = []
        error: dict[str, str] | None = None
        failure: Exception | None = None
        try:
            if job.messages is not None:
                if self._chat is None:
                    raise ConfigurationError("this batch has no chat model for a 'messages' line")
                chat_result = await self._chat.ainvoke(list(job.messages), stop=job.stop, **job.params)
                output, finish_reason, usage = chat_result.content, chat_result.finish_reason, chat_result.usage
                tool_calls = [call.to_dict() for call in chat_result.tool_calls]
                call = chat_result.call
            else:
                if self._llm is None:
                    raise ConfigurationError("this batch has no completion model for a 'prompt' line")
                assert job.prompt is not None
                completion = await self._llm.acomplete(job.prompt, stop=job.stop, **job.params)
                output, finish_reason, usage = completion.text, completion.finish_reason, completion.usage
                call = completion.call
            attempts = call.attempts if call is not None else 1
        except Exception as exc:  # every failure of one input becomes its error line
            failure = exc
            error = {"type": type(exc).__name__, "message": str(exc)}
            attempts = getattr(exc, "attempts", 0 if isinstance(exc, ConfigurationError) else 1)
        record: dict[str, Any] = {
            "id": job.id,
            "output": output,
            "finish_reason": finish_reason,
            "usage": None if usage is None else usage.to_dict(),
            "error": error,
            "attempts": attempts,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 1),
        }
        if tool_calls:
            record["tool_calls"] = tool_calls
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        return _Result(
            line, failure is None, attempts, usage, failure, None if failure is None else failure_kind(failure)
        )


def exit_code(stats: BatchStats) -> int:
    """0 when every line of OUT succeeded, 1 when some failed (in this run or, on resume, an earlier one),
    3 (:data:`EXIT_SYSTEMATIC`) when the run stopped early on a systematic failure, 128 + the signal number
    after an interruption."""
    if stats.interrupted is not None:
        return 128 + int(getattr(signal, stats.interrupted, signal.SIGINT))
    if stats.systematic is not None:
        return EXIT_SYSTEMATIC
    return 1 if stats.failed or stats.resumed_failed else 0


@contextlib.contextmanager
def _open_input(name: str) -> Iterator[IO[bytes]]:
    """Open the input for two passes: a file as it is; stdin (or a pipe) copied to a temporary file first."""
    if name == "-":
        with tempfile.TemporaryFile(prefix="azml-batch-") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
            spool.seek(0)
            yield spool
        return
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below, after a possible spooling
    except OSError as exc:
        raise BatchError(f"cannot read {name}: {exc.strerror or exc}") from None
    with stream:
        if stream.seekable():
            yield stream
            return
        with tempfile.TemporaryFile(prefix="azml-batch-") as spool:
            shutil.copyfileobj(stream, spool, 1 << 20)
            spool.seek(0)
            yield spool


def _check_scan(scan: InputScan, options: BatchOptions, note: Callable[[str], None]) -> None:
    """Refuse repeated ids (always) and malformed lines (unless skipped); report what is skipped."""
    name = "<stdin>" if options.input == "-" else options.input
    if scan.duplicate_count:
        shown = [
            f"  id {job_id!r} is used by lines {', '.join(map(str, lines))}"
            for job_id, lines in scan.duplicates.items()
        ]
        more = scan.duplicate_count - sum(len(lines) - 1 for lines in scan.duplicates.values())
        if more > 0:
            shown.append(f"  ... and {more} more repeated ids")
        raise BatchError(
            f"{name}: {scan.duplicate_count} lines repeat an id of an earlier line; ids must be unique "
            "(nothing was sent):\n" + "\n".join(shown)
        )
    if scan.invalid_count:
        shown = [f"  {problem}" for problem in scan.invalid]
        if scan.invalid_count > len(scan.invalid):
            shown.append(f"  ... and {scan.invalid_count - len(scan.invalid)} more")
        if not options.skip_invalid:
            raise BatchError(
                f"{name}: {scan.invalid_count} malformed lines (nothing was sent; --skip-invalid skips them):\n"
                + "\n".join(shown)
            )
        note(f"azml: skipping {scan.invalid_count} malformed lines of {name}:\n" + "\n".join(shown))


class _Signals:
    """SIGINT / SIGTERM handlers for the time a batch runs: the first stops gracefully, the second at once."""

    def __init__(self, on_signal: Callable[[signal.Signals], None]) -> None:
        self._on_signal = on_signal
        self._loop = asyncio.get_running_loop()
        self._installed: list[signal.Signals] = []
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
            except NotImplementedError:  # Windows: a plain handler that hands the signal to the loop
                self._previous[sig] = signal.signal(
                    sig, lambda number, _frame: self._loop.call_soon_threadsafe(self._on_signal, signal.Signals(number))
                )
            except (RuntimeError, ValueError):  # not the main thread: Ctrl-C keeps its default behaviour
                pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class BatchJob:
    """One batch, in three steps: :meth:`prepare` (sync: read the input once, check it, repair OUT on resume),
    :meth:`run` (async: send and write), :meth:`report` (sync: the summary). Use it as a context manager, which
    closes the input and OUT::

        with BatchJob(options) as job:
            job.prepare()
            llm, chat = build_models(job.needs_completion, job.needs_chat)   # settings checked before OUT opens
            job.open_output()
            stats = asyncio.run(job.run(llm, chat))
            job.report()

    Args:
        options: what to do.
        stderr: where notes, the progress line and the summary go (default ``sys.stderr``).
    """

    def __init__(self, options: BatchOptions, *, stderr: TextIO | None = None) -> None:
        self.options = options
        self._err = stderr if stderr is not None else sys.stderr
        self._stack = contextlib.ExitStack()
        self._stream: IO[bytes] | None = None
        self._format: InputFormat = "jsonl"
        self._scan: InputScan | None = None
        self._resume = ResumeState(done=IdSet())
        self._writer: LineWriter | None = None
        self.stats = BatchStats()

    def __enter__(self) -> BatchJob:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the input and OUT (OUT is fsync'd first)."""
        self._stack.close()

    def note(self, text: str) -> None:
        """Write a line to stderr."""
        self._err.write(text + "\n")
        self._err.flush()

    def prepare(self) -> None:
        """Open and check the input (one pass, keeping only ids), then read and repair OUT on resume.

        Raises:
            BatchError: the options conflict, or the input is unreadable, malformed (without ``skip_invalid``)
                or repeats ids. Nothing was sent and OUT was not touched.
            OutputError: on resume, OUT holds lines that are not this input's results.
        """
        options = self.options
        if options.resume and options.output == "-":
            raise BatchError("--resume needs OUT to be a file, not stdout")
        if options.concurrency < 1:
            raise BatchError(f"--concurrency must be at least 1, got {options.concurrency}")
        if options.input != "-" and options.output != "-" and _same_file(options.input, options.output):
            raise BatchError("the input and OUT are the same file")
        stream = self._stream = self._stack.enter_context(_open_input(options.input))
        self._format = options.input_format if options.input_format != "auto" else detect_format(stream, options.input)
        scan = self._scan = scan_input(stream, self._format)
        _check_scan(scan, options, self.note)
        if options.resume:
            self._resume = prepare_resume(Path(options.output), scan.ids, retry_failed=options.retry_failed)
            _report_resume(self._resume, options.output, self.note)
        done = len(self._resume.done)
        self.stats = BatchStats(
            total=scan.jobs - done, resumed=done, resumed_failed=self._resume.failed, invalid=scan.invalid_count
        )

    @property
    def needs_completion(self) -> bool:
        """Whether the input has prompt lines (the batch needs an LLM)."""
        return self._scan is not None and self._scan.completion_jobs > 0

    @property
    def needs_chat(self) -> bool:
        """Whether the input has chat lines (the batch needs a ChatModel)."""
        return self._scan is not None and self._scan.chat_jobs > 0

    def open_output(self) -> None:
        """Open OUT: appended to on resume, else created (or replaced with ``overwrite``).

        Raises:
            OutputError: OUT exists and holds lines, without ``resume`` or ``overwrite``; or it cannot be opened.
        """
        options = self.options
        self._writer = open_output(options.output, append=options.resume, overwrite=options.overwrite)
        self._stack.callback(self._writer.close)

    async def run(self, llm: LLM | None, chat: ChatModel | None) -> BatchStats:
        """Send every job not done yet and write its line; returns the counters (see :func:`exit_code`).

        Raises:
            OSError: OUT could not be written (requests still in flight are abandoned).
        """
        if self._stream is None or self._writer is None:
            raise RuntimeError("call prepare() and open_output() before run()")
        jobs = iter_jobs(self._stream, self._format, self._resume.done)
        self.stats.started = time.monotonic()
        await _execute(self.options, self.stats, llm, chat, self._writer, jobs, self._err)
        self._writer.sync()
        return self.stats

    def report(self) -> None:
        """Print the summary, and after an interruption how to resume."""
        options = self.options
        for line in summary_lines(self.stats, "<stdout>" if options.output == "-" else options.output):
            self.note(line)
        if self.stats.interrupted:
            self.note(_resume_advice(options, self.stats))
        elif self.stats.systematic is not None:
            self.note(_systematic_advice(options, self.stats))


def _same_file(first: str, second: str) -> bool:
    try:
        return Path(first).resolve() == Path(second).resolve()
    except OSError:
        return False


def _report_resume(resume: ResumeState, output: str, note: Callable[[str], None]) -> None:
    if resume.torn_bytes:
        note(f"azml: {output}: dropped an unfinished last line ({resume.torn_bytes} bytes); its input is sent again")
    if resume.redo:
        note(f"azml: {output}: sending the {resume.redo} failed lines again (--retry-failed)")
    if resume.repeated:
        note(f"azml: warning: {output} has {resume.repeated} lines whose id an earlier line already has")
    if resume.kept:
        note(f"azml: resuming: {resume.kept} lines already in {output} are skipped")


def _resume_advice(options: BatchOptions, stats: BatchStats) -> str:
    left = stats.total - stats.done
    where = "the same input on stdin and " if options.input == "-" else ""
    command = options.resume_command or "the same command with --resume"
    return (
        f"azml: interrupted by {stats.interrupted}: {left} inputs are not done yet. Every line in "
        f"{options.output} is whole; to finish, run with {where}--resume:\n  {command}"
    )


def _systematic_advice(options: BatchOptions, stats: BatchStats) -> str:
    error = stats.systematic
    assert error is not None
    left = stats.total - stats.done
    command = options.resume_command or "the same command with --resume"
    if "--retry-failed" not in command:
        command += " --retry-failed"
    return (
        f"azml: stopped early: the last {error.count} finished requests all failed the same way "
        f"({error.kind}); {error.sent} inputs were sent, {left} were not. Fix the cause (the key, the URL, the "
        f"deployment, the endpoint), then finish the run, sending the failed lines again:\n  {command}\n"
        f"  last error: {error.error}"
    )


async def _execute(
    options: BatchOptions,
    stats: BatchStats,
    llm: LLM | None,
    chat: ChatModel | None,
    writer: LineWriter,
    jobs: Iterator[Job],
    err: TextIO,
) -> None:
    show_progress = options.progress if options.progress is not None else err.isatty()
    runner = BatchRunner(
        llm=llm,
        chat=chat,
        writer=writer,
        stats=stats,
        concurrency=options.concurrency,
        ordered=options.ordered,
        fail_fast=FailFast(options.fail_fast) if options.fail_fast > 0 else None,
    )
    progress = ProgressBar(stats, err) if show_progress else None

    def say(text: str) -> None:
        if progress is not None:
            progress.note(text)
        else:
            err.write(text + "\n")
            err.flush()

    def on_signal(sig: signal.Signals) -> None:
        if stats.interrupted is None:
            stats.interrupted = sig.name
        if runner.stopping:
            runner.abort()
            return
        say(
            f"azml: {sig.name}: taking no new inputs; waiting up to {options.grace:g} s for the "
            f"{stats.in_flight} requests in flight (Ctrl-C again stops now)"
        )
        runner.stop(options.grace)

    painter = asyncio.create_task(progress.run()) if progress is not None else None
    try:
        with _Signals(on_signal):
            await runner.run(jobs)
    finally:
        stats.ended = time.monotonic()
        if painter is not None:
            painter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await painter
        if progress is not None:
            progress.finish()
