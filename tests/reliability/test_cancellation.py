"""Cancelling batches and streams, and leaving streams early, leaves nothing open: connections, slots, tasks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import azml_client as az
from azml_client.testing import Fault, MockEndpoint, echo_text

from .probes import KEY, assert_quiet, eventually, other_tasks

LONG_PROMPT = " ".join(f"word{i}" for i in range(60))  # 60 stream events
TRICKLE = Fault.slow(bytes_per_second=3000)  # about 0.05 s per event: a stream that is still running


@pytest.fixture
async def slow_ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY, latency=0.5) as endpoint:
        yield endpoint


async def test_cancelling_a_running_abatch(slow_ep: MockEndpoint) -> None:
    baseline = other_tasks()
    async with az.LLM(slow_ep.url, KEY, max_concurrency=16) as llm:
        batch = asyncio.ensure_future(llm.abatch([f"p{i}" for i in range(200)]))
        await eventually(lambda: slow_ep.in_flight == 16, what="16 requests in flight")
        sent = slow_ep.request_count  # 16, or more once the adaptive limit grew from its start of 8
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        await assert_quiet(slow_ep, llm.client, baseline | {batch})
        assert slow_ep.request_count == sent  # nothing more was sent after the cancel
        assert await llm.ainvoke("after") == echo_text("after")  # the client still works


async def test_cancelling_a_consumer_of_abatch_as_completed(slow_ep: MockEndpoint) -> None:
    baseline = other_tasks()
    got: list[tuple[int, Any]] = []

    async def consume(llm: az.LLM) -> None:
        async for item in llm.abatch_as_completed((f"p{i}" for i in range(10_000)), max_concurrency=8):
            got.append(item)

    async with az.LLM(slow_ep.url, KEY) as llm:
        consumer = asyncio.ensure_future(consume(llm))
        await eventually(lambda: len(got) >= 8 and slow_ep.in_flight == 8, what="results and 8 in flight")
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await assert_quiet(slow_ep, llm.client, baseline | {consumer})
        assert all(result == echo_text(f"p{index}") for index, result in got)
        assert slow_ep.request_count < 40  # the lazy input was not drained


async def test_breaking_out_of_abatch_as_completed(slow_ep: MockEndpoint) -> None:
    baseline = other_tasks()
    async with az.LLM(slow_ep.url, KEY) as llm:
        async for index, result in llm.abatch_as_completed([f"p{i}" for i in range(100)], max_concurrency=8):
            assert result == echo_text(f"p{index}")
            break  # no aclosing(): the generator is finalised by the loop
        await assert_quiet(slow_ep, llm.client, baseline)
        async with contextlib.aclosing(llm.abatch_as_completed(["a", "b", "c"], max_concurrency=3)) as results:
            async for _ in results:
                break
        await assert_quiet(slow_ep, llm.client, baseline)


@pytest.mark.parametrize("kind", ["llm", "chat"])
async def test_cancelling_a_stream_mid_way(ep: MockEndpoint, kind: str) -> None:
    baseline = other_tasks()
    pieces: list[str] = []
    model: az.LLM | az.ChatModel
    if kind == "llm":
        model = az.LLM(ep.url, KEY, api_type="serverless", formatter="openai")
    else:
        model = az.ChatModel(ep.url, KEY, api_type="serverless")

    async def consume() -> None:
        if isinstance(model, az.LLM):
            async for piece in model.astream(LONG_PROMPT):
                pieces.append(piece)
        else:
            async for chunk in model.astream(LONG_PROMPT):
                pieces.append(chunk.content)

    async with model:
        ep.enqueue(TRICKLE)
        consumer = asyncio.ensure_future(consume())
        await eventually(lambda: len(pieces) >= 3, what="three pieces streamed")
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await assert_quiet(ep, model.client, baseline | {consumer})
        assert len(pieces) < 30


async def test_breaking_out_of_streams_early(ep: MockEndpoint) -> None:
    baseline = other_tasks()
    async with az.ChatModel(ep.url, KEY, api_type="serverless", max_concurrency=1) as chat:
        for _ in range(3):  # one slot: a stream that kept its slot would block the next one forever
            ep.enqueue(TRICKLE)
            async for chunk in chat.astream(LONG_PROMPT):
                assert chunk.role == "assistant" or chunk.content
                break
            await assert_quiet(ep, chat.client, baseline)
        llm = az.LLM(client=chat.client, formatter="openai")
        ep.enqueue(TRICKLE)
        async with contextlib.aclosing(llm.astream(LONG_PROMPT)) as stream:
            async for _ in stream:
                break
        await assert_quiet(ep, chat.client, baseline)
        result = await asyncio.wait_for(chat.ainvoke("still works"), timeout=5)
        assert result.content == echo_text("still works")
        await llm.aclose()


async def test_sync_stream_twin_left_early_releases_its_connection(ep: MockEndpoint) -> None:
    llm = az.LLM(ep.url, KEY, api_type="serverless", formatter="openai")

    def read_two() -> list[str]:
        ep.enqueue(TRICKLE)
        pieces = []
        for piece in llm.stream(LONG_PROMPT):
            pieces.append(piece)
            if len(pieces) == 2:
                break
        return pieces

    assert len(await asyncio.to_thread(read_two)) == 2
    await eventually(lambda: ep.in_flight == 0, what="the emulator has no request in flight")
    await asyncio.to_thread(llm.close)


# ---------------------------------------------------------------- KeyboardInterrupt in the caller of a sync twin

CHILD = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import azml_client as az
    from azml_client.testing import Fault, MockEndpoint, echo_text

    started = threading.Event()
    state = {}

    def serve():
        async def main():
            async with MockEndpoint(api_key="k") as ep:
                state["ep"], state["loop"] = ep, asyncio.get_running_loop()
                started.set()
                await asyncio.Event().wait()
        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    started.wait()
    ep = state["ep"]

    def wait_idle():
        deadline = time.monotonic() + 5
        while ep.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return ep.in_flight

    llm = az.LLM(ep.url, "k", timeout=60, retry=az.RetryPolicy.none())
    chat = az.ChatModel(ep.url, "k", api_type="serverless", timeout=60, retry=az.RetryPolicy.none())
    calls = {
        "invoke": lambda: llm.invoke("hang"),
        "batch": lambda: llm.batch(["hang", "a", "b"]),
        "stream": lambda: list(chat.stream(" ".join(["w"] * 500))),
    }
    for name, call in calls.items():
        ep.enqueue(Fault.slow(20) if name == "stream" else Fault.hang())
        print("ready", name, flush=True)
        begun = time.monotonic()
        try:
            call()
        except KeyboardInterrupt:
            print("interrupted", name, round(time.monotonic() - begun, 3), flush=True)
        else:
            print("not interrupted", name, flush=True)
            sys.exit(1)
        print("in-flight", name, wait_idle(), flush=True)
        assert llm.invoke("again") == echo_text("again")
        assert chat.invoke("again").content == echo_text("again")
        print("works", name, flush=True)
    llm.close()
    chat.close()
    print("done", flush=True)
    """
)


def test_sync_twins_survive_keyboard_interrupt(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    errors = tmp_path / "stderr.txt"
    lines: list[str] = []
    with (
        errors.open("w") as stderr_file,
        subprocess.Popen(
            [sys.executable, "-W", "error::ResourceWarning", str(script)],
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
        ) as child,
    ):
        assert child.stdout is not None
        try:
            for line in child.stdout:
                lines.append(line.strip())
                if line.startswith("ready"):
                    time.sleep(0.4)  # the call is blocked in the emulator by now
                    child.send_signal(signal.SIGINT)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    stderr = errors.read_text()
    assert child.returncode == 0, (lines, stderr)
    for name in ("invoke", "batch", "stream"):
        interrupted = next(line for line in lines if line.startswith(f"interrupted {name}"))
        assert float(interrupted.split()[-1]) < 2.0  # promptly
        assert f"in-flight {name} 0" in lines  # the request was cancelled, not left running
        assert f"works {name}" in lines
    assert lines[-1] == "done"
    for marker in ("Unclosed", "Task was destroyed", "Traceback", "never retrieved"):
        assert marker not in stderr, stderr
