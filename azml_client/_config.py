"""Transport settings: the api type, timeouts and the retry policy, with their defaults."""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from azml_client._exceptions import APIConnectionError, APIStatusError, AzureMLError, ConfigurationError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "ApiType",
    "OnThrottle",
    "RateLimit",
    "RetryPolicy",
    "Timeout",
    "TimeoutLike",
    "parse_retry_after",
]


class ApiType(str, enum.Enum):
    """The kind of Azure ML online endpoint.

    ``dedicated``: a managed online endpoint that serves ``/score`` with a model-specific schema.
    ``serverless``: a models-as-a-service endpoint with the OpenAI-compatible ``/v1/...`` routes.
    """

    dedicated = "dedicated"
    serverless = "serverless"

    @classmethod
    def parse(cls, value: ApiType | str | None) -> ApiType:
        """Accept an ApiType or its name (any case); ``None`` means dedicated.

        ``"realtime"`` is a deprecated alias of dedicated and emits a DeprecationWarning.
        """
        if value is None:
            return cls.dedicated
        if isinstance(value, ApiType):
            return value
        if isinstance(value, str):
            name = value.strip().lower()
            if name == "realtime":
                warnings.warn("api_type 'realtime' is deprecated; use 'dedicated'", DeprecationWarning, stacklevel=3)
                return cls.dedicated
            for member in cls:
                if member.value == name:
                    return member
        raise ConfigurationError(
            f"unknown api_type {value!r}; expected one of: dedicated, serverless (or the deprecated 'realtime')"
        )

    def __str__(self) -> str:
        return self.value


def _positive_or_none(instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0):
        raise ConfigurationError(f"{attribute.name} must be a positive number of seconds or None, got {value!r}")


def _infinite_is_none(value: Any) -> Any:
    """``float("inf")`` (or ``AZUREML_TIMEOUT=inf``) means no limit, as ``None`` does."""
    return None if isinstance(value, float) and math.isinf(value) and value > 0 else value


@attrs.frozen(slots=True)
class Timeout:
    """How long a call may take, in seconds; ``None`` (or ``float("inf")``) switches a limit off.

    Args:
        total: the whole call, every retry and backoff sleep included (default 600 s).
        connect: establishing a new connection (default 10 s); waiting for a free concurrency slot or
            pooled connection is not included.
        read: the longest idle gap between two bytes of the answer, so a long stream that keeps
            sending is never cut (default 300 s).
    """

    total: float | None = attrs.field(default=600.0, converter=_infinite_is_none, validator=_positive_or_none)
    connect: float | None = attrs.field(default=10.0, converter=_infinite_is_none, validator=_positive_or_none)
    read: float | None = attrs.field(default=300.0, converter=_infinite_is_none, validator=_positive_or_none)

    @classmethod
    def parse(cls, value: TimeoutLike | None) -> Timeout:
        """Accept a Timeout, a number (the total), a mapping of the fields, or ``None`` (the defaults)."""
        if value is None:
            return DEFAULT_TIMEOUT
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(total=float(value))
        if isinstance(value, str):
            try:
                return cls(total=float(value))
            except ValueError:
                raise ConfigurationError(f"timeout must be a number of seconds, got {value!r}") from None
        if isinstance(value, Mapping):
            unknown = set(value) - {"total", "connect", "read"}
            if unknown:
                raise ConfigurationError(f"unknown timeout fields {sorted(unknown)}; use total, connect, read")
            return cls(**value)
        raise ConfigurationError(f"timeout must be a number, a Timeout or None, got {type(value).__name__}")


TimeoutLike = Timeout | float | int | str | Mapping[str, Any]

DEFAULT_TIMEOUT = Timeout()
#: The connector's connection limit unless ``max_connections`` says otherwise.
DEFAULT_MAX_CONNECTIONS = 100
#: The largest answer body read into memory (a guard against endless bodies).
DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Return the wait in seconds that a throttling answer asks for, or ``None`` when it names none.

    Reads ``retry-after-ms`` and ``x-ms-retry-after-ms`` (milliseconds) first, then ``Retry-After``
    (seconds, or an HTTP date). Never raises: values that are not finite non-negative numbers or dates are
    ignored.
    """
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(name)
        if raw is not None:
            try:
                value = float(raw) / 1000.0
            except (TypeError, ValueError):
                continue
            if math.isfinite(value) and value >= 0:
                return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        value = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, value) if math.isfinite(value) else None
    return value if math.isfinite(value) and value >= 0 else None


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ConfigurationError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _jitter_range(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    _non_negative(instance, attribute, value)
    if value > 1:
        raise ConfigurationError(f"jitter must be between 0 and 1, got {value!r}")


@attrs.frozen(slots=True)
class RetryPolicy:
    """When and how long to wait before repeating a failed call.

    A call is retried (at most ``max_retries`` times, so it makes ``max_retries + 1`` attempts) after a
    connection error, a timeout, or an answer whose status is in ``retry_statuses``. POST is retried too:
    inference calls are safe to repeat. 400, 401 (after one token refresh), 403, 404, 413, 422 and 424
    are never retried.

    The wait before retry ``n`` (``n = 1`` for the first retry) is::

        backoff(n) = min(initial_delay * 2 ** (n - 1), max_delay) * (1 - jitter * U)    with U ~ Uniform[0, 1)

    unless the answer says how long to wait (``retry-after-ms``, ``x-ms-retry-after-ms`` or
    ``Retry-After`` in seconds or as an HTTP date): then that wait is used as it is. When it asks for more than
    ``max_retry_after`` seconds the call fails at once with :class:`RateLimitError` (or the status's own
    error) carrying the value in ``retry_after``.

    Args:
        max_retries: retries after the first attempt (0 disables retrying).
        initial_delay: the first backoff, in seconds.
        max_delay: the longest backoff, in seconds.
        jitter: the fraction of the backoff taken off at random (0 = none, 1 = full jitter).
        retry_statuses: the HTTP statuses that are retried.
        max_retry_after: the longest server-requested wait that is honoured, in seconds.
        retry_connection_errors: whether connection errors and timeouts are retried.
    """

    max_retries: int = attrs.field(default=2)
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_jitter_range)
    retry_statuses: frozenset[int] = attrs.field(default=frozenset({408, 429, 500, 502, 503, 504}), converter=frozenset)
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    retry_connection_errors: bool = True

    @max_retries.validator
    def _check_max_retries(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, got {value!r}")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0)

    def backoff(self, retry: int, rand: float | None = None) -> float:
        """Return the backoff in seconds before retry number ``retry`` (1-based), by the formula above.

        The exponent is clamped, so retry 10,000 waits ``max_delay`` instead of overflowing.
        """
        exponent = min(max(retry - 1, 0), 64)
        base = min(self.initial_delay * (2.0**exponent), self.max_delay)
        u = random.random() if rand is None else rand
        return base * (1.0 - self.jitter * u)

    def next_delay(self, retries: int, error: AzureMLError, remaining: float | None = None) -> float | None:
        """Return how long to wait before trying again after ``error``, or ``None`` to give up.

        Args:
            retries: the retries already made (0 after the first attempt failed).
            error: what the last attempt ended with.
            remaining: the seconds left of the call's total timeout (``None``: no total timeout).

        Gives up when ``max_retries`` are used, when the error is not retryable (a status outside
        ``retry_statuses``, a connection error with ``retry_connection_errors`` off, a TLS failure...), when the
        server asks for a wait longer than ``max_retry_after``, or when the wait would outlast ``remaining``.
        The wait is the server's Retry-After when it gave one, else :meth:`backoff`.
        """
        if retries >= self.max_retries:
            return None
        delay: float | None = None
        if isinstance(error, APIStatusError):
            if error.status_code not in self.retry_statuses:
                return None
            if error.retry_after is not None:
                if error.retry_after > self.max_retry_after:
                    return None
                delay = error.retry_after
        elif isinstance(error, APIConnectionError):
            if not error.retryable or not self.retry_connection_errors:
                return None
        else:
            return None
        if delay is None:
            delay = self.backoff(retries + 1)
        if remaining is not None and delay >= remaining:
            return None
        return delay

    def should_retry_status(self, status: int) -> bool:
        """Whether an answer with this status may be retried."""
        return status in self.retry_statuses


DEFAULT_RETRY_POLICY = RetryPolicy()

#: What a 429 does: ``"wait"`` sends the request back in line (it never uses up ``max_retries``), ``"raise"``
#: counts it as a retry. ``None``: ``"wait"`` inside batches, ``"raise"`` for single calls.
OnThrottle = Literal["wait", "raise"]


def _positive_rate(instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{attribute.name} must be a positive number or None, got {value!r}")


@attrs.frozen(slots=True)
class RateLimit:
    """Quotas you know an endpoint has, kept by the client with token buckets (one per quota).

    Azure enforces a per-minute quota over short windows (600 requests per minute means more than 10 in one
    second are refused), so by default sends are spaced evenly at the stated rate, with no burst; a bucket may
    save up ``burst_seconds`` worth of its rate where the endpoint allows bursts. A request's token weight is
    estimated by the model layer from characters (prompt characters / 4, plus ``max_tokens`` or
    ``max_new_tokens``) and corrected by the answer's usage.

    Args:
        requests_per_minute: the request quota (RPM), or None.
        tokens_per_minute: the token quota (TPM), or None.
        burst_seconds: how many seconds of quota a bucket may save up (default 0: none, one request at a time).
    """

    requests_per_minute: float | None = attrs.field(default=None, validator=_positive_rate)
    tokens_per_minute: float | None = attrs.field(default=None, validator=_positive_rate)
    burst_seconds: float = attrs.field(default=0.0, validator=_non_negative)
