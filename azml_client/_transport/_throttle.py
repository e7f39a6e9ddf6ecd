"""Push-back: what stands between "this request wants to go" and its send, and how answers move it.

One :class:`Throttle` per client, shared by every loop and thread. Before each attempt a request takes an
in-flight slot (:class:`InFlightLimit`, sized by the :class:`AdaptiveLimit`), then waits out, still holding it:

- a client-wide **hold** after a quota 429 (``x-ratelimit-remaining-*`` at 0, or 4 refusals in a row with
  nothing left in flight): no request is sent until the window reopens (a quota only inferred holds ten round
  trips, doubling with each further refusal, one second at most), and from then on sends are spaced at 90% of
  the rate the endpoint was answering at (a rate that grows with time, loses 10% at a further quota 429, at most
  once a second, and is forgotten after 10 s without one), so the reopened window is not flooded;
- the **pace** when the adaptive limit is below one request in flight;
- the **token buckets** of a stated :class:`RateLimit` (requests and tokens per minute).

A capacity 429 (others still succeed) only shrinks the limit; that one request waits its own Retry-After, or
without one two to four round trips while the endpoint holds others of the client's requests (``_capacity_wait``).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Literal

from azml_client._config import OnThrottle, RateLimit
from azml_client._transport._adaptive import AdaptiveLimit
from azml_client._transport._limiter import InFlightLimit

__all__ = ["Slot", "Throttle", "ThrottleKind", "batch_calls", "throttle_mode"]

#: A quota 429 holds every send of the client; a capacity 429 shrinks the limit.
ThrottleKind = Literal["quota", "capacity"]

_IN_BATCH: contextvars.ContextVar[bool] = contextvars.ContextVar("azml_client_in_batch", default=False)

_REMAINING_HEADERS = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")

#: How fast a learned send rate grows per second without a quota refusal: when a header said the quota's window
#: was empty, and when the quota was only inferred from refusals (see ``Throttle._grow_rate``).
_STATED_QUOTA_GROWTH = 0.05
_INFERRED_QUOTA_GROWTH = 0.25
#: Seconds without a quota refusal after which a learned send rate is forgotten.
_RATE_MEMORY = 10.0
#: The longest client-wide hold after a quota 429 that only inference, not the endpoint, called a quota.
_INFERRED_QUOTA_HOLD = 1.0
#: Refusals in a row, with nothing in flight, that make a quota of 429s without a header. Fewer mistake an
#: endpoint shared with other clients (whose answers free its slots at any moment) for a quota.
_INFERRED_QUOTA_STREAK = 4
#: The longest wait, in round trips, of a request refused for capacity (no Retry-After) while the endpoint holds
#: others of the client's requests and the adaptive limit keeps at least one in flight (jittered down to half).
_CAPACITY_RETRY_ROUND_TRIPS = 4.0


@contextlib.contextmanager
def batch_calls() -> Iterator[None]:
    """Mark the calls made inside (and in tasks started inside) as part of a batch: a 429 waits its turn.

    The batch machinery of the model layer (``abatch``, ``abatch_as_completed``) runs its workers inside this.
    """
    token = _IN_BATCH.set(True)
    try:
        yield
    finally:
        _IN_BATCH.reset(token)


def throttle_mode(call: OnThrottle | None, client: OnThrottle | None) -> OnThrottle:
    """The mode of one call: the call's, else the client's, else ``"wait"`` in a batch and ``"raise"`` outside."""
    if call is not None:
        return call
    if client is not None:
        return client
    return "wait" if _IN_BATCH.get() else "raise"


class Slot:
    """One held in-flight slot; :meth:`release` gives it back once, however often it is called.

    ``seq`` numbers the send made with it (0 before it is sent), so that a refusal can tell how many of the
    requests in flight were sent after it.
    """

    __slots__ = ("_throttle", "seq")

    def __init__(self, throttle: Throttle) -> None:
        self._throttle: Throttle | None = throttle
        self.seq = 0

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        throttle, self._throttle = self._throttle, None
        if throttle is not None:
            if self.seq:
                throttle.answered()
            throttle.slots.release()


class _Bucket:
    """A token bucket kept as a reservation clock: taking more than it holds books the time it will have it."""

    __slots__ = ("_capacity", "_level", "_rate", "_stamp")

    def __init__(self, per_minute: float, burst_seconds: float) -> None:
        # 2% under the stated rate: a quota counted over sliding windows refuses the one send too many that exact
        # spacing puts into a window now and then.
        self._rate = per_minute / 60.0 * 0.98
        self._capacity = max(1.0, self._rate * burst_seconds)
        self._level = self._capacity
        self._stamp = time.monotonic()

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount``; return how many seconds from ``now`` until the bucket had it."""
        self._level = min(self._capacity, self._level + (now - self._stamp) * self._rate)
        self._stamp = now
        self._level -= amount
        return 0.0 if self._level >= 0 else -self._level / self._rate

    def refund(self, amount: float) -> None:
        """Give back (or, negative, take more of) what a request's estimate got wrong."""
        self._level = min(self._capacity, self._level + amount)


class Throttle:
    """The client's in-flight cap, adaptive limit, quota hold, pace and rate buckets, fed by every answer.

    Args:
        max_concurrency: the user's upper bound on requests in flight.
        rate_limit: quotas the user states, or None.
        adaptive: whether the limit adapts below ``max_concurrency`` (else it stays there).
    """

    __slots__ = (
        "_answers",
        "_gated",
        "_hold_until",
        "_last_paced",
        "_last_send",
        "_last_seq",
        "_lock",
        "_rate",
        "_rate_cut",
        "_rate_grown",
        "_rate_growth",
        "_refused_streak",
        "_requests",
        "_sequence",
        "_tokens",
        "adaptive",
        "sent_in_flight",
        "slots",
    )

    def __init__(self, max_concurrency: int, rate_limit: RateLimit | None = None, *, adaptive: bool = True) -> None:
        self.adaptive: AdaptiveLimit | None = AdaptiveLimit(max_concurrency) if adaptive else None
        self.slots = InFlightLimit(max_concurrency if self.adaptive is None else self.adaptive.in_flight_cap)
        self._lock = threading.Lock()
        self._hold_until = 0.0
        self._last_send = -math.inf
        self._refused_streak = 0
        self._answers: collections.deque[float] = collections.deque(maxlen=4096)  # when healthy answers came
        self._rate: float | None = None  # sends per second learned from quota 429s
        self._rate_cut = -math.inf  # when the learned rate was last set or cut (its last quota refusal)
        self._rate_grown = -math.inf  # when it last grew
        self._rate_growth = _STATED_QUOTA_GROWTH  # its growth per second without a quota refusal
        self._sequence = itertools.count(1)  # numbers each send
        self._last_seq = 0
        #: Requests sent and not yet answered (a slot taken but not yet used to send is not counted).
        self.sent_in_flight = 0
        self._last_paced = -math.inf
        burst = rate_limit.burst_seconds if rate_limit is not None else 0.0
        rpm = rate_limit.requests_per_minute if rate_limit is not None else None
        tpm = rate_limit.tokens_per_minute if rate_limit is not None else None
        self._requests = _Bucket(rpm, burst) if rpm else None
        self._tokens = _Bucket(tpm, burst) if tpm else None
        self._gated = self._requests is not None or self._tokens is not None

    @property
    def limit(self) -> float:
        """The current concurrency limit (a fraction below one while sends are paced)."""
        return float(self.slots.limit) if self.adaptive is None else self.adaptive.limit

    @property
    def counts_tokens(self) -> bool:
        """Whether a token quota is kept, so that the model layer should weigh its requests."""
        return self._tokens is not None

    def try_acquire(self) -> Slot | None:
        """A slot when one is free now, else None (never blocks)."""
        return Slot(self) if self.slots.try_acquire() else None

    async def acquire(self) -> Slot:
        """Wait for a slot."""
        await self.slots.acquire()
        return Slot(self)

    def mark_sent(self, slot: Slot) -> None:
        """Record that ``slot``'s request is being sent now."""
        with self._lock:
            slot.seq = self._last_seq = next(self._sequence)
            self.sent_in_flight += 1

    def answered(self) -> None:
        """A sent request is no longer in flight (its slot is given back)."""
        with self._lock:
            self.sent_in_flight -= 1

    def send_delay(self, weight: float) -> float:
        """Seconds the holder of a slot must wait before sending: the hold, the pace and the buckets.

        The delay is booked at once (the next caller queues behind it), so concurrent senders spread out.
        """
        if (
            not self._gated
            and self._rate is None
            and self._hold_until == 0.0
            and (self.adaptive is None or self.adaptive.limit >= 1.0)
        ):
            return 0.0
        with self._lock:
            now = time.monotonic()
            at = max(now, self._hold_until)
            if self._hold_until and self._hold_until <= now:
                self._hold_until = 0.0
            pace = 0.0 if self.adaptive is None else self.adaptive.pace()
            if pace:
                at = max(at, self._last_send + pace)
                self._last_send = at
            if self._rate is not None:
                at = max(at, self._last_paced + 1.0 / self._rate)
                self._last_paced = at
            if self._requests is not None:
                at = max(at, now + self._requests.reserve(1.0, now))
            if self._tokens is not None and weight > 0:
                at = max(at, now + self._tokens.reserve(weight, now))
            return at - now

    def correct_tokens(self, estimated: float, actual: float) -> None:
        """Settle a request's token estimate against what the answer's usage says it used."""
        if self._tokens is not None and actual >= 0:
            with self._lock:
                self._tokens.refund(estimated - actual)

    def on_success(self, latency: float) -> None:
        """A healthy answer after ``latency`` seconds: the limit may grow."""
        self._refused_streak = 0
        now = time.monotonic()
        self._answers.append(now)
        if self._rate is not None:
            self._grow_rate(now)
        if self.adaptive is not None:
            if self.adaptive.limit < 1.0:
                # Paced, and an answer came back healthy: the next send goes now, not a pace after the last one
                # (sent on the answer, as TCP sends on an ACK), and the limit doubles. A client squeezed to a slow
                # pace takes the endpoint back in a few round trips once its neighbours have left.
                with self._lock:
                    self._last_send = -math.inf
            # Every slot taken (this answer's still is): a probe above the ceiling was tested. Not so while a learned
            # quota rate or a stated RateLimit spaces the sends: their slots wait for the clock, not the endpoint.
            saturated = self.slots.in_flight >= self.slots.limit and self._rate is None and not self._gated
            if self.adaptive.on_success(latency, saturated):
                self.slots.set_limit(self.adaptive.in_flight_cap)

    def _grow_rate(self, now: float) -> None:
        """Let the learned rate grow with time since the last quota refusal, and forget it after a quiet spell.

        Per second, not per answer: a rate learned at a trickle must not take minutes to recover, and one learned
        at hundreds of answers a second must not outgrow the quota between two cuts. A quota only inferred (no
        header said the window was empty: refusals with nothing else in flight, which is also what an endpoint
        shared with other clients looks like) grows five times faster, and any learned rate is dropped after
        ``_RATE_MEMORY`` seconds without a quota refusal: a real quota teaches it again with its next 429.
        """
        with self._lock:
            rate = self._rate
            if rate is None:
                return
            if now - self._rate_cut > _RATE_MEMORY:
                self._rate = None
                return
            elapsed = now - self._rate_grown
            if elapsed >= 0.05:
                self._rate = rate * (1.0 + self._rate_growth * min(elapsed, 1.0))
                self._rate_grown = now

    def on_pushback(self, accepted: int | None = None, retry_after: float | None = None) -> None:
        """A 503, a 408, a timeout or a capacity 429: the endpoint is overloaded, so the limit shrinks.

        ``accepted``: for a capacity 429, the requests still in flight (the ones the endpoint took).
        """
        if self.adaptive is not None and self.adaptive.on_pushback(time.monotonic(), accepted, retry_after):
            self.slots.set_limit(self.adaptive.in_flight_cap)

    def on_throttled(
        self, headers: Mapping[str, str], retry_after: float | None, backoff: float, seq: int = 0
    ) -> tuple[ThrottleKind, float]:
        """A 429: say whether it is a quota or a capacity refusal, act on it, and return how long this request waits.

        A quota 429 holds every send of the client until the window reopens (the server's Retry-After, else
        ``backoff``); a capacity 429 shrinks the limit, and this request alone waits its Retry-After (else
        :meth:`_capacity_wait`). ``seq`` is the refused request's :attr:`Slot.seq`.
        """
        now = time.monotonic()
        with self._lock:
            self._refused_streak += 1
            streak = self._refused_streak
        # The endpoint holds the requests that reached it before this one and are still in flight: those sent
        # and unanswered, less the ones sent after this one (at most all of them).
        sent_after = self._last_seq - seq if seq else 0
        accepted = max(0, self.sent_in_flight - sent_after)
        # "Every request in flight refused": refusals in a row with nothing left in flight that the endpoint took.
        stated = _remaining_says_empty(headers)
        quota = stated or (streak >= _INFERRED_QUOTA_STREAK and self.slots.in_flight == 0)
        if quota:
            wait = retry_after if retry_after is not None else backoff
            # A quota only inferred, with no Retry-After, holds the other sends ten round trips, a second at most
            # (the refused request waits its whole backoff): uncoordinated clients sharing an endpoint look like
            # that, and their backoffs, doubling with each refusal of the same request, would idle the client for
            # seconds. A real quota is then paced by the rate learned here.
            hold = wait if stated or retry_after is not None else min(wait, self._inferred_hold(streak))
            with self._lock:
                self._hold_until = max(self._hold_until, now + hold)
                if self._rate is None:
                    answered = self._answer_rate(now, wait, accepted)
                    if answered is not None:
                        self._rate = 0.9 * answered
                        self._rate_cut = self._rate_grown = now
                        self._rate_growth = _STATED_QUOTA_GROWTH if stated else _INFERRED_QUOTA_GROWTH
                elif now - self._rate_cut >= 1.0:  # one cut per second: the refusals of one full window
                    self._rate *= 0.9
                    self._rate_cut = self._rate_grown = now
                    if stated:
                        self._rate_growth = _STATED_QUOTA_GROWTH
            return "quota", wait
        self.on_pushback(accepted=accepted, retry_after=retry_after)
        wait = retry_after if retry_after is not None else self._capacity_wait(backoff, accepted)
        return "capacity", wait

    def _capacity_wait(self, backoff: float, accepted: int) -> float:
        """How long a request refused for capacity, with no Retry-After, waits before it queues for a slot again.

        When the endpoint holds others of this client's requests (``accepted``) and the limit keeps at least one in
        flight: two to four round trips, not the doubling backoff. The limit has already shrunk, so the re-send
        waits its turn behind the others, whose answers free the room; a backoff grown to seconds only leaves the
        refused row (and the batch or partition that waits for its last row) idle long after the endpoint has
        room. Refused with nothing of its own in the endpoint (neighbours fill it, or a window is shut), paced
        below one request, or before any answer: the backoff, jittered.
        """
        adaptive = self.adaptive
        latency = adaptive.latency if adaptive is not None else None
        if adaptive is None or latency is None or adaptive.limit < 1.0 or accepted <= 0:
            return backoff * (0.5 + random.random())
        return min(backoff, _CAPACITY_RETRY_ROUND_TRIPS * latency) * (0.5 + 0.5 * random.random())

    def _inferred_hold(self, streak: int) -> float:
        """How long an inferred quota holds the other sends: one second at most.

        Ten round trips, doubled by each further refusal in the run: a window that stays shut is a quota, not a
        neighbour's request.
        """
        latency = self.adaptive.latency if self.adaptive is not None else None
        if latency is None:
            return _INFERRED_QUOTA_HOLD
        doubling = 2.0 ** min(max(streak - _INFERRED_QUOTA_STREAK, 0), 16)
        return min(_INFERRED_QUOTA_HOLD, 10.0 * latency * doubling)

    def _answer_rate(self, now: float, wait: float, accepted: int, span: float = 2.0) -> float | None:
        """The rate the quota allows, judged from the healthy answers of the last ``span`` seconds.

        They, and the ``accepted`` requests whose answers are still on their way, came in the window that is now
        full and reopens after ``wait``: so many requests over that much time (None with too few to tell).
        """
        answers = self._answers
        while answers and answers[0] < now - span:
            answers.popleft()
        if len(answers) < 3:
            return None
        return (len(answers) + accepted) / max(now - answers[0] + wait, 1e-3)


def _remaining_says_empty(headers: Mapping[str, str]) -> bool:
    for name in _REMAINING_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            if float(raw) <= 0:
                return True
        except ValueError:
            continue
    return False
