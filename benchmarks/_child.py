"""What runs in each child process: one measurement, printed as one JSON line on stdout.

``python -m benchmarks._child run CASE --url URL -n N -c C`` times one client;
``memory`` runs ``abatch_as_completed`` over a generator of N prompts and reports the peak RSS;
``sse`` times the SSE decoder. CPU time and peak RSS come from ``resource.getrusage`` of this process.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Iterator

from benchmarks._bodies import prompts
from benchmarks._cases import case_named

__all__ = ["main"]


def _cpu_seconds() -> tuple[float, float]:
    """User and system CPU time of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _run(args: argparse.Namespace) -> dict[str, object]:
    case = case_named(args.case)()
    started = time.perf_counter()
    case.setup(args.url, args.concurrency)
    setup_s = time.perf_counter() - started
    try:
        if args.warmup:
            case.run(prompts(args.warmup))
        items = prompts(args.requests)
        gc.collect()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        user_before, system_before = _cpu_seconds()
        before = time.perf_counter()
        ok = case.run(items)
        elapsed = time.perf_counter() - before
        user_after, system_after = _cpu_seconds()
        user, system = user_after - user_before, system_after - system_before
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    finally:
        case.close()
    return {
        "case": case.name,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "ok": ok,
        "elapsed_s": elapsed,
        "req_per_s": args.requests / elapsed,
        "cpu_s": user + system,
        "cpu_us_per_req": (user + system) / args.requests * 1e6,
        "user_us_per_req": user / args.requests * 1e6,
        "system_us_per_req": system / args.requests * 1e6,
        "peak_rss_mb": _peak_rss_mb(),
        "setup_s": setup_s,
    }


def _memory(args: argparse.Namespace) -> dict[str, object]:
    import asyncio

    import azml_client as az
    from benchmarks._bodies import API_KEY, SCORE_TEXT

    def lazily(count: int) -> Iterator[str]:
        for index in range(count):
            yield f"Prompt {index}: write one sentence about the sea."

    async def main() -> dict[str, object]:
        async with az.LLM(f"{args.url}/score", API_KEY, formatter="gpt2") as llm:
            ok = 0
            rss_early: float | None = None
            before = time.perf_counter()
            done = 0
            async for _, result in llm.abatch_as_completed(lazily(args.requests), max_concurrency=args.concurrency):
                ok += result == SCORE_TEXT
                done += 1
                if done == 2000:
                    rss_early = _current_rss_mb()
            elapsed = time.perf_counter() - before
        return {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "ok": ok,
            "elapsed_s": elapsed,
            "req_per_s": args.requests / elapsed,
            "rss_after_2000_mb": rss_early,
            "rss_end_mb": _current_rss_mb(),
            "peak_rss_mb": _peak_rss_mb(),
        }

    return asyncio.run(main())


def _sse_stream(events: int) -> tuple[bytes, list[bytes]]:
    """A serverless chat stream of ``events`` chunks, whole and one event per chunk."""
    parts = []
    for index in range(events):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {"content": f"word{index % 97} "}, "finish_reason": None}],
        }
        parts.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts), parts


def _sse(args: argparse.Namespace) -> dict[str, object]:
    from azml_client._transport import SSEDecoder

    body, parts = _sse_stream(args.events)
    block = 64 * 1024
    blocks = [body[i : i + block] for i in range(0, len(body), block)]

    def decode(chunks: list[bytes]) -> float:
        decoder = SSEDecoder()
        count = 0
        start = time.perf_counter()
        for chunk in chunks:
            count += len(decoder.feed(chunk))
        count += len(decoder.flush())
        took = time.perf_counter() - start
        assert count == args.events + 1, count
        return took

    best_blocks = min(decode(blocks) for _ in range(args.repeats))
    best_events = min(decode(parts) for _ in range(args.repeats))
    return {
        "events": args.events + 1,
        "bytes": len(body),
        "mb_per_s_64k_chunks": len(body) / best_blocks / 1e6,
        "mb_per_s_event_chunks": len(body) / best_events / 1e6,
        "us_per_chunk": best_events / len(parts) * 1e6,
        "events_per_s": len(parts) / best_events,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the child's command line, measure, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run")
    run.add_argument("case")
    run.add_argument("--url", required=True)
    run.add_argument("-n", "--requests", type=int, default=2000)
    run.add_argument("-c", "--concurrency", type=int, default=64)
    run.add_argument("--warmup", type=int, default=128)
    run.add_argument("--profile", default=None, help="write cProfile stats of the timed run to this path")
    memory = sub.add_parser("memory")
    memory.add_argument("--url", required=True)
    memory.add_argument("-n", "--requests", type=int, default=20000)
    memory.add_argument("-c", "--concurrency", type=int, default=64)
    sse = sub.add_parser("sse")
    sse.add_argument("--events", type=int, default=20000)
    sse.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = {"run": _run, "memory": _memory, "sse": _sse}[args.mode](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
