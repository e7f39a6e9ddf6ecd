"""Bounded-concurrency batch helpers: order-keeping ``run_batch`` and lazy ``run_as_completed``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from azml_client._exceptions import ConfigurationError
from azml_client._transport import batch_calls

__all__ = ["DEFAULT_BATCH_CONCURRENCY", "check_concurrency", "run_as_completed", "run_batch"]

In = TypeVar("In")
Out = TypeVar("Out")

#: Requests a batch keeps in flight unless told otherwise.
DEFAULT_BATCH_CONCURRENCY = 32

_END: Any = object()


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
) -> list[Out | Exception]:
    """Run ``call`` over ``inputs`` with at most ``max_concurrency`` in flight; results in input order.

    With ``return_exceptions=False`` the first failure cancels the calls still running and is raised;
    otherwise each failure is placed at its input's index.
    """
    items = list(inputs)
    results: list[Any] = [None] * len(items)
    if not items:
        return results
    position = iter(range(len(items)))
    failure: list[BaseException] = []

    async def worker() -> None:
        for index in position:
            try:
                results[index] = await call(items[index])
            except Exception as exc:
                if not return_exceptions:
                    failure.append(exc)
                    raise
                results[index] = exc

    with batch_calls():  # the workers' calls wait their turn on a 429 (unless the client says otherwise)
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(max_concurrency, len(items)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        await _cancel_all(tasks)
        if failure:
            raise failure[0] from None
        raise
    return results


async def run_as_completed(
    call: Callable[[In], Awaitable[Out]],
    inputs: Iterable[In] | AsyncIterable[In],
    *,
    max_concurrency: int,
) -> AsyncIterator[tuple[int, Out | Exception]]:
    """Yield ``(input index, result or exception)`` as calls finish, reading ``inputs`` lazily.

    At most ``max_concurrency`` calls run at once and at most that many finished results wait for the
    consumer, so memory does not grow with the number of inputs (a generator of millions is fine).
    Leaving the loop early cancels what is still running. When ``inputs`` itself raises, no more inputs are
    taken, every result of an input already taken is still yielded, and then the iterable's error is raised.
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
        if broken:
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
                try:
                    result: Any = await call(item)
                except Exception as exc:
                    result = exc
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
    finally:
        await _cancel_all(workers)


class _Finished:
    """A worker's last word: it ran out of inputs, or the inputs raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error
