"""Timeout, RetryPolicy and Retry-After parsing, without a server."""

from __future__ import annotations

import email.utils
import time
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import azml_client as az
from azml_client._config import parse_retry_after


def test_api_type_parse_and_realtime_alias() -> None:
    assert az.ApiType.parse(None) is az.ApiType.dedicated
    assert az.ApiType.parse("Serverless") is az.ApiType.serverless
    with pytest.warns(DeprecationWarning, match="realtime"):
        assert az.ApiType.parse("realtime") is az.ApiType.dedicated
    with pytest.raises(az.ConfigurationError, match="unknown api_type 'batch'"):
        az.ApiType.parse("batch")


def test_timeout_parse_forms() -> None:
    assert az.Timeout.parse(None) == az.Timeout()
    assert az.Timeout.parse(5) == az.Timeout(total=5.0)
    assert az.Timeout.parse("2.5").total == 2.5
    assert az.Timeout.parse({"read": 3}).read == 3
    with pytest.raises(az.ConfigurationError, match="unknown timeout fields"):
        az.Timeout.parse({"socket": 1})
    with pytest.raises(az.ConfigurationError, match="positive"):
        az.Timeout(total=-1)
    with pytest.raises(az.ConfigurationError, match="number of seconds"):
        az.Timeout.parse("soon")


def test_backoff_formula_matches_docstring() -> None:
    policy = az.RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.25)
    assert [policy.backoff(n, rand=0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(1, rand=1.0) == pytest.approx(0.375)
    assert az.RetryPolicy.none().max_retries == 0
    with pytest.raises(az.ConfigurationError, match="max_retries"):
        az.RetryPolicy(max_retries=-1)
    with pytest.raises(az.ConfigurationError, match="jitter"):
        az.RetryPolicy(jitter=2)


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": "tomorrow-ish"}) is None
    assert parse_retry_after({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert parse_retry_after({}) is None


def _answer(status: int, headers: dict[str, str] | None = None) -> az.APIStatusError:
    headers = headers or {}
    return az.APIStatusError("x", status_code=status, headers=headers, retry_after=parse_retry_after(headers))


def test_next_delay_honours_retry_after_and_refuses_one_too_long() -> None:
    policy = az.RetryPolicy(max_retry_after=10)
    assert policy.next_delay(0, _answer(429, {"retry-after": "4"})) == 4.0
    assert policy.next_delay(0, _answer(503, {"retry-after": "9"})) == 9.0
    assert policy.next_delay(0, _answer(429, {"retry-after": "11"})) is None  # fails at once with the value


def test_next_delay_gives_up_on_what_is_not_retryable() -> None:
    policy = az.RetryPolicy(max_retries=2, jitter=0)
    assert policy.next_delay(0, _answer(500)) == 0.5
    assert policy.next_delay(1, _answer(500)) == 1.0
    assert policy.next_delay(2, _answer(500)) is None  # max_retries used
    for status in (400, 401, 403, 404, 413, 422, 424):
        assert policy.next_delay(0, _answer(status)) is None
    assert policy.next_delay(0, az.APIConnectionError("reset")) == 0.5
    assert policy.next_delay(0, az.ResponseTooLargeError("big")) is None
    tls = az.APIConnectionError("TLS verification failed")
    tls.retryable = False
    assert policy.next_delay(0, tls) is None
    assert az.RetryPolicy(retry_connection_errors=False).next_delay(0, az.APIConnectionError("x")) is None
    assert policy.next_delay(0, az.ConfigurationError("bad")) is None
    assert policy.next_delay(0, _answer(500), remaining=0.4) is None  # the wait would outlast the total timeout
    assert policy.next_delay(0, _answer(500), remaining=0.6) == 0.5


def test_backoff_never_overflows() -> None:
    policy = az.RetryPolicy(max_retries=10_000)
    assert policy.backoff(1025, rand=0.0) == policy.max_delay
    assert policy.backoff(10**9, rand=0.0) == policy.max_delay
    assert policy.next_delay(5000, _answer(503)) is not None


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x-ms-retry-after-ms"]), st.text()))
def test_retry_after_parsing_never_raises_and_policy_never_exceeds_cap(headers: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = parse_retry_after(headers)
    assert value is None or value >= 0
    policy = az.RetryPolicy(max_retry_after=60)
    delay = policy.next_delay(0, _answer(429, headers))
    assert delay is None or 0 <= delay <= 60
    assert (delay is None) == (value is not None and value > 60)
