"""What the OpenTelemetry instrumentation costs a model call when no provider is configured (paired rounds).

Run: ``.venv/bin/python -m benchmarks._otel_overhead [--rounds 15] [--calls 20000]``. Each round times
``ChatModel.ainvoke`` (the whole client-side model layer: kwargs, request body, parsing, ``CallInfo``) over a stub
transport that answers at once, so the endpoint's and the network's time are not in the number, in two modes,
alternating which goes first:

- ``importable``: opentelemetry-api installed and importable, no tracer or meter provider configured (what a user
  with the extra but without OpenTelemetry set up runs): each call asks whether a provider is configured.
- ``absent``: the import of opentelemetry failed (what a user without the extra runs): the instrumentation is
  one cached ``None``.

The difference of the two is the instrumentation's cost when unused; issue 15 allows 3 us. The result (median of
the per-round differences and their spread) is printed as Markdown for ``benchmarks/results/otel-overhead.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

import azml_client as az
from azml_client import _observability
from azml_client._transport import Response

_ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
_HEADERS = CIMultiDictProxy(CIMultiDict({"content-type": "application/json", "x-request-id": "r1"}))


def _set_mode(mode: str) -> None:
    _observability._reset_for_tests()
    if mode == "absent":
        _observability._checked = True  # what a failed `import opentelemetry` leaves behind


async def _time_calls(chat: az.ChatModel, calls: int) -> float:
    """Seconds of CPU (this thread) per call of ``chat.ainvoke``."""
    messages = [az.Message(role="user", content="hi")]
    for _ in range(200):  # warm up
        await chat.ainvoke(messages)
    start = time.thread_time()
    for _ in range(calls):
        await chat.ainvoke(messages)
    return (time.thread_time() - start) / calls


async def _main(rounds: int, calls: int) -> dict[str, Any]:
    client = az.EndpointClient("http://127.0.0.1:9/", "k", api_type="serverless", adaptive_concurrency=False)
    response = Response(status=200, headers=_HEADERS, body=_ANSWER, url="http://127.0.0.1:9/v1/chat/completions")

    async def post(body: Any, **options: Any) -> Response:
        return response

    client.post = post  # type: ignore[method-assign]  # the stub transport: only the model layer is timed
    chat = az.ChatModel(client=client)
    per_mode: dict[str, list[float]] = {"importable": [], "absent": []}
    differences: list[float] = []
    for index in range(rounds):
        order = ("importable", "absent") if index % 2 == 0 else ("absent", "importable")
        seen: dict[str, float] = {}
        for mode in order:
            _set_mode(mode)
            seen[mode] = await _time_calls(chat, calls)
            per_mode[mode].append(seen[mode])
        differences.append(seen["importable"] - seen["absent"])
    _observability._reset_for_tests()
    await client.aclose()
    return {"per_mode": per_mode, "differences": differences}


def _us(value: float) -> str:
    return f"{value * 1e6:.2f}"


def main(argv: list[str] | None = None) -> None:
    """Run the paired rounds and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    found = asyncio.run(_main(args.rounds, args.calls))
    differences = found["differences"]
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.rounds} rounds x {args.calls} calls\n")
    print("| mode | median us/call | min | max |")
    print("| --- | --- | --- | --- |")
    for mode, values in found["per_mode"].items():
        print(f"| {mode} | {_us(statistics.median(values))} | {_us(min(values))} | {_us(max(values))} |")
    low, high = min(differences), max(differences)
    print(
        f"| **difference** (importable - absent, per round) | **{_us(statistics.median(differences))}** | "
        f"{_us(low)} | {_us(high)} |"
    )
    quartiles = statistics.quantiles(differences, n=4) if len(differences) >= 2 else [differences[0]] * 3
    print(f"\ninterquartile range of the differences: {_us(quartiles[0])} .. {_us(quartiles[2])} us")


if __name__ == "__main__":
    sys.exit(main())
