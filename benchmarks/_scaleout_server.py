"""The emulator of the scale-out benchmarks, in a process of its own, with its in-flight count sampled over time.

``python -m benchmarks._scaleout_server '{"capacity": 16, "queue": 0, "latency": 0.05}'`` starts a
:class:`azml_client.testing.MockEndpoint` (the JSON object holds its keyword arguments) on a free loopback port,
checking the benchmark's key, and prints ``{"url": ...}`` as one JSON line. Every 100 ms it records the requests
inside the endpoint (in flight, and of those being processed) with the running totals of requests and 429s, so
that the report can show N uncoordinated workers settling at the endpoint's width. Commands on stdin, one a line:
``stats`` prints the counters and the samples as one JSON line; end of input stops the server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks._emulator import endpoint_counts

__all__ = ["API_KEY", "SAMPLE_EVERY", "main"]

#: The key every case sends; the emulator refuses any other (401), so a case that lost its key shows up.
API_KEY = "scaleout-bench-key"
#: Seconds between two samples of the endpoint's in-flight count.
SAMPLE_EVERY = 0.1


def _stats(endpoint: Any, samples: list[list[float]]) -> dict[str, Any]:
    return {
        **endpoint_counts(endpoint),
        # [wall-clock time (s), in flight, processing, requests so far, 429s so far]
        "samples": [*samples, _sample_now(endpoint)],
    }


def _sample_now(endpoint: Any) -> list[float]:
    return [
        round(time.time(), 3),
        endpoint.in_flight,
        endpoint.processing,
        endpoint.request_count,
        endpoint.throttled_count,
    ]


async def _sample(endpoint: Any, samples: list[list[float]]) -> None:
    while True:
        samples.append(_sample_now(endpoint))
        await asyncio.sleep(SAMPLE_EVERY)


async def _serve(options: dict[str, Any]) -> None:
    from azml_client.testing import MockEndpoint

    samples: list[list[float]] = []
    async with MockEndpoint(API_KEY, record_limit=0, **options) as endpoint:
        sampler = asyncio.create_task(_sample(endpoint, samples))
        print(json.dumps({"url": endpoint.url}), flush=True)
        try:
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return
                if line.strip() == "stats":
                    print(json.dumps(_stats(endpoint, samples)), flush=True)
        finally:
            sampler.cancel()


def main(argv: list[str] | None = None) -> None:
    """Serve the endpoint described by the JSON argument until stdin closes."""
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(json.loads(args[0]) if args else {}))


if __name__ == "__main__":
    main()
