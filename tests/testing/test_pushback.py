"""The emulator's push-back: a managed endpoint's capacity and queue, lognormal latency and a serverless quota.

Every test runs the real server over loopback with a real client (plain aiohttp, or ``az.EndpointClient`` with
``RetryPolicy.none()`` so every answer is seen as it came). Timings are asserted as lower bounds and orders
only, so a loaded machine makes them slower, never wrong.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

import azml_client as az
from azml_client.cli._main import main as azml_main
from azml_client.testing import Fault, MockEndpoint, echo_text
from azml_client.testing import __main__ as testing_cli

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
SCORE_BODY = {"inputs": {"input_string": ["hi"]}}  # gpt2, the default deployment
TOO_MANY_PENDING = {"error": {"code": "TooManyRequests", "message": "Too many pending requests"}}
REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
REMAINING_TOKENS = "x-ratelimit-remaining-tokens"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        yield client


class Answer:
    """One answer as the client saw it: status, parsed body, headers, and when it was done."""

    def __init__(self, status: int, body: Any, headers: Any, done: float) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.done = done


async def send(
    session: aiohttp.ClientSession,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> Answer:
    async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
        raw = await resp.read()
        return Answer(resp.status, orjson.loads(raw), resp.headers, time.monotonic())


def chat(content: str = "hi", **options: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **options}


# --- capacity and queue ----------------------------------------------------------------------------------------


async def test_capacity_and_queue_refuse_exactly_the_overflow_on_every_route(session: aiohttp.ClientSession) -> None:
    capacity, queue, extra = 2, 2, 3
    async with MockEndpoint(capacity=capacity, queue=queue, latency=0.3) as ep:
        # Dedicated and serverless requests share the one deployment's slots.
        targets = [(ep.score_url, SCORE_BODY), (ep.url + CHAT, chat()), (ep.url + COMPLETIONS, {"prompt": "hi"})]
        answers = await asyncio.gather(
            *(send(session, *targets[i % len(targets)]) for i in range(capacity + queue + extra))
        )
        statuses = sorted(answer.status for answer in answers)
        assert statuses == [200] * (capacity + queue) + [429] * extra
        refused = [answer for answer in answers if answer.status == 429]
        served = [answer for answer in answers if answer.status == 200]
        for answer in refused:
            assert answer.body == TOO_MANY_PENDING
            assert "Retry-After" not in answer.headers  # real managed endpoints send none
            assert "retry-after-ms" not in answer.headers
        # Refused at once: every 429 came back before the first answer (which took 0.3 s to process).
        assert max(answer.done for answer in refused) < min(answer.done for answer in served)
        assert ep.throttled_count == extra
        assert ep.quota_throttled_count == 0
        assert ep.timeout_count == 0
        assert ep.max_processing == capacity
        assert ep.max_queued == queue
        assert ep.max_in_flight >= capacity + queue
        assert ep.request_count == capacity + queue + extra
        assert (ep.processing, ep.queued, ep.in_flight) == (0, 0, 0)
        # Once the endpoint is empty again, it takes requests again.
        again = await send(session, ep.url + CHAT, chat("again"))
        assert again.status == 200
        assert again.body["choices"][0]["message"]["content"] == echo_text("again")


async def test_a_queued_request_waits_for_a_slot_so_its_latency_rises(session: aiohttp.ClientSession) -> None:
    latency, waiting = 0.1, 3
    async with MockEndpoint(capacity=1, queue=waiting, latency=latency) as ep:
        begun = time.monotonic()
        answers = await asyncio.gather(
            *(send(session, ep.url + COMPLETIONS, {"prompt": "q"}, headers={"x-request-id": f"q{i}"}) for i in range(4))
        )
        assert [answer.status for answer in answers] == [200] * 4
        # One at a time: the k-th answer cannot be done before k latencies have passed.
        for k, done in enumerate(sorted(answer.done for answer in answers), start=1):
            assert done - begun >= k * latency - 0.005, (k, done - begun)
        # First come, first served: the answers are done in the order the requests arrived.
        done_at = {answer.headers["x-request-id"]: answer.done for answer in answers}
        arrived = [record.headers["x-request-id"] for record in sorted(ep.requests, key=lambda r: r.started)]
        assert sorted(done_at, key=done_at.__getitem__) == arrived
        assert ep.max_processing == 1
        assert ep.max_queued == waiting
        assert ep.throttled_count == 0


async def test_a_request_queued_longer_than_request_timeout_answers_408(session: aiohttp.ClientSession) -> None:
    timeout = 0.1
    async with MockEndpoint(capacity=1, queue=1, latency=0.4, request_timeout=timeout) as ep:
        begun = time.monotonic()
        first, second = await asyncio.gather(
            send(session, ep.score_url, SCORE_BODY), send(session, ep.url + CHAT, chat())
        )
        by_status = {first.status: first, second.status: second}
        assert sorted(by_status) == [200, 408]
        timed_out = by_status[408]
        assert timed_out.body["error"]["code"] == "RequestTimeout"
        assert "request_timeout" in timed_out.body["error"]["message"]
        # It gave up after its timeout in the queue, before the processed request was done.
        assert timed_out.done - begun >= timeout - 0.005
        assert timed_out.done < by_status[200].done
        assert ep.timeout_count == 1
        assert ep.throttled_count == 0
        # The timed-out request left the queue: the slot and the queue are free for the next ones.
        assert (ep.processing, ep.queued) == (0, 0)
        answers = await asyncio.gather(send(session, ep.url + CHAT, chat()), send(session, ep.url + CHAT, chat()))
        assert sorted(answer.status for answer in answers) == [200, 408]
        assert ep.timeout_count == 2


async def test_a_hard_cap_with_retry_after_reaches_the_client_as_a_rate_limit_error() -> None:
    async with MockEndpoint(capacity=1, queue=0, latency=0.3, capacity_retry_after=0.05) as ep:
        async with az.EndpointClient(ep.url, api_type="serverless", retry=az.RetryPolicy.none()) as client:
            results = await asyncio.gather(
                client.post(chat("one"), route="chat"), client.post(chat("two"), route="chat"), return_exceptions=True
            )
        errors = [result for result in results if isinstance(result, BaseException)]
        assert len(errors) == 1
        error = errors[0]
        assert isinstance(error, az.RateLimitError)
        assert error.status_code == 429
        assert error.retry_after == pytest.approx(0.05)
        assert error.headers["Retry-After"] == "1"  # seconds, rounded up
        assert error.headers["retry-after-ms"] == "50"
        assert orjson.loads(error.body) == TOO_MANY_PENDING
        assert error.attempts == 1
        assert ep.throttled_count == 1
        assert ep.max_processing == 1
        assert ep.max_queued == 0


async def test_faults_are_served_inside_a_slot(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(capacity=1, queue=0, latency=0.3) as ep:
        ep.enqueue(Fault.status(503))  # the first to arrive takes it, and the only slot for its latency
        answers = await asyncio.gather(send(session, ep.url + CHAT, chat()), send(session, ep.url + CHAT, chat()))
        assert sorted(answer.status for answer in answers) == [429, 503]
        assert (ep.throttled_count, ep.fault_count, ep.max_processing) == (1, 1, 1)


async def test_requests_with_a_wrong_key_take_no_slot_and_no_quota(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(api_key="k", capacity=1, queue=0, requests_per_minute=60, latency=0.3) as ep:
        good = send(session, ep.url + CHAT, chat(), headers={"Authorization": "Bearer k"})
        wrong = send(session, ep.url + CHAT, chat(), headers={"Authorization": "Bearer nope"})
        answers = await asyncio.gather(good, wrong, send(session, ep.url + CHAT, chat()))
        assert [answer.status for answer in answers] == [200, 401, 401]
        assert answers[0].headers[REMAINING_REQUESTS] == "0"
        assert REMAINING_REQUESTS not in answers[1].headers
        assert (ep.throttled_count, ep.max_processing) == (0, 1)


# --- latency ---------------------------------------------------------------------------------------------------


async def _latencies(session: aiohttp.ClientSession, ep: MockEndpoint, count: int) -> list[float]:
    """Send ``count`` requests at once; check each took at least its drawn latency; return the draws."""
    ids = [f"req-{i}" for i in range(count)]
    sent = time.monotonic()
    answers = await asyncio.gather(
        *(send(session, ep.url + COMPLETIONS, {"prompt": "x"}, headers={"x-request-id": i}) for i in ids)
    )
    assert all(answer.status == 200 for answer in answers)
    done = {answer.headers["x-request-id"]: answer.done for answer in answers}
    records = ep.requests[-count:]
    for record in records:
        assert done[record.headers["x-request-id"]] - sent >= record.latency - 0.005
    return [record.latency for record in records]


async def test_lognormal_latencies_are_repeatable_with_a_seed_and_have_the_median(
    session: aiohttp.ClientSession,
) -> None:
    median, count = 0.02, 101  # under the listen backlog (128): no connection waits for a retransmit
    runs = []
    for seed in (7, 7, 8):
        async with MockEndpoint(latency=median, latency_distribution="lognormal", seed=seed) as ep:
            runs.append(await _latencies(session, ep, count))
            ep.reset()
            # reset() restarts the draws from the seed.
            assert await _latencies(session, ep, 5) == runs[-1][:5]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    for draws in runs:
        assert 0.8 * median <= statistics.median(draws) <= 1.25 * median
        spread = statistics.quantiles(draws, n=10)
        assert spread[-1] / spread[0] > 1.5  # a distribution, not one value
        assert min(draws) > 0


async def test_lognormal_sigma_shapes_the_spread_and_faults_keep_their_own_draws(
    session: aiohttp.ClientSession,
) -> None:
    async def kinds_and_latencies(**options: Any) -> tuple[list[Any], list[float]]:
        async with MockEndpoint(seed=3, fault_rate=0.3, fault_kinds=("503",), **options) as ep:
            for _ in range(30):
                await send(session, ep.url + COMPLETIONS, {"prompt": "x"})
            return [r.fault for r in ep.requests], [r.latency for r in ep.requests]

    fixed_faults, fixed = await kinds_and_latencies(latency=0.001)
    narrow_faults, narrow = await kinds_and_latencies(
        latency=0.001, latency_distribution="lognormal", latency_sigma=0.1
    )
    wide_faults, wide = await kinds_and_latencies(latency=0.001, latency_distribution="lognormal", latency_sigma=1.0)
    assert fixed == [0.001] * 30
    assert fixed_faults == narrow_faults == wide_faults  # turning the latency model on never moves the faults
    assert any(fixed_faults)
    assert max(narrow) / min(narrow) < max(wide) / min(wide)


# --- serverless quota ------------------------------------------------------------------------------------------


async def test_the_request_quota_refuses_the_one_over_the_window_and_reopens(session: aiohttp.ClientSession) -> None:
    rpm, window = 300, 1.0
    per_window = int(rpm * window / 60)  # 5
    async with MockEndpoint(requests_per_minute=rpm, quota_window=window) as ep:
        admitted = await asyncio.gather(*(send(session, ep.url + CHAT, chat()) for _ in range(per_window)))
        assert [answer.status for answer in admitted] == [200] * per_window
        # Each 200 says what the window has left after it; no token header without a token quota.
        remaining = sorted(int(answer.headers[REMAINING_REQUESTS]) for answer in admitted)
        assert remaining == list(range(per_window))
        assert all(REMAINING_TOKENS not in answer.headers for answer in admitted)

        pause = 0.3
        await asyncio.sleep(pause)
        over = await send(session, ep.url + CHAT, chat())
        assert over.status == 429
        wait_ms = int(over.headers["retry-after-ms"])
        # The wait is until the oldest admitted request leaves the window, at least `pause` less than a window.
        first, last = ep.requests[0].started, ep.requests[-1].started
        assert last - first >= pause
        assert 0 < wait_ms <= (window - (last - first)) * 1000 + 20
        assert over.headers["Retry-After"] == str(math.ceil(wait_ms / 1000))
        assert over.headers[REMAINING_REQUESTS] == "0"
        assert over.body["error"]["code"] == "429"
        message = over.body["error"]["message"]
        assert message.startswith("Requests to the ChatCompletions_Create Operation")
        assert "exceeded call rate limit" in message
        assert f"Please retry after {over.headers['Retry-After']} second" in message
        assert (ep.throttled_count, ep.quota_throttled_count) == (1, 1)
        assert ep.timeout_count == 0

        # Still full at once; a refused request is not counted, so after the wait the window has room again.
        assert (await send(session, ep.url + CHAT, chat())).status == 429
        await asyncio.sleep(wait_ms / 1000)
        reopened = await send(session, ep.url + COMPLETIONS, {"prompt": "later"})
        assert reopened.status == 200
        assert int(reopened.headers[REMAINING_REQUESTS]) >= 0
        assert ep.quota_throttled_count == 2
        ep.reset()
        assert (await send(session, ep.url + CHAT, chat())).headers[REMAINING_REQUESTS] == str(per_window - 1)


async def test_the_token_quota_charges_the_prompt_estimate_plus_max_tokens(session: aiohttp.ClientSession) -> None:
    # 3,000 tokens a minute over 1 s windows: 50 tokens per window.
    async with MockEndpoint(tokens_per_minute=3000, quota_window=1.0) as ep:
        prompt = "word " * 8  # 40 characters: 10 tokens estimated; 8 words
        first = await send(session, ep.url + CHAT, chat(prompt, max_tokens=20))
        assert first.status == 200
        assert first.headers[REMAINING_TOKENS] == str(50 - 30)
        assert REMAINING_REQUESTS not in first.headers
        # The answer's usage counts the echo answer itself, not the estimate.
        answer_text = first.body["choices"][0]["message"]["content"]
        assert answer_text == echo_text(prompt)
        usage = first.body["usage"]
        assert usage["prompt_tokens"] == 8
        assert usage["completion_tokens"] == len(answer_text.split())

        # Without max_tokens, 16 is charged: 6 (22 characters) + 16 = 22 > the 20 left.
        question = "hi there, how are you?"
        over = await send(session, ep.url + CHAT, chat(question))
        assert over.status == 429
        assert over.headers[REMAINING_TOKENS] == "20"
        assert int(over.headers["retry-after-ms"]) > 0
        assert "exceeded token rate limit" in over.body["error"]["message"]
        # A smaller request still fits: 1 + max_tokens 3 = 4.
        small = await send(session, ep.url + COMPLETIONS, {"prompt": "hi", "max_tokens": 3})
        assert (small.status, small.headers[REMAINING_TOKENS]) == (200, "16")
        # Dedicated bodies are charged the same way: max_new_tokens in the parameters.
        score = {"input_data": {"input_string": ["abcdefgh"], "parameters": {"max_new_tokens": 5}}}
        scored = await send(session, ep.score_url, score, headers={"azureml-model-deployment": "openai"})
        assert (scored.status, scored.headers[REMAINING_TOKENS]) == (200, str(16 - 2 - 5))
        # A request over a whole window's tokens could never fit: a 400 that says so, not a 429 forever.
        huge = await send(session, ep.url + CHAT, chat(max_tokens=500))
        assert huge.status == 400
        assert "tokens_per_minute" in huge.body["error"]["message"]
        assert ep.quota_throttled_count == 1

        await asyncio.sleep(int(over.headers["retry-after-ms"]) / 1000)
        assert (await send(session, ep.url + CHAT, chat(question))).status == 200


async def test_remaining_headers_may_be_noisy_only_when_asked(session: aiohttp.ClientSession) -> None:
    async def remaining(**options: Any) -> list[str]:
        quota = {"requests_per_minute": 60_000, "tokens_per_minute": 6_000_000, "quota_window": 60.0}
        async with MockEndpoint(seed=5, **quota, **options) as ep:
            values = []
            for _ in range(60):
                answer = await send(session, ep.url + COMPLETIONS, {"prompt": "x"})
                assert answer.status == 200
                values += [answer.headers[REMAINING_REQUESTS], answer.headers[REMAINING_TOKENS]]
            return values

    quiet = await remaining()
    assert all(int(value) >= 0 for value in quiet)
    noisy = await remaining(remaining_header_noise=True)
    assert 0 < noisy.count("-1") < len(noisy) // 2
    assert noisy == await remaining(remaining_header_noise=True)  # seeded
    assert all(value in ("-1", real) for value, real in zip(noisy, quiet, strict=True))


async def test_remaining_headers_come_on_streams_and_dedicated_answers(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(requests_per_minute=600, tokens_per_minute=60_000) as ep:
        async with session.post(ep.url + CHAT, json=chat("stream me", stream=True)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers[REMAINING_REQUESTS] == "9"
            assert resp.headers[REMAINING_TOKENS] == str(1000 - 3 - 16)  # "stream me": 9 characters
            assert b"data: [DONE]" in await resp.read()
        scored = await send(session, ep.score_url, SCORE_BODY)
        assert (scored.status, scored.body) == (200, [{"0": echo_text("hi")}])
        assert scored.headers[REMAINING_REQUESTS] == "8"


async def test_closing_ends_queued_requests_cleanly(session: aiohttp.ClientSession) -> None:
    ep = MockEndpoint(capacity=1, queue=2, latency=30)
    await ep.start()
    pending = [asyncio.create_task(send(session, ep.url + CHAT, chat())) for _ in range(3)]
    for _ in range(500):
        if ep.queued == 2:
            break
        await asyncio.sleep(0.01)
    assert (ep.processing, ep.queued) == (1, 2)
    await ep.aclose()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(result, aiohttp.ClientError) for result in results)
    assert (ep.processing, ep.queued, ep.in_flight) == (0, 0, 0)


async def test_quota_and_capacity_together() -> None:
    async with MockEndpoint(requests_per_minute=120, quota_window=1.0, capacity=1, queue=0, latency=0.3) as ep:
        async with az.EndpointClient(ep.url, api_type="serverless", retry=az.RetryPolicy.none()) as client:
            results = await asyncio.gather(
                *(client.post(chat(), route="chat") for _ in range(3)), return_exceptions=True
            )
        errors = sorted(
            (str(r.status_code), r.headers.get("retry-after-ms") is not None)
            for r in results
            if isinstance(r, az.RateLimitError)
        )
        # 2 requests per window: the third is over quota; of the two admitted, one finds the only slot busy.
        assert errors == [("429", False), ("429", True)]
        assert (ep.throttled_count, ep.quota_throttled_count) == (2, 1)
        assert sum(not isinstance(r, BaseException) for r in results) == 1


# --- arguments -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 2, "queue": -1}, "queue"),
        ({"queue": 2}, "queue needs capacity"),
        ({"capacity_retry_after": 1.0}, "needs capacity"),
        ({"capacity": 1, "request_timeout": 0}, "request_timeout"),
        ({"capacity": 1, "request_timeout": math.inf}, "request_timeout"),
        ({"capacity": 1, "capacity_retry_after": -1}, "capacity_retry_after"),
        ({"latency_distribution": "normal"}, "latency_distribution"),
        ({"latency_distribution": "lognormal"}, "latency"),
        ({"latency": 0.1, "latency_distribution": "lognormal", "latency_sigma": -0.1}, "latency_sigma"),
        ({"latency": math.nan}, "latency"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"requests_per_minute": 30}, "less than one request per window"),
        ({"tokens_per_minute": 100, "quota_window": 0.1}, "less than one token per window"),
        ({"requests_per_minute": 60, "quota_window": 0}, "quota_window"),
        ({"remaining_header_noise": True}, "needs a quota"),
    ],
)
def test_bad_pushback_arguments_are_value_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MockEndpoint(**options)


def test_the_defaults_push_back_nowhere() -> None:
    ep = MockEndpoint()
    assert ep.pushback_summary is None
    assert (ep.throttled_count, ep.quota_throttled_count, ep.timeout_count, ep.max_processing, ep.queued) == (
        0,
        0,
        0,
        0,
        0,
    )
    summary = MockEndpoint(capacity=2, requests_per_minute=600).pushback_summary
    assert summary is not None
    assert "2 processed at once + 2 queued" in summary
    assert "10 requests per 1 s sliding window" in summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capacity", "0"], "--capacity: expected an integer >= 1"),
        (["--capacity", "2", "--queue", "-1"], "--queue: expected an integer >= 0"),
        (["--request-timeout", "0"], "--request-timeout: expected a positive number of seconds"),
        (["--latency-distribution", "normal"], "--latency-distribution"),
        (["--latency-distribution", "lognormal"], "--latency"),
        (["--rpm", "many"], "--rpm: expected an integer >= 1"),
        (["--tpm", "30", "--quota-window", "1"], "--tpm"),
        (["--quota-window", "-1"], "--quota-window"),
        (["--queue", "3"], "--capacity"),
        (["--remaining-header-noise"], "quota"),
        (["--fault-rate", "2"], "--fault-rate: expected a number between 0 and 1"),
        (["--fault-kinds", "teapot"], "unknown fault kind 'teapot'"),
    ],
)
@pytest.mark.parametrize("command", ["azml mock-server", "python -m azml_client.testing"])
def test_bad_pushback_flags_exit_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], command: str, args: list[str], message: str
) -> None:
    argv = ["--port", "0", *args]
    try:
        status = azml_main(["mock-server", *argv]) if command.startswith("azml") else testing_cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err


def _flags(capsys: pytest.CaptureFixture[str], main: Any, argv: list[str]) -> set[str]:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return {word.rstrip(",") for word in capsys.readouterr().out.split() if word.startswith("--")}


def test_both_command_lines_take_the_same_pushback_flags(capsys: pytest.CaptureFixture[str]) -> None:
    pushback = {
        "--capacity",
        "--queue",
        "--request-timeout",
        "--capacity-retry-after",
        "--latency-distribution",
        "--latency-sigma",
        "--rpm",
        "--tpm",
        "--quota-window",
        "--remaining-header-noise",
    }
    assert pushback <= _flags(capsys, testing_cli.main, [])
    assert pushback <= _flags(capsys, azml_main, ["mock-server"])


def test_both_command_lines_pass_the_same_options_from_one_flag_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    import azml_client.testing

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(testing_cli, "run_mock_server", lambda **options: calls.append(options))
    monkeypatch.setattr(azml_client.testing, "run_mock_server", lambda **options: calls.append(options))
    monkeypatch.setenv("EMU_KEY", "k-123")
    argv = [
        *("--host", "127.0.0.2", "--port", "0", "--latency", "0.2", "--fault-rate", "0.1"),
        *("--fault-kinds", "503, drop", "--seed", "5", "--deployment", "auto"),
        *("--latency-distribution", "lognormal", "--latency-sigma", "0.3", "--capacity", "4", "--queue", "2"),
        *("--request-timeout", "2", "--capacity-retry-after", "1", "--rpm", "600", "--tpm", "9000"),
        *("--quota-window", "0.5", "--remaining-header-noise", "--api-key-env", "EMU_KEY"),
    ]
    assert testing_cli.main(argv) == 0
    assert azml_main(["mock-server", *argv]) == 0
    module, cli = calls
    assert module == cli
    assert module == {
        "host": "127.0.0.2",
        "port": 0,
        "api_key": "k-123",
        "latency": 0.2,
        "fault_rate": 0.1,
        "fault_kinds": ("503", "drop"),
        "seed": 5,
        "default_deployment": "auto",
        "latency_distribution": "lognormal",
        "latency_sigma": 0.3,
        "capacity": 4,
        "queue": 2,
        "request_timeout": 2.0,
        "capacity_retry_after": 1.0,
        "requests_per_minute": 600,
        "tokens_per_minute": 9000,
        "quota_window": 0.5,
        "remaining_header_noise": True,
    }
    MockEndpoint(**{k: v for k, v in module.items() if k not in ("host", "port")})  # and the emulator takes them


async def test_the_command_line_serves_capacity_and_quota(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "azml_client.testing",
        "--port",
        "0",
        "--capacity",
        "1",
        "--queue",
        "0",
        "--latency",
        "0.3",
        "--rpm",
        "600",
        "--quota-window",
        "0.5",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        url = first.split()[-1]
        banner = b""
        while b"push-back" not in banner:
            banner += await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"1 processed at once + 0 queued" in banner
        assert b"quota 5 requests per 0.5 s sliding window" in banner
        answers = await asyncio.gather(send(session, url + CHAT, chat()), send(session, url + CHAT, chat()))
        assert sorted(answer.status for answer in answers) == [200, 429]
        assert all(REMAINING_REQUESTS in answer.headers for answer in answers)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
