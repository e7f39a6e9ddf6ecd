"""Soak: 100,000 requests through one client with 1% faults; memory, file descriptors and tasks stay flat."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import azml_client as az
from azml_client.testing import MockEndpoint, echo_text

from .probes import (
    KEY,
    acquired_connections,
    open_fds,
    other_tasks,
    pooled_connections,
    rss_bytes,
    server_connections,
)

TOTAL = 100_000
WARM_UP = 10_000
SAMPLE_EVERY = 10_000
CONCURRENCY = 64
MIB = 1024 * 1024


def prompts() -> Iterator[str]:
    for i in range(TOTAL):
        yield f"soak {i}"


@pytest.mark.slow
async def test_soak_100k_requests_with_1_percent_faults() -> None:
    baseline_tasks = other_tasks()
    fds_before = open_fds()
    rss_before = rss_bytes()
    policy = az.RetryPolicy(max_retries=6, initial_delay=0.001, max_delay=0.01)
    samples: list[tuple[int, int, int, int]] = []  # (done, rss, fds, fds beyond the live connections)
    async with MockEndpoint(api_key=KEY, fault_rate=0.01, seed=60, record_limit=0) as ep:
        async with az.LLM(ep.url, KEY, retry=policy) as llm:
            started = time.monotonic()
            done = 0
            async for index, result in llm.abatch_as_completed(prompts(), max_concurrency=CONCURRENCY):
                assert result == echo_text(f"soak {index}"), (index, result)
                done += 1
                if done % SAMPLE_EVERY == 0:
                    fds = open_fds()
                    stats = llm.client.stats()
                    live = stats.pooled_connections + stats.connections_in_use + server_connections()
                    samples.append((done, rss_bytes(), fds, fds - live))
            elapsed = time.monotonic() - started
            assert done == TOTAL
            assert acquired_connections(llm.client) == 0
            assert pooled_connections(llm.client) <= CONCURRENCY
            assert server_connections() == pooled_connections(llm.client)  # no half-open connection left
        assert ep.request_count == TOTAL + ep.fault_count  # nothing sent twice
        assert 600 <= ep.fault_count <= 1400
    fds_after = open_fds()
    rss_after = rss_bytes()

    warm = [sample for sample in samples if sample[0] >= WARM_UP]
    rss_values = [rss for _, rss, _, _ in warm]
    fd_values = [fds for _, _, fds, _ in warm]
    beyond = [extra for _, _, _, extra in warm]
    report = ", ".join(
        f"{done // 1000}k: {rss / MIB:.1f} MiB/{fds} fds ({extra} beyond the connections)"
        for done, rss, fds, extra in samples
    )
    print(
        f"\nsoak: {TOTAL} requests in {elapsed:.1f} s ({TOTAL / elapsed:.0f} req/s), {ep.fault_count} faults; "
        f"RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB, fds {fds_before} -> {fds_after}; {report}"
    )
    # Flat after warm-up: no growth with the number of requests (allocator noise only).
    assert max(rss_values) - rss_values[0] < 4 * MIB, report
    # The pool follows the adaptive concurrency limit up and down (tens of sockets, client and server ends); what
    # must not happen is a climb of the descriptors that are not a live connection.
    third = max(1, len(beyond) // 3)
    assert sum(beyond[-third:]) / third <= sum(beyond[:third]) / third + 8, report
    assert max(fd_values) <= fds_before + CONCURRENCY * 2 + 8, report  # client + server ends of the pool
    # Once the client and the emulator are closed, every socket and task is gone.
    assert fds_after <= fds_before
    assert not (other_tasks() - baseline_tasks)
    assert server_connections() == 0
