"""The engine-neutral scale-out core pipelines batches: the next batch's rows fill the slots the last one leaves.

These drive ``azml_client._scale`` directly (as a Spark worker and a Ray actor do) against the emulator on a
driver thread, so they run without Spark or Ray; tests/spark and tests/ray run the same code on the engines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import azml_client as az
from azml_client import _scale
from azml_client._models._batch import FailFast
from tests.scaleout_support import KEY, threaded_endpoint

pa = pytest.importorskip("pyarrow")

RETRY = az.RetryPolicy(max_retries=6, initial_delay=0.001)


def _batches(n_batches: int, rows: int, start: int = 0) -> list[Any]:
    return [
        pa.RecordBatch.from_pylist(
            [{"id": i, "prompt": f"row {i}"} for i in range(start + b * rows, start + (b + 1) * rows)]
        )
        for b in range(n_batches)
    ]


def _config(url: str, key: str = KEY, **options: Any) -> _scale.ScoreConfig:
    options.setdefault("retry", RETRY)
    return _scale.make_config("completion", "prompt", url, key, None, None, None, None, options)


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _outputs(batches: list[Any]) -> list[tuple[int, str | None, str | None]]:
    return [(r["id"], r["output"], r["error"]) for b in batches for r in b.to_pylist()]


def test_a_partitions_next_batch_starts_while_the_last_ones_rows_are_in_flight() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.05) as ep:
        config = _config(ep.url, max_batch_concurrency=8)
        out = list(_scale.score_batches(config, iter(_batches(6, 4))))
        peak = ep.max_in_flight
    assert _outputs(out) == [(i, f"echo: row {i}", None) for i in range(24)]  # every row, in order
    # A batch has 4 rows, so 8 at once means two batches were in flight together (the pipeline is
    # PIPELINE_DEPTH = 2 batches deep), and the worker's cap (8) holds.
    assert peak == 8


def test_the_workers_concurrency_cap_holds_across_the_batches_in_flight() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.02) as ep:
        config = _config(ep.url, max_batch_concurrency=3)
        out = list(_scale.score_batches(config, iter(_batches(5, 10))))
        peak = ep.max_in_flight
    assert len(_outputs(out)) == 50
    assert all(error is None for _, _, error in _outputs(out))
    assert peak == 3


def test_closing_a_partition_early_cancels_the_calls_of_the_batches_in_flight() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.3, record_limit=None) as ep:
        config = _config(ep.url, max_batch_concurrency=64)
        stream = _scale.score_batches(config, iter(_batches(50, 20)))
        first = next(stream)  # the first batch answered; the second is in flight
        stream.close()  # the engine cancels the task
        _until(lambda: ep.in_flight == 0)
        in_flight_after, sent = ep.in_flight, ep.request_count
    assert first.num_rows == 20
    assert in_flight_after == 0  # the second batch's calls were cancelled, not left running
    assert sent <= 40  # and no batch after the second was started


def test_the_input_is_read_lazily_at_most_the_pipelines_depth_ahead() -> None:
    taken: list[int] = []

    def source() -> Iterator[Any]:
        for index, batch in enumerate(_batches(10, 3)):
            taken.append(index)
            yield batch

    with threaded_endpoint(api_key=KEY) as ep:
        stream = _scale.score_batches(_config(ep.url), source())
        next(stream)
        assert len(taken) == 2  # PIPELINE_DEPTH: memory holds two batches, not the partition
        rest = list(stream)
    assert len(rest) == 9


def test_a_systematic_failure_in_a_pipelined_partition_stops_it_with_the_rows_error() -> None:
    with threaded_endpoint(api_key=KEY, record_limit=None) as ep:
        config = _config(ep.url, key="wrong", max_batch_concurrency=4)
        with pytest.raises(az.SystematicFailureError, match=r"stopped: 20 consecutive rows failed with Auth"):
            list(_scale.score_batches(config, iter(_batches(100, 10))))
        sent = ep.request_count
    assert sent < 60  # about 20 rows and the calls already running, not 1,000


def test_batches_awaited_at_once_from_a_foreign_loop_share_the_workers_cap() -> None:
    # Ray Data awaits an actor's batches on a loop of its own: the calls run on the model's loop.
    with threaded_endpoint(api_key=KEY, latency=0.05) as ep:
        config = _config(ep.url, max_batch_concurrency=6)
        guard = FailFast()

        async def main() -> list[Any]:
            return await asyncio.gather(*(_scale.ascore_batch(config, b, guard) for b in _batches(4, 4)))

        out = asyncio.run(main())
        peak = ep.max_in_flight
    assert _outputs(out) == [(i, f"echo: row {i}", None) for i in range(16)]
    assert peak == 6  # more than one batch's 4 rows, and never above the cap


def test_cancelling_an_awaited_batch_cancels_its_calls_on_the_models_loop() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.5, record_limit=None) as ep:
        config = _config(ep.url, max_batch_concurrency=16)

        async def main() -> None:
            task = asyncio.ensure_future(_scale.ascore_batch(config, _batches(1, 16)[0], FailFast()))
            await asyncio.to_thread(_until, lambda: ep.in_flight >= 4)  # (the client's limit starts at 8)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        _until(lambda: ep.in_flight == 0)
        assert ep.in_flight == 0
