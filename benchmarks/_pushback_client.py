"""One client of the push-back benchmarks, in a process of its own: one batch, one JSON line on stdout.

``python -m benchmarks._pushback_client CLIENT --url URL -n N`` sends N prompts to the emulator's serverless chat
route and reports the answers, the prompts lost (failed results), the wall-clock start and end, the client's
attempt events and, for azml-client, its adaptive limit sampled every 50 ms (``client.stats().limit``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._bodies import API_KEY

__all__ = ["CLIENTS", "main"]

#: Client name -> what it is, for the tables.
CLIENTS: dict[str, str] = {
    "azml-default": "azml `ChatModel.abatch`, defaults",
    "azml-64": "azml, `max_concurrency=64`",
    "azml-rate": "azml, `RateLimit(requests_per_minute=6000)`",
    "azml-fixed": "azml, fixed 64 (`adaptive_concurrency=False`)",
    "openai": "openai `AsyncOpenAI`, 64 in flight",
    "seed": "the seed's `abatch` (one at a time)",
}
_SAMPLE_EVERY = 0.05


def _prompts(count: int, offset: int) -> list[str]:
    return [f"Prompt {offset + index}: write one sentence about the sea." for index in range(count)]


def _good(text: object) -> bool:
    return isinstance(text, str) and text.startswith("echo:")


async def _azml(args: argparse.Namespace, prompts: list[str], out: dict[str, Any]) -> list[bool]:
    import azml_client as az

    kinds: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    answered_at: list[float] = []

    def hook(attempt: az.Attempt) -> None:
        kinds[attempt.kind] += 1
        if attempt.kind == "answered" and attempt.status is not None:
            statuses[str(attempt.status)] += 1
        if attempt.kind == "answered" and attempt.status == 200:
            answered_at.append(time.time())

    options: dict[str, Any] = {"on_attempt": hook}
    batch_concurrency: int | None = None
    if args.client == "azml-64":
        batch_concurrency = 64
    elif args.client == "azml-rate":
        options["rate_limit"] = az.RateLimit(requests_per_minute=args.rpm)
    elif args.client == "azml-fixed":
        options.update(adaptive_concurrency=False, max_concurrency=64)
        batch_concurrency = 64
    samples: list[list[float]] = []
    async with az.ChatModel(args.url, API_KEY, api_type="serverless", **options) as chat:
        client = chat.client
        started = time.perf_counter()

        async def sample() -> None:
            while True:
                samples.append([round(time.perf_counter() - started, 3), client.stats().limit])
                await asyncio.sleep(_SAMPLE_EVERY)

        sampler = asyncio.create_task(sample())
        try:
            results = await chat.abatch(prompts, max_concurrency=batch_concurrency, return_exceptions=True)
        finally:
            sampler.cancel()
        samples.append([round(time.perf_counter() - started, 3), client.stats().limit])
    out.update(
        events=dict(kinds),
        statuses=dict(statuses),
        limit_samples=samples,
        answered_at=answered_at if args.answer_times else None,
    )
    errors = Counter(type(result).__name__ for result in results if isinstance(result, BaseException))
    out["errors"] = dict(errors)
    return [not isinstance(result, BaseException) and _good(result.content) for result in results]


async def _openai(args: argparse.Namespace, prompts: list[str], out: dict[str, Any]) -> list[bool]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{args.url}/v1", api_key=API_KEY)
    semaphore = asyncio.Semaphore(64)

    async def one(prompt: str) -> bool:
        async with semaphore:
            completion = await client.chat.completions.create(
                model="bench-model", messages=[{"role": "user", "content": prompt}]
            )
            return _good(completion.choices[0].message.content)

    try:
        results = await asyncio.gather(*(one(prompt) for prompt in prompts), return_exceptions=True)
    finally:
        await client.close()
    out["errors"] = dict(Counter(type(result).__name__ for result in results if isinstance(result, BaseException)))
    return [result is True for result in results]


async def _seed(args: argparse.Namespace, prompts: list[str], out: dict[str, Any]) -> list[bool]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.chat_models.azureml_endpoint import (
            AzureMLChatOnlineEndpoint,
            CustomOpenAIChatContentFormatter,
        )

        chat = AzureMLChatOnlineEndpoint(
            endpoint_url=f"{args.url}/models/chat/completions",
            endpoint_api_type="serverless",
            endpoint_api_key=API_KEY,
            content_formatter=CustomOpenAIChatContentFormatter(),
        )
    results = await chat.abatch(prompts, config={"max_concurrency": 1}, return_exceptions=True)
    out["errors"] = dict(Counter(type(result).__name__ for result in results if isinstance(result, BaseException)))
    return [not isinstance(result, BaseException) and _good(result.content) for result in results]


_RUNNERS: dict[str, Callable[[argparse.Namespace, list[str], dict[str, Any]], Awaitable[list[bool]]]] = {
    "azml-default": _azml,
    "azml-64": _azml,
    "azml-rate": _azml,
    "azml-fixed": _azml,
    "openai": _openai,
    "seed": _seed,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Send the batch and return what was measured."""
    prompts = _prompts(args.requests, args.offset)
    out: dict[str, Any] = {"client": args.client, "prompts": args.requests}
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    start_wall = time.time()
    before = time.perf_counter()
    answers = asyncio.run(_RUNNERS[args.client](args, prompts, out))
    out["elapsed_s"] = time.perf_counter() - before
    out["start_wall"], out["end_wall"] = start_wall, time.time()
    out["ok"] = sum(answers)
    out["lost"] = args.requests - out["ok"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run one batch, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pushback_client")
    parser.add_argument("client", choices=sorted(_RUNNERS))
    parser.add_argument("--url", required=True)
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("--offset", type=int, default=0, help="the first prompt's number")
    parser.add_argument("--rpm", type=int, default=6000, help="the RateLimit stated (azml-rate)")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start at (peers)")
    parser.add_argument("--answer-times", action="store_true", help="report when each answer came")
    print(json.dumps(run(parser.parse_args(argv))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
