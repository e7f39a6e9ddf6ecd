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
from azml_client._models._sync import runner_for
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
    # A batch has 4 rows, so more than 4 at once means two batches were in flight together (the pipeline is
    # PIPELINE_DEPTH = 2 batches deep), and the worker's cap (8) holds.
    assert 4 < peak <= 8


def test_the_workers_concurrency_cap_holds_across_the_batches_in_flight() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.02) as ep:
        config = _config(ep.url, max_batch_concurrency=3)
        out = list(_scale.score_batches(config, iter(_batches(5, 10))))
        peak = ep.max_in_flight
    assert len(_outputs(out)) == 50
    assert all(error is None for _, _, error in _outputs(out))
    assert peak <= 3


def test_closing_a_partition_early_cancels_the_calls_of_the_batches_in_flight() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.3, record_limit=None) as ep:
        config = _config(ep.url, max_batch_concurrency=64)
        batches = [*_batches(1, 20), *_batches(1, 200, start=20), *_batches(5, 20, start=220)]
        stream = _scale.score_batches(config, iter(batches))
        first = next(stream)  # the first batch answered; the 200-row second one is in flight
        stream.close()  # the engine cancels the task
        time.sleep(0.1)  # the sends already on their way when the first batch's last answers freed their slots
        at_close = ep.request_count
        time.sleep(1.0)  # three answers' time: a second batch left running would send dozens more
        after = ep.request_count
    assert first.num_rows == 20
    assert 20 < at_close < 220  # the second batch had started, and had not finished
    assert after - at_close <= 2  # its remaining calls were cancelled, not left running
    assert after < 220  # and no batch after the second was started


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
    assert 4 < peak <= 6  # more than one batch's 4 rows, and never above the cap


def test_cancelling_an_awaited_batch_cancels_its_calls_on_the_models_loop() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.5, record_limit=None) as ep:
        config = _config(ep.url, max_batch_concurrency=16)
        counts: list[int] = []

        async def main() -> None:
            task = asyncio.ensure_future(_scale.ascore_batch(config, _batches(1, 16)[0], FailFast()))
            # The client's limit starts at 8: 8 rows are sent at once and the other 8 wait for their answers.
            await asyncio.to_thread(_until, lambda: ep.request_count >= 8)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.1)  # (a send already on its way)
            counts.append(ep.request_count)

        asyncio.run(main())
        time.sleep(1.5)  # three answers' time: the batch's other rows would have been sent by now
        after = ep.request_count
    assert counts[0] < 16
    assert after - counts[0] <= 2


def test_an_awaited_batch_whose_model_closes_under_it_fails_row_by_row_or_with_a_typed_error() -> None:
    with threaded_endpoint(api_key=KEY, latency=0.5) as ep:
        config = _config(ep.url, max_batch_concurrency=16)

        async def close_under(stop: Callable[[], None]) -> Any:
            task = asyncio.ensure_future(_scale.ascore_batch(config, _batches(1, 8)[0], FailFast()))
            await asyncio.to_thread(_until, lambda: ep.request_count >= 1)
            stop()
            return await task

        # The model closed: each row's call fails with a typed error, in its row.
        out = asyncio.run(close_under(lambda: _scale.model_for(config).close()))
        assert [r["error"] for r in out.to_pylist()] == [
            "APIConnectionError: the EndpointClient was closed while this call was in flight"
        ] * 8
        # Its loop stopped under the batch (the calls cancelled with it): the batch fails with a typed error, not
        # a bare CancelledError on the caller's loop.
        model = _scale.model_for(config)
        assert not model.client.closed  # a closed model was built again
        with pytest.raises(az.APIConnectionError, match="closed while this batch was in flight"):
            asyncio.run(close_under(lambda: runner_for(model.client).stop()))


def test_a_workers_first_model_warms_pyarrow_so_its_first_output_batch_does_not_wait_for_pandas() -> None:
    """pyarrow imports pandas (about a second) on its first conversion of Python values.

    A Spark worker's first output batch did that after its last row was answered: a second with nothing in
    flight at the end of each worker's first partition. Building the worker's model starts it in the background.
    """
    import subprocess
    import sys

    pytest.importorskip("pandas")
    script = """
import sys, threading
from azml_client import _scale
config = _scale.make_config("completion", "prompt", "http://127.0.0.1:9/score", "k", None, None, None, None, {})
before = "pandas" in sys.modules
model = _scale.model_for(config)
for thread in threading.enumerate():
    if thread.name == "azml-arrow-warm-up":
        thread.join(30)
print(before, "pandas" in sys.modules)
model.close()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True"]
