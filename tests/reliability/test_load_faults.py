"""Big batches through the emulator with injected faults: every prompt answered correctly, exactly once."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import pytest

import azml_client as az
from azml_client.testing import Fault, MockEndpoint, echo_text

from .probes import KEY, acquired_connections, other_tasks

# Short waits, and enough retries that 10% faults never exhaust them (P(9 faults in a row) = 1e-9).
PATIENT = az.RetryPolicy(max_retries=8, initial_delay=0.001, max_delay=0.02)
TRANSIENT = ("429", "503", "drop", "truncate")


class RetryCounter(logging.Handler):
    """Counts the client's "retrying ..." and "throttled ..." (a 429 sent back in line) debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.throttled = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("retrying"):
            self.retries += 1
        elif record.msg.startswith("throttled"):
            self.throttled += 1


def prompt_of(request_json: Any) -> str:
    return str(request_json["inputs"]["input_string"][0])


@pytest.fixture
def retry_counter() -> Any:
    logger = logging.getLogger("azml_client")
    counter = RetryCounter()
    old_level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)


@pytest.mark.slow
async def test_10k_prompts_with_10_percent_transient_faults(retry_counter: RetryCounter) -> None:
    prompts = [f"prompt #{i} {'é' * (i % 7)}" for i in range(10_000)]
    baseline = other_tasks()
    async with MockEndpoint(api_key=KEY, fault_rate=0.10, fault_kinds=TRANSIENT, seed=6, record_limit=None) as ep:
        async with az.LLM(ep.url, KEY, retry=PATIENT) as llm:
            started = time.monotonic()
            answers = await llm.abatch(prompts, max_concurrency=64)
            elapsed = time.monotonic() - started
            assert acquired_connections(llm.client) == 0

        assert answers == [echo_text(p) for p in prompts]
        # None twice: every prompt got exactly one answer that was not a fault...
        answered = collections.Counter(prompt_of(r.json) for r in ep.requests if r.fault is None)
        assert len(answered) == 10_000
        assert set(answered.values()) == {1}
        # ... and the faults were the only extra requests: each cost exactly one retry.
        kinds = collections.Counter(
            r.fault.kind if r.fault.kind != "status" else r.fault.status_code for r in ep.requests if r.fault
        )
        assert ep.fault_count == sum(kinds.values())
        assert 800 <= ep.fault_count <= 1300
        assert ep.request_count == 10_000 + ep.fault_count
        # Inside a batch a 429 goes back in line (on_throttle="wait") rather than using up a retry.
        assert retry_counter.throttled == kinds[429]
        assert retry_counter.retries + retry_counter.throttled == ep.fault_count
        assert set(kinds) == {429, 503, "drop", "truncate"}
    assert not (other_tasks() - baseline)
    print(
        f"\n10k batch: {elapsed:.2f} s ({10_000 / elapsed:.0f} prompts/s), {ep.fault_count} faults "
        f"{dict(kinds)}, {retry_counter.retries} retries, {retry_counter.throttled} throttled"
    )


async def test_permanent_faults_end_as_typed_errors_at_their_own_index() -> None:
    # Queue a pattern of answers: a permanent fault every 37th request, transient ones in between, else normal.
    pattern: list[Fault] = []
    for n in range(1, 1500):
        if n % 37 == 0:
            pattern.append(Fault.status(400) if n % 2 else Fault.status(424))
        elif n % 11 == 0:
            pattern.append(Fault.status(503))
        elif n % 13 == 0:
            pattern.append(Fault.drop())
        else:
            pattern.append(Fault.delay(0))  # answered normally
    prompts = [f"p{i}" for i in range(1000)]
    async with MockEndpoint(api_key=KEY, record_limit=None) as ep:
        ep.enqueue(*pattern)
        async with az.LLM(ep.url, KEY, retry=PATIENT) as llm:
            results = await llm.abatch(prompts, max_concurrency=32, return_exceptions=True)
        tries: dict[str, list[Fault | None]] = collections.defaultdict(list)
        for record in ep.requests:
            tries[prompt_of(record.json)].append(record.fault)
    permanent = {
        prompt: faults[-1].status_code
        for prompt, faults in tries.items()
        if faults[-1] is not None and faults[-1].status_code in (400, 424)
    }
    assert len(permanent) >= 20
    for index, prompt in enumerate(prompts):
        result = results[index]
        if prompt in permanent:
            expected = az.BadRequestError if permanent[prompt] == 400 else az.ModelError
            assert type(result) is expected, (index, result)
            assert result.status_code == permanent[prompt]
            assert result.attempts == len(tries[prompt])  # transient faults before it retried, it not
            assert result.request_id
        else:
            assert result == echo_text(prompt), (index, result)
            answered = [fault is None or fault.kind == "delay" for fault in tries[prompt]]
            assert answered == [False] * (len(answered) - 1) + [True]  # answered once, after its transient faults
