"""Push-back semantics against small hostile servers: capacity 429s, quota windows, 503 storms, pacing, RateLimit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

import azml_client as az
from tests.servers import serving

ANSWER = orjson.dumps([{"0": "ok"}])


class Endpoint:
    """A dedicated-style endpoint with a fixed capacity (429 beyond it) or a quota window, counting what it saw."""

    def __init__(
        self,
        *,
        capacity: int | None = None,
        latency: float = 0.02,
        window: float | None = None,
        per_window: int = 0,
        status_when_full: int = 429,
        retry_after_ms: float | None = None,
        quota_headers: bool = True,
    ) -> None:
        self.capacity = capacity
        self.latency = latency
        self.window = window
        self.per_window = per_window
        self.status_when_full = status_when_full
        self.retry_after_ms = retry_after_ms
        self.quota_headers = quota_headers
        self.in_flight = self.max_in_flight = 0
        self.answered = self.refused = 0
        self.sends: list[float] = []
        self._window_start = 0.0
        self._window_count = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        self.sends.append(now)
        headers: dict[str, str] = {}
        if self.window is not None:
            if now - self._window_start >= self.window:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            remaining = self.per_window - self._window_count
            if self.quota_headers:
                headers["x-ratelimit-remaining-requests"] = str(max(remaining, 0))
            if remaining < 0:
                self.refused += 1
                if self.quota_headers:
                    wait_ms = (self._window_start + self.window - now) * 1000
                    headers["retry-after-ms"] = f"{wait_ms:.0f}"
                return web.json_response({"error": {"code": "429", "message": "quota"}}, status=429, headers=headers)
        if self.capacity is not None and self.in_flight >= self.capacity:
            self.refused += 1
            if self.retry_after_ms is not None:
                headers["retry-after-ms"] = str(self.retry_after_ms)
            body = {"error": {"message": "Too many pending requests"}}
            return web.json_response(body, status=self.status_when_full, headers=headers)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        self.answered += 1
        return web.Response(body=ANSWER, content_type="application/json", headers=headers)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Endpoint], Any]]:
    async with contextlib.AsyncExitStack() as servers:

        async def start(endpoint: Endpoint) -> str:
            return f"{await servers.enter_async_context(serving(endpoint.handle, '/score'))}/score"

        yield start


def _events() -> tuple[list[az.Attempt], Callable[[az.Attempt], None]]:
    events: list[az.Attempt] = []
    return events, events.append


async def test_a_batch_against_a_narrow_endpoint_loses_nothing_and_uses_no_retries(serve: Any) -> None:
    endpoint = Endpoint(capacity=4, latency=0.02)
    url = await serve(endpoint)
    events, hook = _events()
    # No retries at all: inside a batch a 429 waits its turn, it never uses one up.
    async with az.LLM(url, retry=az.RetryPolicy.none(), on_attempt=hook) as llm:
        texts = await llm.abatch([f"p{i}" for i in range(200)], max_concurrency=32)
        limit = llm.client.stats().limit
    assert texts == ["ok"] * 200
    assert endpoint.answered == 200
    throttled = [event for event in events if event.kind == "throttled"]
    assert len(throttled) == endpoint.refused
    assert endpoint.refused < 200 * 0.25  # the limit came down fast: refusals are a fraction of the sends
    assert limit < 32  # it learned the endpoint is narrower than the batch
    assert all(event.delay is not None and event.delay > 0 for event in throttled)


async def test_a_single_call_raises_on_429_by_default_counting_it_as_a_retry(serve: Any) -> None:
    endpoint = Endpoint(capacity=0, retry_after_ms=10)
    url = await serve(endpoint)
    async with az.LLM(url, retry=az.RetryPolicy(max_retries=2)) as llm:
        with pytest.raises(az.RateLimitError) as caught:
            await llm.ainvoke("x")
    assert caught.value.attempts == 3
    assert endpoint.refused == 3


async def test_on_throttle_wait_on_the_client_makes_single_calls_wait(serve: Any) -> None:
    endpoint = Endpoint(capacity=1, latency=0.05, retry_after_ms=20)
    url = await serve(endpoint)
    async with az.LLM(url, retry=az.RetryPolicy.none(), on_throttle="wait", adaptive_concurrency=False) as llm:
        texts = await asyncio.gather(*(llm.ainvoke(f"p{i}") for i in range(6)))
    assert texts == ["ok"] * 6
    assert endpoint.refused > 0  # they were refused, and waited instead of failing


async def test_a_retry_after_beyond_max_retry_after_fails_at_once_even_when_waiting(serve: Any) -> None:
    endpoint = Endpoint(capacity=0, retry_after_ms=500_000)
    url = await serve(endpoint)
    async with az.LLM(url, retry=az.RetryPolicy(max_retry_after=60)) as llm:
        results = await llm.abatch(["a"], return_exceptions=True)
    assert isinstance(results[0], az.RateLimitError)
    assert results[0].retry_after == 500
    assert endpoint.refused == 1


async def test_a_503_storm_ends_as_server_error_after_the_retries_even_in_a_batch(serve: Any) -> None:
    endpoint = Endpoint(capacity=0, status_when_full=503)
    url = await serve(endpoint)
    retry = az.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.002)
    async with az.LLM(url, retry=retry) as llm:
        results = await llm.abatch([f"p{i}" for i in range(10)], return_exceptions=True)
        limit = llm.client.stats().limit
    assert all(isinstance(result, az.ServerError) for result in results)
    assert all(result.attempts == 3 for result in results if isinstance(result, az.ServerError))
    assert endpoint.refused == 30
    assert limit < 32  # 503s shrink the limit too


async def test_a_quota_429_holds_every_send_until_the_window_reopens(serve: Any) -> None:
    endpoint = Endpoint(window=0.3, per_window=5, latency=0.001)
    url = await serve(endpoint)
    events, hook = _events()
    async with az.LLM(url, on_attempt=hook) as llm:
        started = time.monotonic()
        texts = await llm.abatch([f"p{i}" for i in range(20)], max_concurrency=8)
        elapsed = time.monotonic() - started
    assert texts == ["ok"] * 20
    assert endpoint.answered == 20
    assert elapsed >= 0.3 * 3 * 0.9  # 20 prompts at 5 per 0.3 s window take at least three more windows
    # The remaining-requests header at 0 says "quota": the client stops sending until the window reopens, so
    # each window sees at most its quota plus the requests that were already on their way.
    assert endpoint.refused <= 8 * 4
    assert len([event for event in events if event.kind == "throttled"]) == endpoint.refused


async def test_stated_rate_limit_paces_sends_without_a_single_429(serve: Any) -> None:
    endpoint = Endpoint(window=0.5, per_window=5, latency=0.001)  # 600 per minute, enforced per 0.5 s
    url = await serve(endpoint)
    async with az.LLM(url, rate_limit=az.RateLimit(requests_per_minute=480)) as llm:  # evenly spaced, 8 per second
        started = time.monotonic()
        texts = await llm.abatch([f"p{i}" for i in range(20)])
        elapsed = time.monotonic() - started
    assert texts == ["ok"] * 20
    assert endpoint.refused == 0
    assert elapsed >= 19 / 8 * 0.9


async def test_token_quota_weighs_requests_by_their_estimate(serve: Any) -> None:
    endpoint = Endpoint(latency=0.001)
    url = await serve(endpoint)
    # 6,000 tokens per minute = 100 per second; each request is estimated at 1 (4 characters) + 49 max tokens.
    rate = az.RateLimit(tokens_per_minute=6000)
    async with az.LLM(url, rate_limit=rate, model_kwargs={"max_new_tokens": 49}) as llm:
        assert llm.client.counts_tokens
        started = time.monotonic()
        await llm.abatch(["abcd"] * 6)
        elapsed = time.monotonic() - started
    # 300 tokens at 100 per second, the first request free: at least 2.5 s.
    assert elapsed >= 2.5 * 0.9


async def test_the_timeout_of_a_batched_prompt_runs_from_its_first_send(serve: Any) -> None:
    endpoint = Endpoint(capacity=2, latency=0.1)
    url = await serve(endpoint)
    # 12 prompts through 2 slots take 0.6 s; each prompt's own total timeout is 0.35 s. In a batch, the wait for a
    # slot is not part of it.
    async with az.LLM(url, timeout=0.35, max_concurrency=2, adaptive_concurrency=False) as llm:
        texts = await llm.abatch([f"p{i}" for i in range(12)])
        assert texts == ["ok"] * 12
        # Single calls ("raise") count the wait in the client's line: some end as APITimeoutError.
        results = await asyncio.gather(*(llm.ainvoke(f"s{i}") for i in range(12)), return_exceptions=True)
    timeouts = [result for result in results if isinstance(result, az.APITimeoutError)]
    assert any("concurrency limit" in str(error) for error in timeouts)
    assert all(result == "ok" or isinstance(result, az.APITimeoutError) for result in results)


async def test_the_limit_falls_below_one_and_paces_when_one_at_a_time_is_too_many(serve: Any) -> None:
    endpoint = Endpoint(capacity=1, latency=0.03)
    url = await serve(endpoint)
    # Two clients (two "workers") share a 1-wide endpoint: each learns to send less than one at a time.
    async with az.LLM(url) as first, az.LLM(url) as second:
        one = asyncio.ensure_future(first.abatch([f"a{i}" for i in range(30)]))
        other = asyncio.ensure_future(second.abatch([f"b{i}" for i in range(30)]))
        limits = (first.client.stats().limit, second.client.stats().limit)
        while not (one.done() or other.done()):  # read while both share the endpoint (alone, a limit grows back)
            limits = (first.client.stats().limit, second.client.stats().limit)
            await asyncio.sleep(0.01)
        results = [await one, await other]
    assert results == [["ok"] * 30, ["ok"] * 30]
    assert endpoint.answered == 60
    assert endpoint.max_in_flight == 1
    assert min(limits) < 2
    assert max(limits) < 2  # each learned that the endpoint takes about one at a time between them
    assert endpoint.refused < 2 * 60  # bounded: the two learn to share instead of flooding


def test_rate_limit_and_on_throttle_are_checked() -> None:
    with pytest.raises(az.ConfigurationError, match="requests_per_minute"):
        az.RateLimit(requests_per_minute=0)
    with pytest.raises(az.ConfigurationError, match="on_throttle"):
        az.EndpointClient("https://x.example/score", on_throttle="later")  # type: ignore[arg-type]
    with pytest.raises(az.ConfigurationError, match="rate_limit"):
        az.EndpointClient("https://x.example/score", rate_limit={"requests_per_minute": 5})  # type: ignore[arg-type]


async def test_four_workers_against_a_two_wide_endpoint_lose_nothing() -> None:
    """Four independent clients (four workers, no coordinator) share a 2 + 2 wide managed-like endpoint."""
    from azml_client.testing import MockEndpoint

    async with MockEndpoint(capacity=2, queue=2, latency=0.02, seed=4) as ep:
        workers = [az.LLM(ep.url) for _ in range(4)]
        try:
            results = await asyncio.gather(
                *(
                    worker.abatch([f"w{n}-{i}" for i in range(40)], return_exceptions=True)
                    for n, worker in enumerate(workers)
                )
            )
        finally:
            for worker in workers:
                await worker.aclose()
    assert all(not isinstance(result, BaseException) for batch in results for result in batch)
    assert [len(batch) for batch in results] == [40, 40, 40, 40]
    assert ep.max_processing <= 2
    assert ep.throttled_count < ep.request_count  # most sends were answered, not refused


async def test_a_batch_deadline_bounds_the_whole_batch(serve: Any) -> None:
    endpoint = Endpoint(capacity=1, latency=0.1)
    url = await serve(endpoint)
    async with az.LLM(url, max_concurrency=1, adaptive_concurrency=False) as llm:
        started = time.monotonic()
        results = await llm.abatch([f"p{i}" for i in range(50)], deadline=0.55, return_exceptions=True)
        elapsed = time.monotonic() - started
        with pytest.raises(az.APITimeoutError, match="batch deadline"):
            await llm.abatch([f"q{i}" for i in range(50)], deadline=0.2)
        with pytest.raises(az.ConfigurationError, match="deadline"):
            await llm.abatch(["x"], deadline=0)
    answered = [result for result in results if result == "ok"]
    late = [result for result in results if isinstance(result, az.APITimeoutError)]
    assert 3 <= len(answered) <= 6
    assert len(answered) + len(late) == 50
    assert results[: len(answered)] == ["ok"] * len(answered)  # one slot: the first inputs were answered
    assert elapsed < 1.5


def _learn_a_quota(throttle: Any, headers: dict[str, str], backoff: float = 0.01, latency: float = 0.01) -> None:
    """Answers, then 4 refusals in a row with nothing else in flight: the throttle learns a send rate."""
    for _ in range(20):
        throttle.on_success(latency)
    for _ in range(4):
        throttle.on_throttled(headers, None, backoff)


def _spacing(throttle: Any) -> float:
    """The gap the learned rate puts between two sends made at once."""
    first = throttle.send_delay(0.0)
    return throttle.send_delay(0.0) - first


def _answer_for(throttle: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        throttle.on_success(0.01)
        time.sleep(0.02)


def test_an_inferred_quota_rate_recovers_in_seconds_and_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate learned from refusals alone (clients sharing an endpoint look like a quota) must not pace for minutes.

    Before: it grew 0.1% per answer, so a client squeezed by its neighbours crawled long after they were gone.
    """
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    _learn_a_quota(throttle, {})
    time.sleep(0.05)  # past the hold
    before = _spacing(throttle)
    assert before > 0  # a rate was learned and paces the sends
    _answer_for(throttle, 2.0)
    time.sleep(1.0 / 0.9 * before)
    after = _spacing(throttle)
    assert before / after >= 1.4, (before, after)  # ~25% a second
    monkeypatch.setattr(_throttle, "_RATE_MEMORY", 0.3)
    time.sleep(0.35)
    throttle.on_success(0.01)
    assert throttle.send_delay(0.0) == 0.0  # forgotten after a quiet spell


def test_a_stated_quota_rate_grows_slowly_and_holds_the_whole_backoff() -> None:
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    _learn_a_quota(throttle, {"x-ratelimit-remaining-requests": "0"}, backoff=0.3)
    assert throttle.send_delay(0.0) > 0.25  # the endpoint said the window is empty: everyone waits it out
    time.sleep(0.3)
    before = _spacing(throttle)
    _answer_for(throttle, 2.0)
    time.sleep(1.0 / 0.9 * before)
    after = _spacing(throttle)
    assert 1.0 <= before / after <= 1.2, (before, after)  # ~5% a second: no overshoot between two cuts


def test_an_inferred_quota_holds_the_client_one_window_at_most() -> None:
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    # A request refused many times in a row backs off 8 s; answers took 200 ms, so ten round trips are 2 s.
    _learn_a_quota(throttle, {}, backoff=8.0, latency=0.2)
    assert 0.9 <= throttle.send_delay(0.0) <= 1.0 + 0.5  # the others wait one window (plus the pace), not 8 s


def test_an_inferred_quota_holds_the_client_ten_round_trips_of_a_fast_endpoint() -> None:
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    _learn_a_quota(throttle, {}, backoff=8.0)  # its answers took 10 ms: a neighbour's answer frees a slot that soon
    assert 0.05 <= throttle.send_delay(0.0) <= 0.1 + 0.05  # ten round trips (plus the learned pace), not a second


def test_refusals_with_nothing_in_flight_are_a_quota_only_after_a_run_of_them() -> None:
    """A client squeezed by its neighbours sees a refusal or two with nothing in flight: that is not a quota."""
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    for _ in range(20):
        throttle.on_success(0.01)
    kinds = [throttle.on_throttled({}, None, 0.5)[0] for _ in range(4)]
    assert kinds == ["capacity", "capacity", "capacity", "quota"]
    throttle.on_success(0.01)  # an answer ends the run
    assert throttle.on_throttled({}, None, 0.5)[0] == "capacity"
    assert throttle.on_throttled({"x-ratelimit-remaining-requests": "0"}, None, 0.5)[0] == "quota"  # stated: at once


def test_a_client_paced_to_the_floor_takes_the_endpoint_back_within_a_few_answers() -> None:
    """Squeezed out by its neighbours, a client sinks to 1/64; once they leave, six answers bring it back to 1.

    Before, each answer added a quarter: 19 answers, sent at the slow pace, left a 2-wide endpoint idle for seconds
    after its neighbours had finished.
    """
    from azml_client._transport._adaptive import AdaptiveLimit

    limit = AdaptiveLimit(64)
    now = 0.0
    while limit.limit > 1 / 64:  # refusals with nothing of its own in flight, one round trip apart
        now += 1.0
        limit.on_pushback(now, accepted=0)
    assert limit.pace() == pytest.approx(0.5)  # 64 x 50 ms (none measured yet), but half a second at most
    answers = 0
    while limit.limit < 1.0:
        limit.on_success(0.01)
        answers += 1
    assert answers == 6
    assert limit.pace() == 0.0


async def test_one_client_on_a_quota_that_sends_no_headers_loses_nothing_and_refusals_stay_bounded(serve: Any) -> None:
    """A quota answered with bare 429s (no Retry-After, no remaining count): the client must infer it.

    Each refusal in a run doubles the hold, so a window that stays shut is not hammered ten times per second.
    """
    endpoint = Endpoint(window=0.25, per_window=10, latency=0.01, quota_headers=False)
    url = await serve(endpoint)
    async with az.LLM(url) as llm:
        results = await llm.abatch([f"p{i}" for i in range(120)])
    assert results == ["ok"] * 120  # nothing lost, no retries used up
    assert endpoint.refused < 100  # 64 measured (before the hold doubled with the run of refusals: 60)


class _Breathing(Endpoint):
    """A capacity endpoint whose width swings between 8 and 3 every 100 ms (neighbours come and go): each narrowing
    refuses a burst of requests while the endpoint still holds others of the same client."""

    def __init__(self) -> None:
        super().__init__(capacity=8, latency=0.02)
        self._started = time.monotonic()

    async def handle(self, request: web.Request) -> web.Response:
        self.capacity = 8 if int((time.monotonic() - self._started) / 0.1) % 2 == 0 else 3
        return await super().handle(request)


async def test_a_row_refused_for_capacity_again_and_again_waits_round_trips_not_a_growing_backoff(serve: Any) -> None:
    """Capacity 429s without Retry-After: each refused request waits a few round trips, however often refused.

    Before, the wait doubled with each refusal of the same request (0.5 s, 1 s, 2 s, 4 s...): the last rows of a
    batch or a Spark partition sat out seconds with nothing in flight while the endpoint had room.
    """
    endpoint = _Breathing()
    url = await serve(endpoint)
    events, hook = _events()
    async with az.LLM(url, on_attempt=hook) as llm:
        results = await llm.abatch([f"p{i}" for i in range(300)], max_concurrency=32)
    assert results == ["ok"] * 300
    first_answer = next(i for i, e in enumerate(events) if e.kind == "answered" and e.status == 200)
    # Refused with others of ours in flight (a refused request's own slot is already given back).
    settled = [e for e in events[first_answer:] if e.kind == "throttled" and (e.in_flight or 0) > 0]
    assert len(settled) >= 10
    latencies = sorted(e.elapsed for e in events if e.kind == "answered" and e.attempt == 1)
    round_trip = latencies[len(latencies) // 2]  # ~20 ms; more on a loaded machine
    # Two to four round trips, with a margin: about 0.16 s. The backoff it replaces waits 0.19-0.75 s after a
    # first refusal and doubles with each further one.
    assert max(e.delay or 0.0 for e in settled) <= 4 * 2 * round_trip


def test_a_capacity_wait_falls_back_to_the_backoff_before_any_answer_and_when_paced() -> None:
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    kind, wait = throttle.on_throttled({}, None, 2.0)
    assert kind == "capacity"
    assert 1.0 <= wait <= 3.0
    for _ in range(20):
        throttle.on_success(0.01)
    held = [throttle.try_acquire() for _ in range(4)]
    for slot in held:
        assert slot is not None
        throttle.mark_sent(slot)
    refused = held.pop()
    assert refused is not None
    refused.release()  # a refused request gives its slot back before its 429 is handled
    assert throttle.on_throttled({}, None, 2.0, refused.seq)[1] <= 0.04  # 3 of ours inside: 4 round trips at most
    for slot in held:
        assert slot is not None
        slot.release()
    assert throttle.on_throttled({}, None, 2.0)[1] >= 1.0  # refused with nothing of its own in flight: the backoff
    limit = throttle.adaptive
    assert limit is not None
    now = time.monotonic()
    while limit.limit >= 1.0:  # squeezed below one request: sends are paced, a refusal waits the backoff
        now += 1.0
        limit.on_pushback(now, accepted=0)
    assert throttle.on_throttled({}, None, 2.0)[1] >= 1.0


def _answers_to_reach(limit: Any, target: int, saturated: bool) -> int:
    answers = 0
    while limit.in_flight_cap < target and answers < 100_000:
        limit.on_success(0.05, saturated)
        answers += 1
    return answers


def test_a_probe_that_holds_speeds_up_the_next_so_a_client_left_alone_takes_the_room_back() -> None:
    """A worker that learned a ceiling of 8 beside a neighbour, once the neighbour leaves, climbs to 16 fast.

    Each level above the ceiling that holds with every slot in use doubles the pace of the next (up to one more
    per round trip); before, every level took 16 round trips: 8 levels, 128 round trips (6 s at 50 ms).
    """
    from azml_client._transport._adaptive import AdaptiveLimit

    limit = AdaptiveLimit(64, initial=16)
    limit.on_pushback(1.0, accepted=8)  # the endpoint held 8 of ours when it refused: the ceiling is 8
    assert limit.ceiling == 8.0
    assert limit.in_flight_cap == 8
    fast = _answers_to_reach(limit, 16, saturated=True)
    # Round trips of answers at each level (about 8 to 16 answers a round trip): 16 + 8 + 4 + 2 + 1 x 4 = 34.
    assert fast < 34 * 16

    idle = AdaptiveLimit(64, initial=16)
    idle.on_pushback(1.0, accepted=8)
    slow = _answers_to_reach(idle, 16, saturated=False)  # fewer requests than slots: no probe was tested
    assert slow > 3 * fast

    # A refused probe starts over at the slow pace: a client at its endpoint's width stays refused rarely.
    limit.on_pushback(2.0, accepted=16)
    assert limit.ceiling == 16.0
    again = _answers_to_reach(limit, 17, saturated=True)
    assert again >= 15 * 16  # 16 round trips of 16 answers for the first level above the new ceiling


def test_a_paced_client_sends_on_each_healthy_answer_so_it_recovers_in_round_trips_not_seconds() -> None:
    """At the slowest pace a healthy answer lets the next send go at once, and no pace passes half a second.

    Before, the doubling back to one request in flight waited each pace: 64 + 32 + ... + 2 round trips, 6.3 s on
    a 50 ms endpoint, with the endpoint idle once the neighbours that squeezed the client had left.
    """
    from azml_client._transport import _throttle

    throttle = _throttle.Throttle(64)
    for _ in range(20):
        throttle.on_success(0.05)
    limit = throttle.adaptive
    assert limit is not None
    now = time.monotonic()
    while limit.limit > 1 / 64:
        now += 1.0
        limit.on_pushback(now, accepted=0)
    first = throttle.send_delay(0.0)
    assert throttle.send_delay(0.0) - first == pytest.approx(0.5, rel=0.05)  # paced: 64 x 50 ms, capped at 0.5 s
    throttle.on_success(0.05)  # a healthy answer: the endpoint had room
    assert throttle.send_delay(0.0) == 0.0  # the next send goes now
    assert throttle.send_delay(0.0) == pytest.approx(0.5, rel=0.05)  # and the one after at the (capped) pace

    slow = _throttle.Throttle(64)
    for _ in range(20):
        slow.on_success(2.0)  # 2 s answers: eight round trips is the cap
    assert slow.adaptive is not None
    while slow.adaptive.limit > 1 / 64:
        now += 10.0
        slow.adaptive.on_pushback(now, accepted=0)
    assert slow.adaptive.pace() == pytest.approx(16.0)


def test_the_limit_probes_above_its_ceiling_only_with_every_slot_taken_and_no_rate_clock() -> None:
    """Throttle.on_success tells the limit whether the probe was tested: every slot taken, no rate spacing sends."""
    from azml_client._transport import _throttle

    def probe(throttle: Any, fill: int) -> float:
        assert throttle.adaptive is not None
        throttle.on_pushback(accepted=4)  # the ceiling: 4, and so the in-flight cap
        held = [throttle.try_acquire() for _ in range(fill)]
        for _ in range(2000):  # 2000 answers, each with `fill` slots taken
            throttle.on_success(0.05)
        for slot in held:
            if slot is not None:
                slot.release()
        return throttle.adaptive.limit

    assert probe(_throttle.Throttle(64), fill=4) > 5  # all 4 slots taken: it probes past the ceiling
    assert probe(_throttle.Throttle(64), fill=2) <= 4  # half of them: nothing was tested, it stays
    stated = _throttle.Throttle(64, az.RateLimit(requests_per_minute=600))
    assert probe(stated, fill=4) <= 4  # slots taken, but the rate's clock, not the endpoint, holds them
