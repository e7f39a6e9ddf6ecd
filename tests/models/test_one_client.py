"""One client is one pool: a shared in-flight cap, one session per loop, one sync runner; results carry their call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import azml_client as az
from azml_client.testing import Fault, MockEndpoint

KEY = "one-client-key"


class ThreadedEndpoint:
    """A MockEndpoint on its own thread and loop, so that several threads and loops can call it at once."""

    def __init__(self, **options: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.endpoint = MockEndpoint(api_key=KEY, **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.endpoint.start(), self.loop).result(10)

    def reset(self) -> None:
        async def reset() -> None:
            self.endpoint.reset()

        asyncio.run_coroutine_threadsafe(reset(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def remote() -> Iterator[ThreadedEndpoint]:
    server = ThreadedEndpoint(latency=0.02)
    try:
        yield server
    finally:
        server.stop()


def test_max_concurrency_holds_across_models_loops_and_threads(remote: ThreadedEndpoint) -> None:
    """LLM + ChatModel, sync twins + async calls, and two threads each running asyncio.run: one cap of 3."""
    client = az.EndpointClient(remote.endpoint.url + "/v1", KEY, api_type="serverless", max_concurrency=3)
    llm = az.LLM(client=client)
    chat = az.ChatModel(client=client, formatter="openai-chat")
    prompts = [f"p{i}" for i in range(24)]
    conversations = [f"c{i}" for i in range(24)]
    results: dict[str, object] = {}

    def own_loop(name: str) -> None:
        async def work() -> None:
            texts = await llm.abatch(prompts, max_concurrency=8)
            answers = await chat.abatch(conversations, max_concurrency=8)
            results[name] = (texts, [a.content for a in answers])

        asyncio.run(work())

    def sync_twins() -> None:
        results["sync"] = (llm.batch(prompts, max_concurrency=8), [a.content for a in chat.batch(conversations)])

    threads = [threading.Thread(target=own_loop, args=(f"loop{i}",)) for i in range(2)]
    threads.append(threading.Thread(target=sync_twins))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    expected = ([f"echo: p{i}" for i in range(24)], [f"echo: c{i}" for i in range(24)])
    assert results == {"loop0": expected, "loop1": expected, "sync": expected}
    assert remote.endpoint.request_count == 3 * 48
    assert remote.endpoint.max_in_flight == 3  # reached, never passed, over every model, loop and thread
    stats = client.stats()
    assert stats.in_flight == 0
    assert stats.max_concurrency == 3
    assert stats.sessions == 1  # the two asyncio.run loops are closed; the sync runner's session remains
    client.close()
    assert client.stats().sessions == 0


async def test_one_session_per_loop_and_one_sync_runner_per_client(remote: ThreadedEndpoint) -> None:
    async with az.EndpointClient(remote.endpoint.url + "/v1", KEY, api_type="serverless") as client:
        llm = az.LLM(client=client)
        chat = az.ChatModel(client=client)
        assert await llm.ainvoke("a") == "echo: a"
        assert (await chat.ainvoke("b")).content == "echo: b"
        assert client.stats().sessions == 1
        before = set(threading.enumerate())
        # Sync twins from a worker thread (a sync twin called in this loop would block it).
        text, answer = await asyncio.to_thread(lambda: (llm.invoke("c"), chat.invoke("d").content))
        assert (text, answer) == ("echo: c", "echo: d")
        assert client.stats().sessions == 2  # this loop's and the shared sync runner's
        runners = [t for t in threading.enumerate() if t.name == "azml-client-loop" and t not in before]
        assert len(runners) == 1  # one runner for both models
    # Closing the client stops its runner.
    runners[0].join(5)
    assert not runners[0].is_alive()


async def test_results_carry_their_call() -> None:
    async with MockEndpoint(api_key=KEY) as ep:
        ep.enqueue(Fault.status(503))
        async with az.LLM(ep.url, KEY, deployment_name="gpt2") as llm:
            completion = await llm.acomplete("hi")
        assert completion.call is not None
        assert completion.call.status == 200
        assert completion.call.attempts == 2
        assert completion.call.request_id
        assert completion.call.deployment == "gpt2"
        assert completion.call.elapsed > 0
        assert completion.call.headers["content-type"].startswith("application/json")

        async with az.ChatModel(ep.url + "/v1", KEY, api_type="serverless") as chat:
            result = await chat.ainvoke("hi")
            assert result.call is not None
            assert result.call.status == 200
            assert result.call.attempts == 1
            batch = await chat.abatch(["a", "b"])
            assert all(r.call is not None and r.call.status == 200 for r in batch)
            chunks = [chunk async for chunk in chat.astream("hi there")]
            assert chunks[0].call is not None
            assert chunks[0].call.status == 200
            assert chunks[0].call.headers["content-type"].startswith("text/event-stream")
            assert all(chunk.call is None for chunk in chunks[1:])
            assert "".join(c.content for c in chunks) == "echo: hi there"
        # Streams ask for text/event-stream whatever the formatter accepts for whole answers.
        assert ep.requests[-1].headers["accept"] == "text/event-stream"


async def test_serverless_llm_picks_the_serverless_completion_formatter() -> None:
    async with MockEndpoint(api_key=KEY) as ep, az.LLM(ep.url + "/v1", KEY, api_type="serverless") as llm:
        assert llm.formatter.name == "openai"
        assert await llm.ainvoke("hello") == "echo: hello"
        pieces = [piece async for piece in llm.astream("hello you")]
        assert "".join(pieces) == "echo: hello you"
        assert len(pieces) > 1
    async with MockEndpoint(api_key=KEY) as ep, az.LLM(ep.url, KEY) as llm:
        assert llm.formatter.name == "gpt2"


async def test_on_attempt_sees_every_attempt_of_a_retried_call() -> None:
    events: list[az.Attempt] = []
    async with MockEndpoint(api_key=KEY) as ep:
        ep.enqueue(Fault.status(503), Fault.drop())
        retry = az.RetryPolicy(initial_delay=0.01, jitter=0)
        async with az.LLM(ep.url, KEY, retry=retry, on_attempt=events.append) as llm:
            assert await llm.ainvoke("x") == "echo: x"
    kinds = [(e.kind, e.attempt, e.status, e.error) for e in events]
    assert kinds == [
        ("sent", 1, None, None),
        ("answered", 1, 503, None),
        ("retry", 1, 503, "ServerError"),
        ("sent", 2, None, None),
        ("failed", 2, None, "APIConnectionError"),
        ("retry", 2, None, "APIConnectionError"),
        ("sent", 3, None, None),
        ("answered", 3, 200, None),
    ]
    retries = [e for e in events if e.kind == "retry"]
    assert [e.delay for e in retries] == [0.01, 0.02]
    assert all(e.url == ep.score_url for e in events)
    assert events[-1].request_id
    assert all(0 < e.limit <= 100 for e in events)  # the adaptive limit, under max_concurrency
    assert events[0].in_flight == 1
    assert events[-1].elapsed >= events[0].elapsed


async def test_a_failing_hook_does_not_fail_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: az.Attempt) -> None:
        raise ValueError("hook bug")

    async with MockEndpoint(api_key=KEY) as ep, az.LLM(ep.url, KEY, on_attempt=broken) as llm:
        assert await llm.ainvoke("x") == "echo: x"
    assert "on_attempt hook failed" in caplog.text


async def test_408_is_a_plain_retryable_status_error_not_throttling() -> None:
    async with MockEndpoint(api_key=KEY) as ep:
        ep.enqueue(Fault.status(408), Fault.status(408))
        retry = az.RetryPolicy(max_retries=1, initial_delay=0.01)
        async with az.LLM(ep.url, KEY, retry=retry) as llm:
            with pytest.raises(az.APIStatusError) as caught:
                await llm.ainvoke("x")
    assert type(caught.value) is az.APIStatusError
    assert not isinstance(caught.value, az.RateLimitError)
    assert caught.value.status_code == 408
    assert caught.value.attempts == 2
    assert ep.request_count == 2


async def test_an_event_stream_is_read_once() -> None:
    async with MockEndpoint(api_key=KEY) as ep:
        client = az.EndpointClient(ep.url + "/v1", KEY, api_type="serverless")
        async with client:
            events = client.stream({"prompt": "a b", "stream": True}, route="completions")
            first = [event async for event in events]
            assert first
            assert first[-1].data == "[DONE]"
            with pytest.raises(az.StreamConsumedError, match="already iterated"):
                [event async for event in events]
            assert isinstance(az.StreamConsumedError("x"), RuntimeError)
            assert events.status == 200  # what the answer said stays readable after the stream ended
            assert events.attempts == 1
            assert client.stats().in_flight == 0
