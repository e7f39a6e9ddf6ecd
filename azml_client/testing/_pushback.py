"""How the emulator pushes back: a managed endpoint's capacity and queue, and a serverless quota, with no HTTP.

:class:`Capacity` plays a managed online deployment: ``slots`` requests are processed at once, ``queue`` more
wait in arrival order, anything beyond is refused at once, and a request that waits longer than its timeout
gives up. :class:`Quota` plays a serverless (Azure OpenAI-style) quota: requests and estimated tokens are
counted over a sliding window, and :func:`estimate_tokens` makes the estimate at arrival, as Azure does.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import attrs

from azml_client.testing._payloads import content_text

#: The answers of :meth:`Capacity.enter`.
ADMITTED: Final = "admitted"
FULL: Final = "full"
TIMED_OUT: Final = "timed out"

#: ``MockEndpoint(latency_distribution=...)`` values.
LATENCY_DISTRIBUTIONS: Final = ("fixed", "lognormal")

#: The completion budget of a request that names no ``max_tokens`` (the OpenAI completions default).
DEFAULT_MAX_TOKENS: Final = 16
#: Characters per token of the prompt estimate.
CHARS_PER_TOKEN: Final = 4

_MAX_TOKEN_KEYS: Final = ("max_tokens", "max_completion_tokens", "max_new_tokens")


class Capacity:
    """A managed deployment's concurrency: ``slots`` processed at once, ``queue`` waiting (FIFO), the rest refused.

    Used from one event loop. :meth:`enter` admits a request (at once, or after its wait in the queue),
    refuses it when ``slots + queue`` requests are already inside, or gives up after ``timeout`` seconds in
    the queue; every admitted request calls :meth:`leave` once when it is done, which hands its slot to the
    oldest waiting request.
    """

    def __init__(self, slots: int, queue: int, timeout: float) -> None:
        self.slots: Final = slots
        self.queue: Final = queue
        self.timeout: Final = timeout
        self.processing = 0
        """How many admitted requests hold a slot now."""
        self.max_waiting = 0
        """The most requests that waited at once (a caller may set it back to :attr:`waiting`)."""
        self._waiting: deque[asyncio.Future[bool]] = deque()

    @property
    def waiting(self) -> int:
        """How many requests wait in the queue now."""
        return len(self._waiting)

    async def enter(self) -> str:
        """Wait for a slot: :data:`ADMITTED` (call :meth:`leave` later), :data:`FULL` or :data:`TIMED_OUT`."""
        if self.processing < self.slots and not self._waiting:
            self.processing += 1
            return ADMITTED
        if self.processing + len(self._waiting) >= self.slots + self.queue:
            return FULL
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(granted)
        self.max_waiting = max(self.max_waiting, len(self._waiting))
        expiry = loop.call_later(self.timeout, self._expire, granted)
        try:
            admitted = await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled() and granted.result():
                self.leave()  # the slot was handed over just before the cancellation: pass it on
            elif granted in self._waiting:
                self._waiting.remove(granted)
            raise
        finally:
            expiry.cancel()
        return ADMITTED if admitted else TIMED_OUT

    def leave(self) -> None:
        """Free the caller's slot: the oldest waiting request takes it, else it stays free."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot changes hands: processing stays the same
                return
        self.processing -= 1

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            self._waiting.remove(waiter)
            waiter.set_result(False)


@attrs.frozen
class QuotaDecision:
    """What :meth:`Quota.admit` decided about one request.

    Attributes:
        admitted: whether the request fits the window (it is then counted).
        wait: when refused, the seconds until the window has room for it (``inf`` when the request alone is
            over the window's token limit); 0 when admitted.
        over: when refused, which limit it broke: ``"requests"`` or ``"tokens"``; None when admitted.
        remaining_requests: the requests the window has left (after this one, when admitted), or None.
        remaining_tokens: the tokens the window has left (after this one, when admitted), or None.
    """

    admitted: bool
    wait: float
    over: str | None
    remaining_requests: int | None
    remaining_tokens: int | None


class Quota:
    """Requests and tokens per sliding window: each admitted request counts for ``window`` seconds after it came.

    ``requests`` / ``tokens`` are the limits per window (None: no limit). A refused request is not counted.
    """

    def __init__(self, requests: int | None, tokens: int | None, window: float) -> None:
        self.requests: Final = requests
        self.tokens: Final = tokens
        self.window: Final = window
        self._admitted: deque[tuple[float, int]] = deque()
        self._used_tokens = 0

    def clear(self) -> None:
        """Forget every counted request: the window is empty again."""
        self._admitted.clear()
        self._used_tokens = 0

    def admit(self, now: float, tokens: int) -> QuotaDecision:
        """Count a request estimated at ``tokens`` arriving at ``now`` (monotonic seconds), if the window has room."""
        self._forget(now)
        count = len(self._admitted)
        waits: list[tuple[float, str]] = []
        if self.requests is not None and count + 1 > self.requests:
            # The request fits once all but requests - 1 of those counted now have left the window.
            waits.append((self._leaves(count - self.requests, now), "requests"))
        if self.tokens is not None and self._used_tokens + tokens > self.tokens:
            excess = self._used_tokens + tokens - self.tokens
            freed = 0
            for at, (_, weight) in enumerate(self._admitted):
                freed += weight
                if freed >= excess:
                    waits.append((self._leaves(at, now), "tokens"))
                    break
            else:  # more than a whole window holds: it never fits
                waits.append((math.inf, "tokens"))
        if waits:
            wait, over = max(waits)
            return QuotaDecision(False, wait, over, *self._remaining())
        self._admitted.append((now, tokens))
        self._used_tokens += tokens
        return QuotaDecision(True, 0.0, None, *self._remaining())

    def _leaves(self, index: int, now: float) -> float:
        return max(0.0, self._admitted[index][0] + self.window - now)

    def _forget(self, now: float) -> None:
        while self._admitted and self._admitted[0][0] <= now - self.window:
            self._used_tokens -= self._admitted.popleft()[1]

    def _remaining(self) -> tuple[int | None, int | None]:
        requests = None if self.requests is None else self.requests - len(self._admitted)
        tokens = None if self.tokens is None else self.tokens - self._used_tokens
        return requests, tokens


def per_window(per_minute: int, window: float) -> int:
    """A per-minute quota scaled to a window of ``window`` seconds, rounded down (600 a minute, 1 s: 10)."""
    return math.floor(per_minute * window / 60 + 1e-9)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _prompts(body: Mapping[str, Any]) -> tuple[list[str], int]:
    """The prompt texts of a body and how many answers they ask for (one per prompt, one per conversation)."""
    if isinstance(body.get("messages"), list):
        return [content_text(m.get("content")) for m in body["messages"] if isinstance(m, dict)], 1
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt], 1
    if isinstance(prompt, list):
        texts = [p for p in prompt if isinstance(p, str)]
        return texts, max(1, len(texts))
    # Dedicated schemas: {"inputs": {"input_string": [...]}}, {"input_data": {"input_string": [...]}},
    # {"inputs": [...]}; the items are prompts, or the messages of one conversation.
    container = body.get("input_data", body.get("inputs"))
    items = container.get("input_string") if isinstance(container, dict) else container
    if not isinstance(items, list):
        return [], 1
    if any(isinstance(item, dict) for item in items):
        return [content_text(m.get("content")) for m in items if isinstance(m, dict)], 1
    texts = [item for item in items if isinstance(item, str)]
    return texts, max(1, len(texts))


def _max_tokens(body: Mapping[str, Any]) -> int:
    sources: list[Mapping[str, Any]] = [body]
    for holder in (body, body.get("input_data")):
        if isinstance(holder, dict) and isinstance(holder.get("parameters"), dict):
            sources.append(holder["parameters"])
    for source in sources:
        for key in _MAX_TOKEN_KEYS:
            value = source.get(key)
            if _is_count(value):
                return value
    return DEFAULT_MAX_TOKENS


def estimate_tokens(body: Any) -> int:
    """The tokens a request is charged at arrival, as Azure estimates them (no tokenizer).

    The prompt is its characters / 4, rounded up (every prompt string and message content of the body), and
    each answer asked for is charged its whole budget: ``max_tokens`` (or ``max_completion_tokens``,
    ``max_new_tokens``, also read from ``parameters``; 16 when none is given) times ``n`` per prompt. A body
    that is not a JSON object is charged 16.
    """
    if not isinstance(body, dict):
        return DEFAULT_MAX_TOKENS
    texts, answers = _prompts(body)
    n = body.get("n")
    choices = n if _is_count(n) and n >= 1 else 1
    prompt_tokens = math.ceil(sum(len(text) for text in texts) / CHARS_PER_TOKEN)
    return prompt_tokens + _max_tokens(body) * choices * answers
