"""The adaptive concurrency limit: how many requests an endpoint takes at once, learned from its answers.

A small object fed by each request's outcome and latency, separate from the code that enforces the limit (as
Netflix's concurrency-limits keeps its limiters). The rule:

- **slow start**: from ``initial`` (8: a default-sized managed deployment takes 2 at once, so a first burst of
  more mostly comes back refused), every healthy answer adds 1 (the limit doubles once per round trip) until the
  first push-back or until latency shows a queue forming;
- **congestion avoidance**: then every healthy answer adds ``1 / limit`` (one more per round trip), and at most
  ``1 / (16 * limit)`` once the limit is above the ceiling where the endpoint last pushed back (a rare probe),
  rarer still in proportion when that refusal asked for a Retry-After much longer than an answer takes. Above
  the ceiling the limit grows only on answers that came with every slot's request at the endpoint, and each
  level that held so doubles the pace of the next, up to one more per round trip, until the next push-back (a
  client whose neighbour left takes the room back in a few dozen round trips, where a client at its endpoint's
  width is refused by its first probe and stays rare);
- **push-back** (a capacity 429, a 503, a 408 or a timeout): the first in a round trip multiplies the limit by
  ``backoff`` (0.9, so that rare transient faults cost little concurrency) and the ceiling remembers where it
  was; a capacity 429 also brings the limit down to the requests the endpoint holds at that moment (a refusal
  comes back at once, so those still in flight were taken), which becomes the ceiling, so a burst of refusals
  (many requests sent into a narrow endpoint at once) cuts to the endpoint's width in one round trip; other
  push-backs in the same round trip take 5% off each;
- **latency guard**: when the recent latency (a fast moving average) passes ``2 x`` the endpoint's baseline (an
  average that falls twice as fast as it rises, so it sits near the lower third of the latencies), the endpoint
  is queueing: the limit stops growing (a
  queueing managed endpoint slows down before it refuses);
- **below one**: a push-back at a limit of 1 keeps one request in flight and paces the sends, each
  ``latency / limit`` apart (half a second or eight round trips at most), and each further one halves the limit
  (down to 1/64); each healthy answer doubles it back, up to 1, and lets the next send go at once (see
  ``Throttle.on_success``). Halving and doubling alike: a client squeezed out of a narrow endpoint by its
  neighbours sinks to a slow pace, and takes the endpoint back within a few round trips once they have left.
"""

from __future__ import annotations

import math
import threading

__all__ = ["AdaptiveLimit"]

_MIN_LIMIT = 1.0 / 64  # one request per 64 latencies: the slowest pace
#: Growth above the ceiling right after a push-back, in requests per round trip: one more every 16 round trips.
_PROBE_SPEED = 1.0 / 16.0
#: The longest pace, in seconds between sends, of a limit below one request in flight (or eight round trips).
_MAX_PACE = 0.5


class AdaptiveLimit:
    """An AIMD concurrency limit with slow start, a remembered ceiling, a latency guard, and pacing below one.

    Thread-safe: every loop and thread using one client feeds the same limit.

    Args:
        maximum: the user's upper bound (``max_concurrency``).
        initial: where the limit starts.
        backoff: the factor applied on push-back.
    """

    __slots__ = (
        "_backoff",
        "_baseline",
        "_ceiling",
        "_last_cut",
        "_latency",
        "_level_held",
        "_limit",
        "_lock",
        "_maximum",
        "_probe_cost",
        "_probe_speed",
        "_slow_start",
    )

    def __init__(self, maximum: int, initial: float = 8.0, backoff: float = 0.9) -> None:
        self._lock = threading.Lock()
        self._maximum = float(maximum)
        self._limit = min(float(initial), self._maximum)
        self._backoff = backoff
        self._ceiling = math.inf
        self._slow_start = True
        self._latency: float | None = None  # recent latency of healthy answers (fast moving average)
        self._baseline: float | None = None  # the endpoint's unloaded latency: falls fast, rises slowly
        self._last_cut = -math.inf
        self._probe_cost = 0.0  # the Retry-After of the last refusal: what a failed probe costs its request
        self._probe_speed = _PROBE_SPEED  # the growth above the ceiling, in requests per round trip
        self._level_held = True  # every answer at the current probe level came with every slot in use

    @property
    def limit(self) -> float:
        """The current limit; below 1 it is a pace (one request in flight, sends spaced out)."""
        return self._limit

    @property
    def in_flight_cap(self) -> int:
        """The most requests in flight the limit allows right now (at least 1).

        The limit rounded, but never rounded up past the ceiling: a probe above where the endpoint refused needs
        the whole next request's worth of growth.
        """
        rounded = int(self._limit + 0.5)
        if rounded > self._ceiling:
            rounded = int(self._limit)
        return max(1, rounded)

    @property
    def ceiling(self) -> float:
        """Where the endpoint last pushed back (infinite before it ever did)."""
        return self._ceiling

    @property
    def latency(self) -> float | None:
        """The smoothed latency of healthy answers, in seconds, once one arrived."""
        return self._latency

    def pace(self) -> float:
        """Seconds between two sends while the limit is below 1 (0 otherwise).

        ``latency / limit``, but at most half a second or eight round trips, whichever is longer: a client
        squeezed to the slowest pace (1/64: 3.2 s between sends on a 50 ms endpoint) still probes often enough
        to notice within a second that its neighbours have left.
        """
        if self._limit >= 1.0:
            return 0.0
        latency = 0.05 if self._latency is None else self._latency
        return min(latency / self._limit, max(_MAX_PACE, 8.0 * latency))

    def on_success(self, latency: float, saturated: bool = False) -> bool:
        """Feed one healthy answer and its latency (seconds); return whether the in-flight cap changed.

        ``saturated``: whether every in-flight slot was taken (and not by sends waiting for a rate's clock). Above
        the ceiling the limit only grows then: a client sending fewer requests than its limit has tested nothing.

        Unlocked (it runs once per answer): two threads racing here can lose one update of a moving average,
        which costs nothing; push-backs, which must not be lost, take the lock.
        """
        if latency > 0:
            if self._latency is None or self._baseline is None:
                self._latency = self._baseline = latency
            else:
                self._latency += 0.2 * (latency - self._latency)
                # Falls twice as fast as it rises: it settles near the lower third of the latencies, so a heavy
                # tail (lognormal answers) does not read as a queue, while a queue doubling every answer does.
                weight = 0.02 if latency < self._baseline else 0.01
                self._baseline += weight * (latency - self._baseline)
        if self._limit >= self._maximum:
            return False
        before = self.in_flight_cap
        queueing = self._latency is not None and self._baseline is not None and self._latency > 2.0 * self._baseline
        if self._limit < 1.0:
            self._limit = min(1.0, self._limit * 2.0)
        elif queueing:
            self._slow_start = False
        elif self._slow_start:
            self._limit = min(self._maximum, self._limit + 1.0)
        else:
            step = 1.0 / self._limit
            probing = self._limit >= self._ceiling
            if probing:
                if not saturated:
                    self._level_held = False
                    return False
                step *= self._probe_speed
                if self._latency is not None and self._probe_cost > self._latency:
                    step *= self._latency / self._probe_cost  # a costly refusal: probe more rarely still
            self._limit = min(self._maximum, self._limit + step)
            if probing and self.in_flight_cap > before:
                with self._lock:  # a push-back racing here (the limit back at the ceiling) is not undone
                    if self._level_held and self._limit > self._ceiling:
                        # The level below held a whole probe with every slot in use: the room is real (a
                        # neighbour left), so the next level comes twice as fast, up to one per round trip.
                        self._probe_speed = min(1.0, self._probe_speed * 2.0)
                    self._level_held = True
        return self.in_flight_cap != before

    def on_pushback(self, now: float, accepted: int | None = None, retry_after: float | None = None) -> bool:
        """Feed one push-back at time ``now`` (monotonic seconds); return whether the in-flight cap changed.

        ``accepted``, when known, is how many other requests the endpoint holds right now (a refusal comes back
        at once, so those still in flight were taken): the limit falls to it at least, and the ceiling is set
        there, above which the limit only probes.
        """
        with self._lock:
            before = self.in_flight_cap
            round_trip = self._latency if self._latency is not None else 0.05
            self._slow_start = False
            self._probe_cost = retry_after or 0.0
            self._probe_speed = _PROBE_SPEED
            self._level_held = True
            repeat = now - self._last_cut < round_trip
            if self._limit <= 1.0 and (accepted is None or accepted == 0):
                if not repeat:
                    self._last_cut = now
                    self._limit = max(_MIN_LIMIT, self._limit * 0.5)
                return self.in_flight_cap != before
            cut = self._limit * (1.0 if repeat and accepted is not None else 0.95 if repeat else self._backoff)
            if accepted is not None:
                # At most halved by one refusal: "accepted" is read off the requests in flight and can be low
                # when the answers are slow to be read (a loaded client), and a burst still halves down fast.
                cut = max(min(cut, float(accepted)), self._limit * 0.5)
                self._ceiling = max(1.0, float(accepted))
            elif not repeat:
                self._ceiling = self._limit
            self._limit = max(1.0, cut)
            if not repeat:
                self._last_cut = now
            return self.in_flight_cap != before
