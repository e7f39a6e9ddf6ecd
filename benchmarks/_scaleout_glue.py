"""The hand-written Spark glue of the scale-out benchmarks: what a user writes before reaching for a library.

It is written the way such glue usually looks in a notebook, on purpose, so that the benchmark measures that and
not a tuned client: ``mapInPandas`` over the prompts, one ``asyncio.run`` per pandas batch (a partition's rows,
since a partition here is smaller than Spark's 10,000-row Arrow batch), a fresh ``aiohttp.ClientSession`` for it,
an ``asyncio.Semaphore`` of :data:`CONCURRENCY` per partition (the endpoint's width, copied from its docs, with
no thought for the other workers running at the same time), and a simple retry loop: on 429, 503 or a broken
connection it sleeps the ``Retry-After`` header's seconds when there is one, else 1, 2, 4, ... seconds, up to
:data:`ATTEMPTS` attempts; a row that still fails gets the last error in its ``error`` column instead of failing
the job. Nothing is shared between workers, and nothing adapts to the endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["ATTEMPTS", "CONCURRENCY", "OUTPUT_SCHEMA", "score_partitions"]

#: Requests in flight per partition: the endpoint's documented width.
CONCURRENCY = 16
#: Attempts per row (the first and five retries).
ATTEMPTS = 6
#: The Spark schema of the glue's output (a DDL string, as ``mapInPandas`` takes).
OUTPUT_SCHEMA = "id long, prompt string, output string, error string"


async def _score_frame(frame: Any, url: str, key: str) -> Any:
    import asyncio

    import aiohttp

    semaphore = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}

    async def one(session: aiohttp.ClientSession, prompt: str) -> tuple[str | None, str | None]:
        async with semaphore:
            error = None
            for attempt in range(ATTEMPTS):
                try:
                    async with session.post(url, json={"prompt": prompt, "max_tokens": 16}) as response:
                        if response.status in (429, 503):
                            error = f"HTTP {response.status}"
                            retry_after = response.headers.get("Retry-After")
                            await asyncio.sleep(float(retry_after) if retry_after else 2**attempt)
                            continue
                        response.raise_for_status()
                        body = await response.json()
                        return body["choices"][0]["text"], None
                except aiohttp.ClientResponseError as exc:
                    return None, f"HTTP {exc.status}: {exc.message}"
                except aiohttp.ClientConnectionError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(2**attempt)
            return None, error

    async with aiohttp.ClientSession(headers=headers) as session:
        results = await asyncio.gather(*(one(session, prompt) for prompt in frame["prompt"]))
    out = frame[["id", "prompt"]].copy()
    out["output"] = [output for output, _ in results]
    out["error"] = [error for _, error in results]
    return out


def score_partitions(url: str, key: str) -> Any:
    """The function handed to ``df.mapInPandas(..., OUTPUT_SCHEMA)``: score each pandas batch of a partition."""

    def score(frames: Iterator[Any]) -> Iterator[Any]:
        import asyncio

        for frame in frames:
            yield asyncio.run(_score_frame(frame, url, key))

    return score
