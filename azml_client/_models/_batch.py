"""Bounded-concurrency batch helpers: order-keeping ``run_batch`` and lazy ``run_as_completed``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from azml_client._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    CredentialError,
    ResponseFormatError,
    SystematicFailureError,
)
from azml_client._transport import batch_calls

__all__ = [
    "DEFAULT_BATCH_CONCURRENCY",
    "SYSTEMATIC_FAILURE_THRESHOLD",
    "FailFast",
    "check_concurrency",
    "fail_fast_for",
    "failure_kind",
    "run_as_completed",
    "run_batch",
]

In = TypeVar("In")
Out = TypeVar("Out")

#: Requests a batch keeps in flight unless told otherwise.
DEFAULT_BATCH_CONCURRENCY = 32

#: Finished calls in a row that must fail the same systematic way before a batch stops (:class:`FailFast`).
SYSTEMATIC_FAILURE_THRESHOLD = 20

#: Statuses that say "this endpoint, key or path is wrong" whatever the input: a run of them counts anywhere.
_ENDPOINT_STATUSES = frozenset({401, 403, 404, 405, 407})
#: 4xx statuses that are not systematic: a timeout, a conflict, a model container error, throttling.
_TRANSIENT_4XX = frozenset({408, 409, 424, 425, 429})
#: How much of a 400's message must be the same for two failures to be "the same way".
_MESSAGE_START = 60

_END: Any = object()
_UNANSWERED: Any = object()  # a result slot whose call has not finished


def _connect_failure(error: BaseException) -> str | None:
    """``"connection refused"`` / ``"DNS failure"`` when that is what an :class:`APIConnectionError` came from."""
    seen: BaseException | None = error.__cause__
    for _ in range(8):
        if seen is None:
            return None
        os_error = getattr(seen, "os_error", seen)
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(os_error, socket.gaierror):
            return "DNS failure"
        seen = seen.__cause__ or seen.__context__
    return None


def failure_kind(error: BaseException) -> str:
    """A failure's kind for summaries: its type, and its HTTP status or connection failure.

    Examples: ``"AuthenticationError (HTTP 401)"``, ``"APIConnectionError (connection refused)"``,
    ``"APITimeoutError"``.
    """
    name = type(error).__name__
    if isinstance(error, APIStatusError):
        return f"{name} (HTTP {error.status_code})"
    if isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError):
        reason = _connect_failure(error)
        if reason is not None:
            return f"{name} ({reason})"
    return name


def _signature(error: BaseException) -> tuple[tuple[str, ...], bool] | None:
    """``(what makes two failures the same, whether a run counts after a success)``; None: not systematic."""
    kind = failure_kind(error)
    if isinstance(error, APIStatusError):
        status = error.status_code
        if status in _ENDPOINT_STATUSES:
            return (kind,), True
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            start = error.body[:_MESSAGE_START].decode("utf-8", "replace")
            return (kind, start), False
        return None  # 5xx, 408, 424, 429: transient, or throttling
    if isinstance(error, APITimeoutError):
        return None
    if isinstance(error, APIConnectionError):
        if _connect_failure(error) is not None or not error.retryable:  # refused, DNS, TLS verification
            return (kind, str(error)[:_MESSAGE_START] if not error.retryable else ""), True
        return None  # reset, dropped, truncated: transient
    if isinstance(error, (CredentialError, ResponseFormatError)):
        return (kind,), True
    return None


class FailFast:
    """The systematic-failure rule every batch surface shares (the CLI batch, ``abatch``, the scale-out helpers).

    Feed it every finished call with :meth:`observe`. It trips when the last ``threshold`` finished calls all
    failed *the same way* with a failure no retry fixes:

    - the same endpoint-level failure, anywhere in the batch: HTTP 401, 403, 404, 405 or 407 (same exception
      type and status), a refused connection or a DNS failure (same type and reason), a failed TLS
      verification, a :class:`CredentialError`, a :class:`ResponseFormatError` (the formatter does not fit);
    - the same input-level failure before any call succeeded: another 4xx (400, 413, 422, ...) with the same
      type, status and the same first 60 bytes of body (once one input succeeded, a run of bad inputs is
      data, not a broken setup).

    Anything else resets the run: a success, a different failure, and every transient failure (5xx, 408, 424,
    timeouts, reset or dropped connections) and throttling (429, which batches wait on). So a batch with any
    rate of transient faults never stops. Once tripped it stays tripped: :attr:`error` is the
    :class:`~azml_client.SystematicFailureError` to raise or report.

    Args:
        threshold: the length of the run that trips it (default 20, >= 1).
    """

    __slots__ = ("_run", "_signature", "_succeeded", "error", "sent", "threshold")

    def __init__(self, threshold: int = SYSTEMATIC_FAILURE_THRESHOLD) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(f"the systematic-failure threshold must be an int >= 1, got {threshold!r}")
        self.threshold = threshold
        #: Inputs taken so far (see :meth:`taken`); named in the error.
        self.sent = 0
        #: The error once tripped, else None.
        self.error: SystematicFailureError | None = None
        self._run = 0
        self._signature: tuple[str, ...] | None = None
        self._succeeded = False

    @property
    def tripped(self) -> bool:
        """Whether the batch must stop taking new work."""
        return self.error is not None

    def taken(self) -> None:
        """Count one input taken for sending."""
        self.sent += 1

    def observe(self, outcome: object) -> SystematicFailureError | None:
        """Count one finished call (its result, or the exception it failed with); return the error once tripped."""
        if self.error is not None:
            return self.error
        if not isinstance(outcome, BaseException):
            self._succeeded = True
            self._run, self._signature = 0, None
            return None
        found = _signature(outcome)
        if found is None or (not found[1] and self._succeeded):
            self._run, self._signature = 0, None
            return None
        signature = found[0]
        if signature == self._signature:
            self._run += 1
        else:
            self._run, self._signature = 1, signature
        if self._run >= self.threshold:
            self.error = SystematicFailureError(failure_kind(outcome), count=self._run, sent=self.sent, error=outcome)
            self.error.__cause__ = outcome
        return self.error


def fail_fast_for(value: bool | FailFast | None) -> FailFast | None:
    """The guard a batch method's ``stop_on_systematic_failure`` asks for: a fresh :class:`FailFast` for True."""
    if value is None or value is False:
        return None
    if value is True:
        return FailFast()
    if isinstance(value, FailFast):
        return value
    raise ConfigurationError(f"stop_on_systematic_failure must be a bool or a FailFast, got {value!r}")


def check_concurrency(value: int | None, default: int = DEFAULT_BATCH_CONCURRENCY) -> int:
    """Return ``value`` (or the default) after checking it is an int >= 1."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"max_concurrency must be an int >= 1, got {value!r}")
    return value


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_batch(
    call: Callable[[In], Awaitable[Out]],
    inputs: Iterable[In],
    *,
    max_concurrency: int,
    return_exceptions: bool,
    fail_fast: FailFast | None = None,
    deadline: float | None = None,
) -> list[Out | Exception]:
    """Run ``call`` over ``inputs`` with at most ``max_concurrency`` in flight; results in input order.

    With ``return_exceptions=False`` the first failure cancels the calls still running and is raised;
    otherwise each failure is placed at its input's index. With ``fail_fast``, once it trips no more inputs
    are sent, the calls still running are cancelled and its :class:`SystematicFailureError` is raised. When
    ``deadline`` seconds pass first, the calls still running are cancelled and every input without an answer
    gets an :class:`APITimeoutError` (raised at once without ``return_exceptions``).
    """
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0):
        raise ConfigurationError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    items = list(inputs)
    results: list[Any] = [_UNANSWERED] * len(items)
    if not items:
        return results
    position = iter(range(len(items)))
    failure: list[BaseException] = []

    async def worker() -> None:
        for index in position:
            if fail_fast is not None:
                fail_fast.taken()
            try:
                results[index] = await call(items[index])
            except Exception as exc:
                if not return_exceptions:
                    failure.append(exc)
                    raise
                results[index] = exc
            stop = fail_fast.observe(results[index]) if fail_fast is not None else None
            if stop is not None:
                failure.append(stop)
                raise stop

    with batch_calls():  # the workers' calls wait their turn on a 429 (unless the client says otherwise)
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrency, len(items)))]
    try:
        if deadline is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.wait_for(asyncio.gather(*tasks), deadline)
    except (asyncio.TimeoutError, TimeoutError):  # the same class from 3.11 on; not on 3.10
        await _cancel_all(tasks)
        if failure:
            raise failure[0] from failure[0].__cause__
        late = APITimeoutError(f"the batch deadline of {deadline:g} s ran out before this input was answered")
        if not return_exceptions:
            raise late from None
        return [late if result is _UNANSWERED else result for result in results]
    except BaseException:
        await _cancel_all(tasks)
        if failure:
            raise failure[0] from failure[0].__cause__  # its own cause kept, the gather's context hidden
        raise
    return results


async def run_as_completed(
    call: Callable[[In], Awaitable[Out]],
    inputs: Iterable[In] | AsyncIterable[In],
    *,
    max_concurrency: int,
    fail_fast: FailFast | None = None,
) -> AsyncIterator[tuple[int, Out | Exception]]:
    """Yield ``(input index, result or exception)`` as calls finish, reading ``inputs`` lazily.

    At most ``max_concurrency`` calls run at once and at most that many finished results wait for the
    consumer, so memory does not grow with the number of inputs (a generator of millions is fine).
    Leaving the loop early cancels what is still running. When ``inputs`` itself raises, no more inputs are
    taken, every result of an input already taken is still yielded, and then the iterable's error is raised.
    With ``fail_fast``, once it trips no more inputs are taken, the calls running finish and are yielded, and
    then its :class:`SystematicFailureError` is raised.
    """
    done: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=max_concurrency)
    counter = iter(range(1 << 62))
    source_lock = asyncio.Lock()
    sync_iter: Iterator[In] | None = None
    async_iter: AsyncIterator[In] | None = None
    if isinstance(inputs, AsyncIterable):
        async_iter = aiter(inputs)
    else:
        sync_iter = iter(inputs)

    broken: list[Exception] = []  # the inputs' own error, once they raised: no worker reads them again

    async def next_input() -> tuple[int, In] | Any:
        if broken or (fail_fast is not None and fail_fast.tripped):
            return _END
        if sync_iter is not None:
            item = next(sync_iter, _END)
        else:
            assert async_iter is not None
            async with source_lock:
                item = await anext(async_iter, _END)
        return _END if item is _END else (next(counter), item)

    async def worker() -> None:
        failure: Exception | None = None
        try:
            while True:
                got = await next_input()
                if got is _END:
                    break
                index, item = got
                if fail_fast is not None:
                    fail_fast.taken()
                try:
                    result: Any = await call(item)
                except Exception as exc:
                    result = exc
                if fail_fast is not None:
                    fail_fast.observe(result)
                await done.put((index, result))
        except Exception as exc:  # the inputs themselves failed: the consumer re-raises it after the rest
            failure = exc
            broken.append(exc)
        await done.put((-1, _Finished(failure)))

    with batch_calls():  # the workers' calls wait their turn on a 429 (unless the client says otherwise)
        workers = [asyncio.ensure_future(worker()) for _ in range(max_concurrency)]
    running = len(workers)
    error: Exception | None = None
    try:
        while running:
            index, result = await done.get()
            if isinstance(result, _Finished):
                running -= 1
                if result.error is not None and error is None:
                    error = result.error
                continue
            yield index, result
        if error is not None:  # every input taken before the failure has had its result yielded
            raise error
        if fail_fast is not None and fail_fast.error is not None:
            raise fail_fast.error
    finally:
        await _cancel_all(workers)


class _Finished:
    """A worker's last word: it ran out of inputs, or the inputs raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error
