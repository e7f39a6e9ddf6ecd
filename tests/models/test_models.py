"""LLM and ChatModel against the emulator: request bytes, concurrency, laziness, streaming, kwargs, sync twins."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

import azml_client as az
from azml_client._models import _batch as az_batch
from azml_client.testing import Fault, MockEndpoint, echo_text
from tests.scaleout_support import threaded_endpoint

KEY = "sk-model-canary-51c2"


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint


# ---------------------------------------------------------------- exact bytes on the wire, per formatter and api type

DEDICATED_COMPLETION = [
    ("gpt2", b'{"inputs":{"input_string":["Hi \\"you\\"\\n"]},"parameters":{"temperature":0.5,"stop":["END"]}}'),
    ("hf", b'{"inputs":["Hi \\"you\\"\\n"],"parameters":{"temperature":0.5,"stop":["END"]}}'),
    ("dolly", b'{"input_data":{"input_string":["Hi \\"you\\"\\n"]},"parameters":{"temperature":0.5,"stop":["END"]}}'),
    (
        "openai",
        b'{"input_data":{"input_string":["Hi \\"you\\"\\n"],"parameters":{"temperature":0.5,"stop":["END"]}}}',
    ),
]


@pytest.mark.parametrize(("name", "expected"), DEDICATED_COMPLETION)
async def test_dedicated_completion_bytes_and_answer(ep: MockEndpoint, name: str, expected: bytes) -> None:
    async with az.LLM(ep.url, KEY, formatter=name, deployment_name=name, model_kwargs={"temperature": 0.5}) as llm:
        text = await llm.ainvoke('Hi "you"\n', stop="END")
    assert text == echo_text('Hi "you"\n')
    (seen,) = ep.requests
    assert seen.body == expected
    assert seen.path == "/score"
    assert seen.headers["azureml-model-deployment"] == name


async def test_serverless_completion_bytes_and_result(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, api_type="serverless", formatter="openai") as llm:
        completion = await llm.acomplete("a b c d", max_tokens=2, n=2)
    (seen,) = ep.requests
    assert seen.path == "/v1/completions"
    assert seen.body == b'{"prompt":"a b c d","max_tokens":2,"n":2}'
    assert completion.text == "echo: a"
    assert completion.finish_reason == "length"
    assert [c.text for c in completion.choices] == ["echo: a", "echo: a (1)"]
    assert completion.usage == az.Usage(4, 5, 9)  # completion tokens summed over the n choices


async def test_dedicated_chat_bytes(ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, deployment_name="openai-chat") as chat:
        result = await chat.ainvoke([("system", "Be brief."), ("user", "Hi")], temperature=0)
    (seen,) = ep.requests
    assert seen.body == (
        b'{"input_data":{"input_string":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],'
        b'"parameters":{"temperature":0}}}'
    )
    assert result.content == "echo: Hi"


async def test_serverless_chat_bytes_choices_usage(ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless", model_kwargs={"temperature": 0.2}) as chat:
        result = await chat.ainvoke("hello there", n=3)
    (seen,) = ep.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body == b'{"messages":[{"role":"user","content":"hello there"}],"temperature":0.2,"n":3}'
    assert result.content == "echo: hello there"
    assert [c.message.content for c in result.choices] == [
        "echo: hello there",
        "echo: hello there (1)",
        "echo: hello there (2)",
    ]
    assert result.usage == az.Usage(2, 11, 13)  # completion tokens summed over the 3 choices


async def test_mistral_folds_the_system_message(ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, formatter="mistral-chat", deployment_name="mistral-chat") as chat:
        result = await chat.ainvoke([("system", "Rules."), ("user", "Go")])
        lone = await chat.ainvoke([("system", "Only a system message")])
    assert result.content == "echo: Rules.\n\nGo"
    assert lone.content == "echo: Only a system message"
    assert all(b'"system"' not in r.body for r in ep.requests)


async def test_tool_call_round_trip(ep: MockEndpoint) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    async with az.ChatModel(ep.url, KEY, api_type="serverless", model_kwargs={"tools": tools}) as chat:
        first = await chat.ainvoke("Weather in Oslo?")
        assert first.finish_reason == "tool_calls"
        (call,) = first.tool_calls
        assert (call.name, orjson.loads(call.arguments)) == ("get_weather", {"city": "x"})
        conversation = [
            az.Message("user", "Weather in Oslo?"),
            first.message,
            az.Message("tool", "sunny", tool_call_id=call.id),
        ]
        second = await chat.ainvoke(conversation)
    assert second.content == "tool result: sunny"
    sent = orjson.loads(ep.requests[-1].body)["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": call.id}


# ---------------------------------------------------------------- kwargs, stop, timeout, input checks


async def test_call_kwargs_override_for_one_call_and_nothing_is_mutated(ep: MockEndpoint) -> None:
    kwargs = {"temperature": 0.1}
    async with az.LLM(ep.url, KEY, model_kwargs=kwargs) as llm:
        await llm.ainvoke("a", temperature=0.9, stop=["x"], timeout=30)
        await llm.ainvoke("b")
        results = await llm.abatch(["c", "d"], top_p=0.5)
    bodies = [orjson.loads(r.body)["parameters"] for r in ep.requests]
    assert bodies[0] == {"temperature": 0.9, "stop": ["x"]}
    assert bodies[1] == {"temperature": 0.1}
    assert bodies[2] == bodies[3] == {"temperature": 0.1, "top_p": 0.5}
    assert kwargs == {"temperature": 0.1}
    assert dict(llm.model_kwargs) == {"temperature": 0.1}
    assert results == ["echo: c", "echo: d"]


def test_bad_construction_is_a_configuration_error() -> None:
    with pytest.raises(az.ConfigurationError, match="chat formatter"):
        az.LLM("https://x/score", "k", formatter="openai-chat")
    with pytest.raises(az.ConfigurationError, match="completion formatter"):
        az.ChatModel("https://x/score", "k", formatter="gpt2")
    with pytest.raises(az.ConfigurationError, match="serverless"):
        az.LLM("https://x/v1/completions", "k", api_type="serverless", formatter="gpt2")
    with pytest.raises(az.ConfigurationError, match="timeout is a transport setting"):
        az.LLM("https://x/score", "k", model_kwargs={"timeout": 5})
    with pytest.raises(az.ConfigurationError, match="not both"):
        az.LLM("https://x/score", client=az.EndpointClient("https://x/score", "k"))
    with pytest.raises(az.ConfigurationError, match="unknown option"):
        az.LLM("https://x/score", "k", retries=3)
    with pytest.raises(az.ConfigurationError, match="allowed roles"):
        az.Message("robot", "hi")


async def test_bad_prompts_and_messages_fail_before_sending(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY) as llm, az.ChatModel(ep.url, KEY, deployment_name="openai-chat") as chat:
        with pytest.raises(az.ConfigurationError, match="prompt must be a str"):
            await llm.ainvoke(123)  # type: ignore[arg-type]
        with pytest.raises(az.ConfigurationError, match="allowed roles"):
            await chat.ainvoke([{"role": "wizard", "content": "x"}])
        with pytest.raises(az.ConfigurationError, match="at least one message"):
            await chat.ainvoke([])
        with pytest.raises(az.ConfigurationError, match="stop must be"):
            await llm.ainvoke("x", stop=[1])  # type: ignore[list-item]
    assert ep.request_count == 0


async def test_a_body_that_does_not_fit_is_a_response_format_error(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.malformed(b'{"output": "chat shaped"}', content_type="application/json"))
    async with az.LLM(ep.url, KEY) as llm:
        with pytest.raises(az.ResponseFormatError) as info:
            await llm.ainvoke("x")
    message = str(info.value)
    assert "gpt2" in message
    assert "status=200" in message
    assert "chat shaped" in message


async def test_formatter_mismatch_surfaces_the_servers_explanation(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, formatter="gpt2", deployment_name="openai") as llm:
        with pytest.raises(az.BadRequestError, match="input_data"):
            await llm.ainvoke("x")


# ---------------------------------------------------------------- concurrency, order, failures


async def test_abatch_is_concurrent_bounded_and_ordered() -> None:
    async with MockEndpoint(latency=0.02) as endpoint:
        async with az.LLM(endpoint.url) as llm:
            prompts = [f"p{i}" for i in range(60)]
            results = await llm.abatch(prompts, max_concurrency=8)
        assert results == [echo_text(p) for p in prompts]
        assert endpoint.max_in_flight == 8


async def test_abatch_return_exceptions_places_failures_at_their_index(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, max_batch_concurrency=1, retry=az.RetryPolicy.none()) as llm:
        ep.enqueue(Fault.delay(0), Fault.status(424), Fault.delay(0))
        results = await llm.abatch(["a", "b", "c"], return_exceptions=True)
    assert results[0] == "echo: a"
    assert results[2] == "echo: c"
    assert isinstance(results[1], az.ModelError)


async def test_abatch_raises_the_first_failure_and_cancels_the_rest() -> None:
    async with MockEndpoint(latency=0.05) as endpoint:
        endpoint.enqueue(Fault.status(400))
        async with az.LLM(endpoint.url, retry=az.RetryPolicy.none()) as llm:
            with pytest.raises(az.BadRequestError):
                await llm.abatch([f"p{i}" for i in range(200)], max_concurrency=4)
        await asyncio.sleep(0.1)
        assert endpoint.request_count < 20
        assert endpoint.in_flight == 0


async def test_as_completed_consumes_a_huge_generator_lazily() -> None:
    consumed = 0

    def prompts() -> Iterator[str]:
        nonlocal consumed
        for i in range(100_000):
            consumed += 1
            yield f"p{i}"

    async with MockEndpoint() as endpoint:
        async with az.LLM(endpoint.url) as llm:
            seen: dict[int, str] = {}
            async for index, result in llm.abatch_as_completed(prompts(), max_concurrency=16):
                assert result == echo_text(f"p{index}")
                seen[index] = result  # type: ignore[assignment]
                assert consumed - len(seen) <= 16 * 2 + 1
                if len(seen) == 500:
                    break
        assert consumed < 600
        await asyncio.sleep(0.05)
        assert endpoint.in_flight == 0


async def test_as_completed_takes_async_iterables_and_yields_failures(ep: MockEndpoint) -> None:
    async def prompts() -> AsyncIterator[str]:
        for i in range(20):
            yield f"q{i}"

    ep.enqueue(Fault.status(404))
    async with az.LLM(ep.url, KEY, retry=az.RetryPolicy.none()) as llm:
        results = dict([item async for item in llm.abatch_as_completed(prompts(), max_concurrency=4)])
    assert sorted(results) == list(range(20))
    failures = [r for r in results.values() if isinstance(r, Exception)]
    assert len(failures) == 1
    assert isinstance(failures[0], az.NotFoundError)


async def test_as_completed_reraises_an_error_of_the_inputs(ep: MockEndpoint) -> None:
    def broken() -> Iterator[str]:
        yield "fine"
        raise ValueError("the input file is corrupt")

    async with az.LLM(ep.url, KEY) as llm:
        with pytest.raises(ValueError, match="corrupt"):
            async for _ in llm.abatch_as_completed(broken()):
                pass


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_as_completed_delivers_every_answer_taken_before_the_inputs_raise(asynchronous: bool) -> None:
    def sync_prompts() -> Iterator[str]:
        for i in range(5):
            yield f"p{i}"
        raise ValueError("the input file is corrupt")

    async def async_prompts() -> AsyncIterator[str]:
        for prompt in sync_prompts():
            yield prompt

    async with MockEndpoint(latency=0.2) as endpoint, az.LLM(endpoint.url) as llm:
        seen: dict[int, object] = {}
        with pytest.raises(ValueError, match="corrupt"):
            source = async_prompts() if asynchronous else sync_prompts()
            async for index, result in llm.abatch_as_completed(source, max_concurrency=8):
                seen[index] = result
        assert endpoint.request_count == 5  # all five were in flight when the inputs raised
        assert seen == {i: echo_text(f"p{i}") for i in range(5)}  # and every answer reached the consumer
        assert endpoint.in_flight == 0


async def test_chat_batch(ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        results = await chat.abatch(["one", [("user", "two")], [{"role": "user", "content": "three"}]])
    assert [r.content for r in results] == ["echo: one", "echo: two", "echo: three"]  # type: ignore[union-attr]


# ---------------------------------------------------------------- streaming


async def test_llm_stream_pieces_join_to_the_full_text(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY, api_type="serverless", formatter="openai") as llm:
        pieces = [p async for p in llm.astream("the quick brown fox")]
        whole = await llm.ainvoke("the quick brown fox")
    assert len(pieces) > 1
    assert "".join(pieces) == whole == "echo: the quick brown fox"
    assert orjson.loads(ep.requests[0].body)["stream"] is True
    assert "stream_options" not in orjson.loads(ep.requests[0].body)


async def test_chat_stream_with_usage_when_asked(ep: MockEndpoint) -> None:
    async with az.ChatModel(ep.url, KEY, api_type="serverless") as chat:
        chunks = [c async for c in chat.astream("a b c", stream_options={"include_usage": True})]
        plain = [c async for c in chat.astream("a b c")]
    assert "".join(c.content for c in chunks) == "echo: a b c"
    assert chunks[-1].usage == az.Usage(3, 4, 7)
    assert any(c.finish_reason == "stop" for c in chunks)
    assert all(c.usage is None for c in plain)
    assert orjson.loads(ep.requests[0].body)["stream_options"] == {"include_usage": True}


async def test_dedicated_stream_yields_the_whole_answer_once(ep: MockEndpoint) -> None:
    async with az.LLM(ep.url, KEY) as llm, az.ChatModel(ep.url, KEY, deployment_name="openai-chat") as chat:
        assert [p async for p in llm.astream("x y")] == ["echo: x y"]
        assert [c.content async for c in chat.astream("x y")] == ["echo: x y"]
    assert all(r.path == "/score" for r in ep.requests)


# ---------------------------------------------------------------- sync twins, lifecycle, shared clients


@pytest.fixture
def threaded_ep() -> Iterator[str]:
    """An emulator on its own thread and loop, like a remote endpoint (sync calls block the caller's loop)."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        async with MockEndpoint(api_key=KEY) as endpoint:
            box["url"] = endpoint.url
            box["loop"] = asyncio.get_running_loop()
            stop = box["stop"] = asyncio.Event()
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    ready.wait(10)
    yield str(box["url"])
    loop = box["loop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    thread.join(10)


def test_sync_twins_in_a_plain_script(threaded_ep: str) -> None:
    with az.LLM(threaded_ep, KEY) as llm:
        assert llm.invoke("a") == "echo: a"
        assert llm.complete("b").text == "echo: b"
        assert llm.batch(["c", "d"]) == ["echo: c", "echo: d"]
        assert list(llm.stream("e")) == ["echo: e"]
        assert sorted(llm.batch_as_completed(iter(["f", "g"]))) == [(0, "echo: f"), (1, "echo: g")]
    with az.ChatModel(threaded_ep, KEY, deployment_name="openai-chat") as chat:
        assert chat.invoke("h").content == "echo: h"
        assert [c.content for c in chat.stream("i")] == ["echo: i"]


async def test_sync_twins_inside_a_running_loop(threaded_ep: str) -> None:
    llm = az.LLM(threaded_ep, KEY)
    assert llm.invoke("inside") == "echo: inside"  # never asyncio.run on this loop
    assert await llm.ainvoke("and async") == "echo: and async"
    llm.close()


async def test_shared_client_stays_open(ep: MockEndpoint) -> None:
    async with az.EndpointClient(ep.url, KEY) as client:
        llm = az.LLM(client=client)
        chat = az.ChatModel(client=client, formatter="openai-chat")
        assert llm.client is chat.client is client
        async with llm:
            await llm.ainvoke("x")
        assert not client.closed
        await client.post({"inputs": {"input_string": ["still open"]}})
    assert client.closed


async def test_owned_client_is_closed(ep: MockEndpoint) -> None:
    llm = az.LLM(ep.url, KEY)
    await llm.ainvoke("x")
    await llm.aclose()
    assert llm.client.closed


def test_env_vars_build_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", "https://m.models.ai.azure.com")
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_TYPE", "serverless")
    chat = az.ChatModel()
    assert chat.client.url_for("chat") == "https://m.models.ai.azure.com/v1/chat/completions"
    assert KEY not in repr(chat)
    chat.close()


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
async def test_save_load_round_trip_without_secrets(ep: MockEndpoint, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    policy = az.RetryPolicy(max_retries=5, initial_delay=0.01)
    async with az.ChatModel(
        ep.url,
        KEY,
        api_type="serverless",
        formatter="mistral-chat",
        deployment_name="blue",
        model_kwargs={"temperature": 0.3, "max_tokens": 50},
        timeout=az.Timeout(total=20, read=5),
        retry=policy,
    ) as chat:
        chat.save(path)
    text = path.read_text()
    assert KEY not in text
    loaded = az.load(path, api_key=KEY)
    assert isinstance(loaded, az.ChatModel)
    async with loaded:
        assert loaded.formatter.name == "mistral-chat"
        assert dict(loaded.model_kwargs) == {"temperature": 0.3, "max_tokens": 50}
        assert loaded.client.timeout == az.Timeout(total=20, read=5)
        assert loaded.client.retry == policy
        assert loaded.client.deployment_name == "blue"
        assert (await loaded.ainvoke("hi")).content == "echo: hi"


async def test_load_with_overrides(ep: MockEndpoint, tmp_path: Path) -> None:
    path = tmp_path / "llm.json"
    az.LLM(ep.url, formatter="dolly", model_kwargs={"top_k": 3}).save(path)
    llm = az.load(path, api_key=KEY, deployment_name="dolly", model_kwargs={"top_k": 9})
    assert isinstance(llm, az.LLM)
    async with llm:
        assert await llm.ainvoke("x") == "echo: x"
    assert orjson.loads(ep.requests[0].body)["parameters"] == {"top_k": 9}


def test_unregistered_formatter_cannot_be_saved(tmp_path: Path) -> None:
    class Private(az.ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, object]) -> bytes:
            return prompt.encode()

        def format_response_payload(self, output: bytes) -> str:
            return output.decode()

    with (
        az.LLM("https://x/score", "k", formatter=Private()) as llm,
        pytest.raises(az.ConfigurationError, match="register"),
    ):
        llm.save(tmp_path / "x.json")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not json", "not valid"),
        (b"[1, 2]", "mapping"),
        (b'{"kind": "llm"}', "endpoint_url"),
        (b'{"kind": "llm", "endpoint_url": "https://x/score", "api_key": "leak"}', "api_key"),
        (b'{"kind": "llm", "endpoint_url": "https://x/score", "surprise": 1}', "surprise"),
        (b'{"kind": "llm", "endpoint_url": "https://x/score", "retry": {"max_retries": -1}}', "max_retries"),
    ],
)
def test_bad_configs_are_configuration_errors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(az.ConfigurationError, match=match):
        az.load(path)


def test_missing_config_file() -> None:
    with pytest.raises(az.ConfigurationError, match="cannot read config"):
        az.load("/nonexistent/cfg.json")


# ---------------------------------------------------------------- systematic failures (FailFast)


async def test_abatch_stops_on_a_systematic_failure_only_when_asked(ep: MockEndpoint) -> None:
    prompts = [f"p{i}" for i in range(5000)]
    async with az.LLM(ep.url, "wrong-key") as llm:
        with pytest.raises(az.SystematicFailureError) as caught:
            await llm.abatch(prompts, return_exceptions=True, stop_on_systematic_failure=True)
        assert caught.value.kind == "AuthenticationError (HTTP 401)"
        assert caught.value.count == 20
        assert isinstance(caught.value.__cause__, az.AuthenticationError)
        assert ep.request_count < 100  # far fewer than 5,000
        assert caught.value.sent >= ep.request_count
        assert "20 finished calls all failed the same way (AuthenticationError (HTTP 401))" in str(caught.value)
        # Off by default: every input gets its exception.
        await asyncio.sleep(0.2)  # the cancelled calls' requests settle first
        ep.reset()
        results = await llm.abatch(prompts[:50], return_exceptions=True)
        assert all(isinstance(r, az.AuthenticationError) for r in results)
        assert ep.request_count == 50


async def test_as_completed_stops_on_a_wrong_path_after_yielding_what_ran(ep: MockEndpoint) -> None:
    def prompts() -> Iterator[str]:
        yield from (f"p{i}" for i in range(5000))

    seen = 0
    async with az.LLM(ep.url.rstrip("/") + "/no-such-path", KEY) as llm:
        with pytest.raises(az.SystematicFailureError, match=r"NotFoundError \(HTTP 404\)"):
            async for _, result in llm.abatch_as_completed(prompts(), stop_on_systematic_failure=True):
                assert isinstance(result, az.NotFoundError)
                seen += 1
    assert seen == ep.request_count  # every call that was sent was yielded
    assert 20 <= seen < 100


def test_batch_stops_on_a_systematic_failure_only_when_asked() -> None:
    prompts = [f"p{i}" for i in range(5000)]
    with threaded_endpoint(api_key=KEY) as ep, az.LLM(ep.url, "wrong-key") as llm:
        with pytest.raises(az.SystematicFailureError) as caught:
            llm.batch(prompts, return_exceptions=True, stop_on_systematic_failure=True)
        assert caught.value.kind == "AuthenticationError (HTTP 401)"
        assert caught.value.count == 20
        assert isinstance(caught.value.__cause__, az.AuthenticationError)
        assert ep.request_count < 100  # far fewer than 5,000
        assert caught.value.sent >= ep.request_count
        assert "20 finished calls all failed the same way (AuthenticationError (HTTP 401))" in str(caught.value)
        # Off by default: every input gets its exception.
        time.sleep(0.2)  # the cancelled calls' requests settle first
        ep.reset()
        results = llm.batch(prompts[:50], return_exceptions=True)
        assert all(isinstance(r, az.AuthenticationError) for r in results)
        assert ep.request_count == 50


def test_batch_as_completed_stops_on_a_wrong_path_after_yielding_what_ran() -> None:
    def prompts() -> Iterator[str]:
        yield from (f"p{i}" for i in range(5000))

    seen = 0
    with threaded_endpoint(api_key=KEY) as ep:
        with (
            az.LLM(ep.url.rstrip("/") + "/no-such-path", KEY) as llm,
            pytest.raises(az.SystematicFailureError, match=r"NotFoundError \(HTTP 404\)"),
        ):
            for _, result in llm.batch_as_completed(prompts(), stop_on_systematic_failure=True):
                assert isinstance(result, az.NotFoundError)
                seen += 1
        sent = ep.request_count
    assert seen == sent  # every call that was sent was yielded
    assert 20 <= seen < 100


def test_a_sync_batch_deadline_bounds_the_whole_batch() -> None:
    with (
        threaded_endpoint(latency=0.1) as ep,
        az.LLM(ep.url, max_concurrency=1, adaptive_concurrency=False) as llm,
    ):
        started = time.monotonic()
        results = llm.batch([f"p{i}" for i in range(50)], deadline=0.55, return_exceptions=True)
        elapsed = time.monotonic() - started
        with pytest.raises(az.APITimeoutError, match="batch deadline"):
            llm.batch([f"q{i}" for i in range(50)], deadline=0.2)
        with pytest.raises(az.ConfigurationError, match="deadline"):
            llm.batch(["x"], deadline=0)
    answered = [result for result in results if isinstance(result, str)]
    late = [result for result in results if isinstance(result, az.APITimeoutError)]
    assert 3 <= len(answered) <= 6
    assert len(answered) + len(late) == 50
    assert answered == [f"echo: p{i}" for i in range(len(answered))]  # one slot: the first inputs were answered
    assert elapsed < 1.5


def test_errors_pickle_whole_for_worker_processes() -> None:
    wrong_key = az.AuthenticationError("no", status_code=401, body=b"{}", headers={"X-Request-Id": "r1"})
    stopped = az.SystematicFailureError("AuthenticationError (HTTP 401)", count=20, sent=31, error=wrong_key)
    for error in [
        wrong_key,
        stopped,
        az.ResponseFormatError("no fit", formatter="gpt2", status=200, body=b"[]", hint="h"),
        az.APITimeoutError("late", url="http://x/score", attempts=3),
        az.StreamError("boom", data="d", code="c"),
        az.ConfigurationError("bad"),
    ]:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__.keys() == error.__dict__.keys()
    copy = pickle.loads(pickle.dumps(stopped))
    assert (copy.kind, copy.count, copy.sent) == ("AuthenticationError (HTTP 401)", 20, 31)
    assert copy.error.headers["x-request-id"] == "r1"  # the last failure comes along, case-insensitive headers too
    assert isinstance(pickle.loads(pickle.dumps(az.ConfigurationError("bad"))), ValueError)


async def test_transient_faults_and_successes_never_trip_the_rule() -> None:
    async with (
        MockEndpoint(fault_rate=0.1, fault_kinds=["503", "500", "drop"], seed=3) as endpoint,
        az.LLM(endpoint.url, retry=az.RetryPolicy.none()) as llm,
    ):
        results = await llm.abatch(
            [f"p{i}" for i in range(2000)], return_exceptions=True, stop_on_systematic_failure=True
        )
    assert len(results) == 2000
    assert 100 < sum(isinstance(r, Exception) for r in results) < 300
    # Twenty 400s with the same message after a success are data, not a broken setup; twenty 401s are not.
    guard = az_batch.FailFast()
    bad_request = az.BadRequestError("bad", status_code=400, body=b'{"error": "prompt too long"}')
    assert guard.observe("fine") is None
    assert all(guard.observe(bad_request) is None for _ in range(50))
    wrong_key = az.AuthenticationError("no", status_code=401)
    assert [guard.observe(wrong_key) is None for _ in range(20)] == [True] * 19 + [False]
    fresh = az_batch.FailFast(threshold=3)
    assert [fresh.observe(bad_request) is None for _ in range(3)] == [True, True, False]
    throttled = az.RateLimitError("slow down", status_code=429)
    timeout = az.APITimeoutError("late")
    other = az_batch.FailFast(threshold=2)
    assert all(other.observe(e) is None for e in [throttled, timeout] * 20)
