"""A push-back emulator in a process of its own, for the push-back benchmarks (``benchmarks/_pushback.py``).

``python -m benchmarks._pushback_server --capacity 8 --queue 0 --latency 0.05 ...`` starts a
:class:`azml_client.testing.MockEndpoint` on a free loopback port and prints ``{"url": ...}`` as one JSON line.
Then it reads commands from stdin, one a line: ``stats`` prints the endpoint's counters as one JSON line,
``reset`` restarts them (prints ``{}``); end of input stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from benchmarks._emulator import endpoint_counts

__all__ = ["main"]


def _stats(endpoint: Any) -> dict[str, Any]:
    latencies = [record.latency for record in endpoint.requests if record.latency]
    return {
        **endpoint_counts(endpoint),
        "max_queued": endpoint.max_queued,
        "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
    }


async def _serve(args: argparse.Namespace) -> None:
    from azml_client.testing import MockEndpoint

    endpoint = MockEndpoint(
        latency=args.latency,
        latency_distribution=args.latency_distribution,
        latency_sigma=args.latency_sigma,
        seed=args.seed,
        capacity=args.capacity,
        queue=args.queue,
        capacity_retry_after=args.capacity_retry_after,
        requests_per_minute=args.rpm,
        quota_window=args.quota_window,
        record_limit=args.record_limit,
    )
    async with endpoint:
        print(json.dumps({"url": endpoint.url}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command = line.strip()
            if command == "stats":
                print(json.dumps(_stats(endpoint)), flush=True)
            elif command == "reset":
                endpoint.reset()
                print("{}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pushback_server")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-distribution", default="fixed")
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity", type=int, default=None)
    parser.add_argument("--queue", type=int, default=None)
    parser.add_argument("--capacity-retry-after", type=float, default=None)
    parser.add_argument("--rpm", type=int, default=None)
    parser.add_argument("--quota-window", type=float, default=1.0)
    parser.add_argument("--record-limit", type=int, default=20000)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
