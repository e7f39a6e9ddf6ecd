"""The endpoint emulator: a real aiohttp server on loopback that speaks Azure ML's online endpoint protocols."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, NoReturn

import attrs
import orjson
from aiohttp import web

from azml_client.testing._faults import (
    CUT_STREAM,
    DELAY,
    DROP,
    HANG,
    MALFORMED,
    RANDOM_FAULT_KINDS,
    SLOW,
    STATUS,
    TRUNCATE,
    Fault,
    error_body,
)
from azml_client.testing._payloads import (
    AUTO,
    DEPLOYMENTS,
    OPTIONAL_KEYS,
    SHAPES,
    PayloadError,
    Plan,
    chat_plan,
    completion_plan,
    dedicated_answer,
    fitting_schemas,
    render_answer,
    render_chunks,
    resolve_deployment,
)
from azml_client.testing._pushback import (
    ADMITTED,
    FULL,
    LATENCY_DISTRIBUTIONS,
    Capacity,
    Quota,
    QuotaDecision,
    estimate_tokens,
    per_window,
)

DEFAULT_RECORD_LIMIT: Final = 10_000
DEPLOYMENT_HEADER: Final = "azureml-model-deployment"
REQUEST_ID_HEADER: Final = "x-request-id"
REMAINING_REQUESTS_HEADER: Final = "x-ratelimit-remaining-requests"
REMAINING_TOKENS_HEADER: Final = "x-ratelimit-remaining-tokens"
#: The body of a managed endpoint's 429 when its processing slots and queue are full.
TOO_MANY_PENDING_BODY: Final = b'{"error":{"code":"TooManyRequests","message":"Too many pending requests"}}'
SSE_LINE_ENDINGS: Final = ("\n", "\r\n", "\r")
SCORE_PATH: Final = "/score"
COMPLETION_PATHS: Final = frozenset({"/v1/completions", "/completions"})
CHAT_PATHS: Final = frozenset({"/v1/chat/completions", "/chat/completions", "/models/chat/completions"})

# The backstop for closing: handlers still running after this many seconds are cancelled by aiohttp.
_SHUTDOWN_TIMEOUT: Final = 1.0
# Slow faults write about this many pieces a second.
_SLOW_WRITES_PER_SECOND: Final = 50
_ENDLESS_PIECE: Final = b"endless " * 16
_ENDLESS_PAUSE: Final = 0.005
_TRUNCATED_BODY: Final = b'[{"0": "echo: this body was cut sho'
_JSON: Final = "application/json"
_ROUTES: Final = ", ".join(["POST /score", *sorted(COMPLETION_PATHS), *sorted(CHAT_PATHS)])
# With remaining_header_noise, each x-ratelimit-remaining-* header reads -1 with this probability.
_NOISE_RATE: Final = 0.1


class _NotJson:
    """The parsed body of a request whose body is not JSON."""


_NOT_JSON: Final = _NotJson()


@attrs.frozen
class RecordedRequest:
    """One request the emulator received, recorded before it was answered.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query.
        query: the raw query string ("" when none).
        headers: the request headers, with lower-case names.
        body: the raw body.
        json: the parsed body, or None when it is not JSON.
        deployment: the ``azureml-model-deployment`` header, or None.
        started: when the request arrived, in :func:`time.monotonic` seconds.
        fault: the fault injected into this request's answer, or None.
        latency: the seconds this request is processed for (``latency``, or its draw from
            ``latency_distribution``), not counting a wait in the queue or a delay fault.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    deployment: str | None
    started: float
    fault: Fault | None = None
    latency: float = 0.0


@attrs.frozen
class _Stream:
    """A streaming answer: its headers and its encoded SSE events (the leading comment first)."""

    headers: dict[str, str]
    comment: bytes
    events: list[bytes]


def _json_response(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=body, headers=headers, content_type=_JSON)


def _error(status: int, message: str, headers: dict[str, str]) -> web.Response:
    return _json_response(status, error_body(status, message), headers)


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp cannot write this to the aborted transport and just ends the connection.
    return web.Response(status=500)


async def _forever() -> NoReturn:
    # Never answers: the task is cancelled when the client disconnects or the emulator closes.
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")


def _close(request: web.BaseRequest) -> None:
    # close(), not abort(): the bytes already written must reach the client before the connection ends.
    transport = request.transport
    if transport is not None:
        transport.close()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: object, *, zero: bool) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
    )


def _pushback_models(
    *,
    capacity: int | None,
    queue: int | None,
    request_timeout: float,
    capacity_retry_after: float | None,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    quota_window: float,
    remaining_header_noise: bool,
) -> tuple[Capacity | None, Quota | None]:
    """Check the push-back arguments of :class:`MockEndpoint` and build its capacity and quota models."""
    if capacity is not None and not (_is_int(capacity) and capacity >= 1):
        raise ValueError(f"capacity must be an integer >= 1 or None, got {capacity!r}")
    if queue is not None and not (_is_int(queue) and queue >= 0):
        raise ValueError(f"queue must be an integer >= 0 or None, got {queue!r}")
    if not _is_seconds(request_timeout, zero=False):
        raise ValueError(f"request_timeout must be a positive number of seconds, got {request_timeout!r}")
    if capacity_retry_after is not None and not _is_seconds(capacity_retry_after, zero=True):
        raise ValueError(f"capacity_retry_after must be a number of seconds >= 0 or None, got {capacity_retry_after!r}")
    if capacity is None and (queue is not None or capacity_retry_after is not None):
        given = "queue" if queue is not None else "capacity_retry_after"
        raise ValueError(f"{given} needs capacity (the requests processed at once, --capacity)")
    for name, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
        if value is not None and not (_is_int(value) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
    if not _is_seconds(quota_window, zero=False):
        raise ValueError(f"quota_window must be a positive number of seconds, got {quota_window!r}")
    if not isinstance(remaining_header_noise, bool):
        raise ValueError(f"remaining_header_noise must be True or False, got {remaining_header_noise!r}")
    quota = None
    if requests_per_minute is not None or tokens_per_minute is not None:
        limits: list[int | None] = []
        for name, flag, unit, value in (
            ("requests_per_minute", "--rpm", "request", requests_per_minute),
            ("tokens_per_minute", "--tpm", "token", tokens_per_minute),
        ):
            if value is None:
                limits.append(None)
                continue
            limit = per_window(value, quota_window)
            if limit < 1:
                raise ValueError(
                    f"{name}={value} ({flag}) over a quota_window of {quota_window:g} s (--quota-window) allows less "
                    f"than one {unit} per window: raise {name} or quota_window"
                )
            limits.append(limit)
        quota = Quota(limits[0], limits[1], float(quota_window))
    elif remaining_header_noise:
        raise ValueError(
            "remaining_header_noise (--remaining-header-noise) needs a quota: requests_per_minute (--rpm) or "
            "tokens_per_minute (--tpm)"
        )
    slots = None
    if capacity is not None:
        slots = Capacity(capacity, capacity if queue is None else queue, float(request_timeout))
    return slots, quota


class MockEndpoint:
    """A local emulator of Azure ML online endpoints: a real aiohttp server on 127.0.0.1.

    Routes (any other path answers 404 JSON, any method but POST 405):

    - ``POST /score``: a dedicated deployment. The ``azureml-model-deployment`` header picks the request
      schema: ``gpt2`` (alias ``oss``), ``hf``, ``bart`` (a summarization model: ``{"inputs": [...],
      "parameters": ..., "options": ...}`` answered with ``[{"summary_text": ...}]``), ``dolly``, ``openai``
      (alias ``llama``), ``openai-chat`` (alias ``llama-chat``), ``mistral-chat``. A name that starts with one
      of those and a dash (``llama-blue``, ``dolly-green``: blue/green deployments) is served by it;
      ``deployments`` adds names of your own. Without the header, ``default_deployment`` serves the request
      (``gpt2``; ``"auto"`` picks the schema from each body's shape). An unknown name answers 404. A body
      that does not fit the schema answers ``schema_error_status``, and the message says what was expected,
      which schemas the body does fit and how to pick one.
    - ``POST /v1/completions``, ``/completions``: serverless completions (OpenAI-compatible).
    - ``POST /v1/chat/completions``, ``/chat/completions``, ``/models/chat/completions``: serverless chat,
      with ``tools``, ``stream`` (SSE) and ``response_format``: ``{"type": "json_object"}`` answers a JSON
      object whose keys are the names quoted in the last user message (when the conversation says "JSON", as
      OpenAI requires; else echo text), ``{"type": "json_schema", "json_schema": {"name": ..., "schema":
      ...}}`` a deterministic instance of the schema (required properties, strings ``"x"``, integers 3,
      numbers 3.0, booleans true, enums' first value, arrays of one item, ``$ref`` followed). JSON answers
      are never cut by ``stop`` or ``max_tokens``.

    The emulator is not a language model: the generated text is deterministic, ``echo_text(prompt)``
    (``"echo: " + prompt``), shortened by ``stop`` and ``max_tokens`` / ``max_new_tokens``.

    Proxies: the client follows ``HTTP_PROXY`` / ``HTTPS_PROXY`` as urllib does, loopback included, so in
    an environment that sets them, keep the emulator's traffic direct with ``NO_PROXY=127.0.0.1,localhost``
    (or the client's ``proxy=False``: ``az.LLM(ep.url, proxy=False)``).

    Faults: :meth:`enqueue` queues faults that the next requests take in order (any path); when the queue
    is empty and ``fault_rate`` > 0, each request gets a random fault from ``fault_kinds`` with that
    probability, drawn from a ``random.Random(seed)``, so the same seed and the same request order give the
    same faults. Faults come before the key check.

    Proxies: clients honour ``HTTP_PROXY`` for loopback hosts too, so where the environment sets a proxy,
    keep the emulator's traffic direct with ``NO_PROXY=127.0.0.1,localhost`` or ``proxy=False`` on the client.

    Push-back (off unless asked for; on every route, for requests that pass the key check; faults are served
    inside it, a hung one holding its slot):

    - ``capacity``: a managed online deployment. At most ``capacity`` requests are processed at once (each
      for its latency); up to ``queue`` more wait in arrival order, their answer later by the wait; a request
      arriving when ``capacity + queue`` are inside is answered ``429`` ``{"error": {"code":
      "TooManyRequests", "message": "Too many pending requests"}}`` at once (no ``Retry-After``, as Azure,
      unless ``capacity_retry_after`` is set), and one still queued ``request_timeout`` seconds after it
      arrived is answered ``408``. See :attr:`throttled_count`, :attr:`timeout_count`,
      :attr:`max_processing`, :attr:`max_queued`.
    - ``requests_per_minute`` / ``tokens_per_minute``: a serverless quota, enforced as Azure OpenAI does over
      short windows: the per-minute numbers are scaled to ``quota_window`` seconds (rounded down: 600 a
      minute over 1 s is 10 per window), and each admitted request counts for ``quota_window`` seconds from
      its arrival (a sliding window). A request is charged its estimate at arrival: its prompt's characters
      / 4, rounded up, plus ``max_tokens`` (or ``max_new_tokens``; 16 when absent) per answer asked for;
      the answer's ``usage`` still reports the echo answer's own counts. Over quota: ``429`` with
      ``retry-after-ms`` (until the window has room), ``Retry-After`` (those seconds rounded up) and
      ``{"error": {"code": "429", "message": "Requests to the ... Please retry after N seconds."}}``;
      refused requests are not counted. A request estimated above a whole window's tokens answers 400.
      Every answer carries ``x-ratelimit-remaining-requests`` / ``x-ratelimit-remaining-tokens`` (for the
      limits set) for the current window: what is left after this request, or, on a 429, now. The quota is
      checked first, so a request it admits is counted even when the capacity then refuses it.

    Args:
        api_key: when set, every request needs ``Authorization: Bearer <key>`` with a key in
            :attr:`accepted_keys`, else 401 JSON. Without ``api_key``, keys are checked only once
            :attr:`accepted_keys` holds some.
        host: the interface to listen on.
        port: the port; 0 picks a free one (see :attr:`url`).
        latency: seconds slept before each answer (the median when ``latency_distribution`` is lognormal).
        latency_distribution: ``"fixed"`` (every request takes ``latency``) or ``"lognormal"`` (each takes a
            draw with median ``latency`` and shape ``latency_sigma``, from a random generator seeded by
            ``seed``: the same seed and request order give the same latencies; see
            :attr:`RecordedRequest.latency`). Lognormal needs ``latency`` > 0.
        latency_sigma: the sigma of the lognormal latency (>= 0; default 0.5: the slowest 1% take about 3.2x
            the median).
        default_deployment: the deployment of ``/score`` requests without the deployment header, or
            ``"auto"``: the first schema that reads the body, in the order gpt2, hf, bart, openai, dolly,
            openai-chat (so ``{"inputs": [...]}`` is hf, and bart only with ``options``).
        deployments: more deployment names and the deployment each plays, e.g. ``{"my-llama": "openai"}``.
        fault_rate: probability of a random fault per request, 0 to 1.
        fault_kinds: the random faults to pick from: ``"429"`` (with ``retry-after-ms`` 1..20), ``"503"``,
            ``"500"`` (or any other 4xx/5xx status as a string), ``"drop"``, ``"truncate"``, ``"malformed"``.
        seed: the seed of the random faults, of the lognormal latencies and of the header noise (each has a
            generator of its own, so turning one on never changes the others' draws).
        sse_line_ending: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"``, used for every line end of a stream.
        record_limit: how many :class:`RecordedRequest` to keep (the newest); None keeps all.
        schema_error_status: the status of a dedicated request whose body does not fit the schema
            (e.g. 424, as when a real model container fails on it).
        ssl_context: serve HTTPS with this server-side context (its certificate chain loaded); :attr:`url` is
            then ``https://...``. None (the default) serves plain HTTP.
        capacity: the requests processed at once (>= 1), or None (default): no limit, no queue.
        queue: how many more wait for a slot (>= 0; default ``capacity``, as Azure queues as many requests as
            it processes; 0: refuse at once when every slot is busy). Needs ``capacity``.
        request_timeout: seconds a request may wait in the queue before it is answered 408 (> 0, default 5.0,
            Azure's ``request_timeout_ms`` default); processing itself is never cut.
        capacity_retry_after: seconds sent in the capacity 429's ``Retry-After`` (rounded up) and
            ``retry-after-ms``; None (default) sends neither, as real managed endpoints. Needs ``capacity``.
        requests_per_minute: the serverless request quota (>= 1), or None: no request limit.
        tokens_per_minute: the serverless token quota (>= 1), or None: no token limit.
        quota_window: the window's length in seconds (> 0, default 1.0); each quota scaled to it must allow
            at least one request / token.
        remaining_header_noise: report ``-1`` in about one ``x-ratelimit-remaining-*`` header in ten (drawn
            from the seeded generator), as real endpoints have been seen to: they are hints, never a promise.
            Needs a quota. Off by default.

    Raises:
        ValueError: an argument is out of range or unknown.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        default_deployment: str = "gpt2",
        deployments: Mapping[str, str] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = ("429", "503", "drop", "truncate"),
        seed: int = 0,
        sse_line_ending: str = "\n",
        record_limit: int | None = DEFAULT_RECORD_LIMIT,
        schema_error_status: int = 400,
        ssl_context: ssl.SSLContext | None = None,
        latency_distribution: str = "fixed",
        latency_sigma: float = 0.5,
        capacity: int | None = None,
        queue: int | None = None,
        request_timeout: float = 5.0,
        capacity_retry_after: float | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        quota_window: float = 1.0,
        remaining_header_noise: bool = False,
    ) -> None:
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key must not be empty (use None to turn the key check off)")
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        self._capacity, self._quota = _pushback_models(
            capacity=capacity,
            queue=queue,
            request_timeout=request_timeout,
            capacity_retry_after=capacity_retry_after,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            quota_window=quota_window,
            remaining_header_noise=remaining_header_noise,
        )
        if latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise ValueError(
                f"latency_distribution must be one of {', '.join(LATENCY_DISTRIBUTIONS)}, got {latency_distribution!r}"
            )
        if not (math.isfinite(latency_sigma) and latency_sigma >= 0):
            raise ValueError(f"latency_sigma must be a finite number >= 0, got {latency_sigma}")
        if latency_distribution == "lognormal" and not (math.isfinite(latency) and latency > 0):
            raise ValueError(f"a lognormal latency needs latency (its median, --latency) > 0, got {latency}")
        extra: dict[str, str] = {}
        for name, plays in (deployments or {}).items():
            if not isinstance(name, str) or not name.strip() or name == AUTO:
                raise ValueError(f"deployment names must be non-empty strings other than {AUTO!r}, got {name!r}")
            if plays not in DEPLOYMENTS:
                raise ValueError(
                    f"deployment {name!r} plays {plays!r}, which is not a deployment; known: {', '.join(DEPLOYMENTS)}"
                )
            extra[name] = DEPLOYMENTS[plays]
        if default_deployment != AUTO and resolve_deployment(default_deployment, extra) is None:
            raise ValueError(
                f"unknown default_deployment {default_deployment!r}; known: {', '.join(DEPLOYMENTS)}, or {AUTO!r}"
            )
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        if isinstance(fault_kinds, str):
            raise ValueError("fault_kinds must be a sequence of names, not one string")
        for kind in fault_kinds:
            if kind not in RANDOM_FAULT_KINDS and not (kind.isdigit() and 400 <= int(kind) <= 599):
                raise ValueError(
                    f"unknown fault kind {kind!r}; expected a 4xx/5xx status or one of {RANDOM_FAULT_KINDS}"
                )
        if fault_rate > 0 and not fault_kinds:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        if sse_line_ending not in SSE_LINE_ENDINGS:
            raise ValueError(f"sse_line_ending must be one of {SSE_LINE_ENDINGS!r}, got {sse_line_ending!r}")
        if record_limit is not None and record_limit < 0:
            raise ValueError(f"record_limit must be >= 0 or None, got {record_limit}")
        if not 400 <= schema_error_status <= 599:
            raise ValueError(f"schema_error_status must be a 4xx or 5xx status, got {schema_error_status}")

        self.accepted_keys: set[str] = set() if api_key is None else {api_key}
        """The keys (or tokens) accepted in ``Authorization: Bearer``; tests may change it at run time."""
        self._check_keys = api_key is not None
        self._host = host
        self._port = port
        self._latency = latency
        self._default_deployment = default_deployment
        self._deployments = extra
        self._fault_rate = fault_rate
        self._fault_kinds = tuple(fault_kinds)
        self._seed = seed
        self._rng = random.Random(seed)
        self._lognormal = latency_distribution == "lognormal"
        self._latency_mu = math.log(latency) if self._lognormal else 0.0
        self._latency_sigma = latency_sigma
        self._latency_rng = random.Random(f"{seed}/latency")
        self._capacity_retry_after = capacity_retry_after
        self._header_noise = remaining_header_noise
        self._noise_rng = random.Random(f"{seed}/noise")
        self._line_end = sse_line_ending.encode()
        self._schema_error_status = schema_error_status
        self._ssl_context = ssl_context
        self._records: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._queue: deque[Fault] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.ServerRunner | None = None
        self._bound_port: int | None = None
        self._closing = False
        self._request_count = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._processing = 0
        self._max_processing = 0
        self._throttled_count = 0
        self._quota_throttled_count = 0
        self._timeout_count = 0
        self._fault_count = 0
        self._call_ids: Iterator[int] = itertools.count(1)

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; :attr:`url` is known afterwards.

        Raises:
            RuntimeError: the emulator was already started.
            OSError: the port cannot be bound.
        """
        if self._runner is not None or self._closing:
            raise RuntimeError("this MockEndpoint was already started")
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop the server: requests still in progress (hung ones included) end at once. Idempotent."""
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_TIMEOUT)
        await runner.cleanup()

    async def __aenter__(self) -> MockEndpoint:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- what tests read ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (the free port picked when ``port=0``).

        Raises:
            RuntimeError: the emulator is not started.
        """
        if self._bound_port is None:
            raise RuntimeError("the MockEndpoint is not started: use `async with` or `await ep.start()`")
        return self._bound_port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT`` (``https`` with ``ssl_context``), without a trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def score_url(self) -> str:
        """The dedicated scoring URL, :attr:`url` + ``/score``."""
        return self.url + SCORE_PATH

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first (at most ``record_limit``)."""
        return list(self._records)

    @property
    def request_count(self) -> int:
        """How many requests arrived, faulted ones included (not bounded by ``record_limit``)."""
        return self._request_count

    @property
    def in_flight(self) -> int:
        """How many requests are being handled now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The highest number of requests handled at once."""
        return self._max_in_flight

    @property
    def fault_count(self) -> int:
        """How many faults were served (queued and random)."""
        return self._fault_count

    @property
    def processing(self) -> int:
        """How many requests are being processed now: past the key check, the quota and the capacity."""
        return self._processing

    @property
    def max_processing(self) -> int:
        """The highest number of requests processed at once (at most ``capacity``).

        :attr:`max_in_flight` also counts the requests waiting in the queue and those being refused.
        """
        return self._max_processing

    @property
    def queued(self) -> int:
        """How many requests wait in the capacity's queue now (0 without ``capacity``)."""
        return 0 if self._capacity is None else self._capacity.waiting

    @property
    def max_queued(self) -> int:
        """The highest number of requests that waited in the capacity's queue at once."""
        return 0 if self._capacity is None else self._capacity.max_waiting

    @property
    def throttled_count(self) -> int:
        """How many 429s the push-back models answered: capacity full and quota used up (never faults)."""
        return self._throttled_count

    @property
    def quota_throttled_count(self) -> int:
        """How many of :attr:`throttled_count` the quota answered (the rest: ``Too many pending requests``)."""
        return self._quota_throttled_count

    @property
    def timeout_count(self) -> int:
        """How many requests were answered 408 after ``request_timeout`` seconds in the queue."""
        return self._timeout_count

    @property
    def pushback_summary(self) -> str | None:
        """One line saying which push-back models are on (capacity, quota, lognormal latency), or None."""
        parts = []
        capacity = self._capacity
        if capacity is not None:
            after = "" if self._capacity_retry_after is None else f" with Retry-After {self._capacity_retry_after:g} s"
            parts.append(
                f"{capacity.slots} processed at once + {capacity.queue} queued (429{after} beyond, 408 after "
                f"{capacity.timeout:g} s in the queue)"
            )
        quota = self._quota
        if quota is not None:
            limits = [
                f"{limit} {unit}"
                for limit, unit in ((quota.requests, "requests"), (quota.tokens, "tokens"))
                if limit is not None
            ]
            parts.append(f"quota {' and '.join(limits)} per {quota.window:g} s sliding window")
        if self._lognormal:
            parts.append(f"lognormal latency, median {self._latency:g} s, sigma {self._latency_sigma:g}")
        return "; ".join(parts) or None

    def enqueue(self, *faults: Fault) -> None:
        """Queue faults: each next request, on any path, takes the oldest one (before any random fault).

        Raises:
            TypeError: an argument is not a :class:`Fault`.
        """
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        self._queue.extend(faults)

    def reset(self) -> None:
        """Clear the counters, records, fault queue and quota window; restart the random draws from the seed.

        The random draws are the faults, the lognormal latencies and the header noise.

        Requests in progress still count in :attr:`in_flight`, :attr:`processing` and :attr:`queued`, which
        :attr:`max_in_flight`, :attr:`max_processing` and :attr:`max_queued` restart from.
        """
        self._records.clear()
        self._queue.clear()
        self._request_count = 0
        self._fault_count = 0
        self._throttled_count = 0
        self._quota_throttled_count = 0
        self._timeout_count = 0
        self._max_in_flight = self._in_flight
        self._max_processing = self._processing
        if self._capacity is not None:
            self._capacity.max_waiting = self._capacity.waiting
        self._rng.seed(self._seed)
        self._latency_rng.seed(f"{self._seed}/latency")
        self._noise_rng.seed(f"{self._seed}/noise")
        if self._quota is not None:
            self._quota.clear()
        self._call_ids = itertools.count(1)

    # --- serving --------------------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._request_count += 1
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._serve(request, self._request_count)
        finally:
            self._in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    def _take_fault(self) -> Fault | None:
        if self._queue:
            fault: Fault | None = self._queue.popleft()
        elif self._fault_rate and self._rng.random() < self._fault_rate:
            fault = self._random_fault(self._rng.choice(self._fault_kinds))
        else:
            return None
        self._fault_count += 1
        return fault

    def _random_fault(self, kind: str) -> Fault:
        if kind == "429":
            return Fault.status(429, headers={"retry-after-ms": str(self._rng.randint(1, 20))})
        if kind == "drop":
            return Fault.drop()
        if kind == "truncate":
            return Fault.truncate()
        if kind == "malformed":
            return Fault.malformed()
        return Fault.status(int(kind))

    async def _serve(self, request: web.BaseRequest, seq: int) -> web.StreamResponse:
        started = time.monotonic()
        fault = self._take_fault()  # in arrival order, before the body is read
        latency = self._draw_latency()  # in arrival order too
        body = await request.read()
        headers = request.headers
        request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = _NOT_JSON
        if self._records.maxlen != 0:
            self._records.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    headers={name.lower(): value for name, value in headers.items()},
                    body=body,
                    json=None if parsed is _NOT_JSON else parsed,
                    deployment=headers.get(DEPLOYMENT_HEADER),
                    started=started,
                    fault=fault,
                    latency=latency,
                )
            )
        if self._closing:
            return _drop(request)
        extra: dict[str, str] = {}
        if not self._authorized(headers):
            # Refused at the door (401, after the latency as ever): never counted by the capacity or the quota.
            return await self._answer_after(request, parsed, request_id, seq, fault, latency, extra)
        if self._quota is not None:
            refusal = self._check_quota(request, parsed, request_id, extra)
            if refusal is not None:
                return refusal
        capacity = self._capacity
        if capacity is None:
            return await self._process(request, parsed, request_id, seq, fault, latency, extra)
        outcome = await capacity.enter()
        if outcome != ADMITTED:
            return self._capacity_refusal(outcome == FULL, request_id, extra)
        try:
            return await self._process(request, parsed, request_id, seq, fault, latency, extra)
        finally:
            capacity.leave()

    async def _process(
        self,
        request: web.BaseRequest,
        parsed: Any,
        request_id: str,
        seq: int,
        fault: Fault | None,
        latency: float,
        extra: dict[str, str],
    ) -> web.StreamResponse:
        self._processing += 1
        self._max_processing = max(self._max_processing, self._processing)
        try:
            return await self._answer_after(request, parsed, request_id, seq, fault, latency, extra)
        finally:
            self._processing -= 1

    async def _answer_after(
        self,
        request: web.BaseRequest,
        parsed: Any,
        request_id: str,
        seq: int,
        fault: Fault | None,
        latency: float,
        extra: dict[str, str],
    ) -> web.StreamResponse:
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            if fault.kind == DELAY:
                await asyncio.sleep(fault.seconds)
            elif fault.kind not in (SLOW, CUT_STREAM):
                return await self._serve_fault(request, fault, request_id, extra)
        answer = self._answer(request, parsed, request_id, seq)
        answer.headers.update(extra)
        if fault is not None and fault.kind == SLOW:
            return await self._write_slowly(request, answer, fault.bytes_per_second)
        if fault is not None and fault.kind == CUT_STREAM:
            if isinstance(answer, _Stream):
                return await self._write_stream(request, answer, fault.after_events)
            return _drop(request)
        if isinstance(answer, _Stream):
            return await self._write_stream(request, answer)
        return answer

    # --- push-back ------------------------------------------------------------------------------------------

    def _draw_latency(self) -> float:
        if self._lognormal:
            return self._latency_rng.lognormvariate(self._latency_mu, self._latency_sigma)
        return self._latency

    def _remaining_headers(self, decision: QuotaDecision) -> dict[str, str]:
        headers = {}
        for name, value in (
            (REMAINING_REQUESTS_HEADER, decision.remaining_requests),
            (REMAINING_TOKENS_HEADER, decision.remaining_tokens),
        ):
            if value is not None:
                noisy = self._header_noise and self._noise_rng.random() < _NOISE_RATE
                headers[name] = "-1" if noisy else str(value)
        return headers

    def _check_quota(
        self, request: web.BaseRequest, parsed: Any, request_id: str, extra: dict[str, str]
    ) -> web.Response | None:
        """Count the request in the quota's window; fill ``extra`` with its headers; the 429 when it is over."""
        quota = self._quota
        assert quota is not None
        tokens = estimate_tokens(None if parsed is _NOT_JSON else parsed)
        decision = quota.admit(time.monotonic(), tokens)
        extra.update(self._remaining_headers(decision))
        headers = {REQUEST_ID_HEADER: request_id, **extra}
        if decision.admitted:
            return None
        if math.isinf(decision.wait):
            message = (
                f"This request is estimated at {tokens} tokens (its prompt's characters / 4 plus max_tokens), more "
                f"than the {quota.tokens} tokens a {quota.window:g} s window allows: lower max_tokens or raise the "
                "emulator's tokens_per_minute (--tpm) or quota_window (--quota-window)"
            )
            return _bad_request(message, headers)
        self._throttled_count += 1
        self._quota_throttled_count += 1
        wait_ms = max(1, math.ceil(decision.wait * 1000))
        seconds = math.ceil(wait_ms / 1000)
        headers["retry-after-ms"] = str(wait_ms)
        headers["Retry-After"] = str(seconds)
        kind = "call" if decision.over == "requests" else "token"
        limit = quota.requests if decision.over == "requests" else quota.tokens
        unit = "requests" if decision.over == "requests" else "tokens"
        message = (
            f"Requests to the {_operation(request.path)} Operation under the azml emulator have exceeded {kind} rate "
            f"limit of {limit} {unit} per {quota.window:g} s window. Please retry after {seconds} "
            f"second{'' if seconds == 1 else 's'}."
        )
        return _json_response(429, orjson.dumps({"error": {"code": "429", "message": message}}), headers)

    def _capacity_refusal(self, full: bool, request_id: str, extra: dict[str, str]) -> web.Response:
        headers = {REQUEST_ID_HEADER: request_id, **extra}
        if not full:
            self._timeout_count += 1
            capacity = self._capacity
            assert capacity is not None
            message = (
                f"The request waited {capacity.timeout:g} s in the queue (request_timeout) without being processed: "
                f"all {capacity.slots} of the deployment's slots stayed busy"
            )
            return _error(408, message, headers)
        self._throttled_count += 1
        retry_after = self._capacity_retry_after
        if retry_after is not None:
            headers["retry-after-ms"] = str(math.ceil(retry_after * 1000))
            headers["Retry-After"] = str(math.ceil(retry_after))
        return _json_response(429, TOO_MANY_PENDING_BODY, headers)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        if not self._check_keys and not self.accepted_keys:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.accepted_keys

    def _answer(self, request: web.BaseRequest, parsed: Any, request_id: str, seq: int) -> web.Response | _Stream:
        headers = {REQUEST_ID_HEADER: request_id}
        if not self._authorized(request.headers):
            headers["www-authenticate"] = "Bearer"
            missing = "authorization" not in request.headers
            message = (
                "Missing the Authorization header: send 'Authorization: Bearer <key>'"
                if missing
                else "Invalid key or token in the Authorization header"
            )
            return _json_response(401, orjson.dumps({"error": {"code": "Unauthorized", "message": message}}), headers)
        path = request.path
        if path == SCORE_PATH:
            chat = None
        elif path in COMPLETION_PATHS:
            chat = False
        elif path in CHAT_PATHS:
            chat = True
        else:
            return _error(404, f"No route for {request.method} {path[:100]}; routes: {_ROUTES}", headers)
        if request.method != "POST":
            headers["allow"] = "POST"
            return _error(405, f"{path} only accepts POST, got {request.method}", headers)
        if chat is None:
            return self._answer_dedicated(request, parsed, headers)
        if parsed is _NOT_JSON:
            return _bad_request("the request body is not valid JSON", headers)
        try:
            plan = chat_plan(parsed, self._call_ids) if chat else completion_plan(parsed)
        except PayloadError as exc:
            return _bad_request(str(exc), headers)
        response_id = f"{'chatcmpl' if chat else 'cmpl'}-emu{seq:08d}"
        created = int(time.time())
        if plan.stream:
            return self._stream(plan, response_id, created, headers)
        return _json_response(200, orjson.dumps(render_answer(plan, response_id, created)), headers)

    def _answer_dedicated(self, request: web.BaseRequest, parsed: Any, headers: dict[str, str]) -> web.Response:
        named = request.headers.get(DEPLOYMENT_HEADER)
        name = named or self._default_deployment
        body = None if parsed is _NOT_JSON else parsed
        if name == AUTO and named is None:
            return self._answer_by_shape(body, headers)
        schema = resolve_deployment(name, self._deployments)
        if schema is None:
            message = (
                f"No deployment named {name[:100]!r} on this endpoint; deployments: {', '.join(DEPLOYMENTS)}, and "
                f"any of them followed by a dash and a suffix (llama-blue is openai)"
            )
            if self._deployments:
                message += f", and {', '.join(self._deployments)}"
            return _json_response(
                404, orjson.dumps({"error": {"code": "DeploymentNotFound", "message": message}}), headers
            )
        headers[DEPLOYMENT_HEADER] = name
        try:
            if body is None:
                raise PayloadError("the body is not valid JSON")
            answer = dedicated_answer(schema, body)
        except PayloadError as exc:
            return _error(self._schema_error_status, _schema_error(name, schema, named is None, exc, body), headers)
        return _json_response(200, orjson.dumps(answer), headers)

    def _answer_by_shape(self, body: Any, headers: dict[str, str]) -> web.Response:
        fits = [] if body is None else fitting_schemas(body)
        if not fits:
            shapes = "; ".join(f"{schema}: {SHAPES[schema]}" for schema in SHAPES)
            message = (
                "No dedicated schema reads this request (the emulator picks the schema from the body's shape, "
                f"since it runs with default deployment {AUTO!r} and the request names none). Schemas: {shapes}"
            )
            return _error(self._schema_error_status, message, headers)
        headers[DEPLOYMENT_HEADER] = fits[0]
        return _json_response(200, orjson.dumps(dedicated_answer(fits[0], body)), headers)

    def _stream(self, plan: Plan, response_id: str, created: int, headers: dict[str, str]) -> _Stream:
        end = self._line_end
        blank = end + end
        events = [b"data: " + orjson.dumps(chunk) + blank for chunk in render_chunks(plan, response_id, created)]
        events.append(b"data: [DONE]" + blank)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        return _Stream(headers, b": emulator" + end, events)

    # --- writing --------------------------------------------------------------------------------------------

    async def _write_stream(
        self, request: web.BaseRequest, stream: _Stream, after_events: int | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=stream.headers)
        await response.prepare(request)
        await response.write(stream.comment)
        for sent, event in enumerate(stream.events):
            if sent == after_events:
                break
            await response.write(event)
        if after_events is not None:
            # The body never ends properly: the client sees the connection break mid-stream.
            _close(request)
            return response
        await response.write_eof()
        return response

    async def _write_slowly(
        self, request: web.BaseRequest, answer: web.Response | _Stream, rate: float
    ) -> web.StreamResponse:
        step = max(1, int(rate / _SLOW_WRITES_PER_SECOND))
        if isinstance(answer, _Stream):
            response = web.StreamResponse(status=200, headers=answer.headers)
            pieces = [answer.comment, *answer.events]
        else:
            body = answer.body
            assert isinstance(body, bytes)
            headers = {name: value for name, value in answer.headers.items() if name.lower() != "content-length"}
            response = web.StreamResponse(status=answer.status, headers=headers)
            response.content_length = len(body)
            pieces = [body]
        await response.prepare(request)
        for data in pieces:
            for at in range(0, len(data), step):
                piece = data[at : at + step]
                await response.write(piece)
                await asyncio.sleep(len(piece) / rate)
        await response.write_eof()
        return response

    async def _serve_fault(
        self, request: web.BaseRequest, fault: Fault, request_id: str, extra: Mapping[str, str]
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == DROP:
            return _drop(request)
        headers = {REQUEST_ID_HEADER: request_id, **extra}
        if kind == STATUS:
            headers.update(fault.headers)
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = fault.content_type
            return web.Response(status=fault.status_code, body=fault.body, headers=headers)
        if kind == MALFORMED:
            headers["Content-Type"] = fault.content_type
            return web.Response(status=200, body=fault.body, headers=headers)
        if kind == HANG:
            await _forever()
        headers["Content-Type"] = _JSON
        response = web.StreamResponse(status=200, headers=headers)
        if kind == TRUNCATE:
            response.content_length = len(_TRUNCATED_BODY) + 1024
            await response.prepare(request)
            await response.write(_TRUNCATED_BODY)
            _close(request)
            return response
        # ENDLESS: written until the client goes away (its write fails, or aiohttp cancels us) or we close.
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b'[{"0": "')
            while True:
                await response.write(_ENDLESS_PIECE)
                await asyncio.sleep(_ENDLESS_PAUSE)
        return response


def _schema_error(name: str, schema: str, by_default: bool, error: PayloadError, body: Any) -> str:
    """The message of a dedicated request that ``schema`` cannot read: what it expected and how to pick another."""
    labels = [f"{schema} schema"] if schema != name else []
    if by_default:
        labels.append("the default: the request names no deployment")
    label = f" ({'; '.join(labels)})" if labels else ""
    optional = OPTIONAL_KEYS.get(schema, "'parameters' is optional")
    message = f"Deployment {name!r}{label} cannot read the request: {error}. Expected {SHAPES[schema]}; {optional}."
    fits = [] if body is None else fitting_schemas(body)
    target = fits[0] if fits else "NAME"
    if fits:
        message += f" The body fits the {' / '.join(fits)} schema: pass deployment_name={target!r}"
    else:
        message += " For another schema, pass its deployment_name (the azureml-model-deployment header)"
    if by_default:
        message += (
            f", or start the emulator with --deployment {target} (MockEndpoint(default_deployment={target!r}); "
            f"{AUTO!r} picks the schema by the body's shape)"
        )
    return message + "."


def _operation(path: str) -> str:
    """The operation Azure names in a quota 429 for a route."""
    if path in CHAT_PATHS:
        return "ChatCompletions_Create"
    if path in COMPLETION_PATHS:
        return "Completions_Create"
    return "Score"


def _bad_request(message: str, headers: dict[str, str]) -> web.Response:
    return _json_response(400, orjson.dumps({"error": {"code": "BadRequest", "message": message}}), headers)


def run_mock_server(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Run a :class:`MockEndpoint` until Ctrl-C (blocking); ``options`` are its keyword arguments.

    Prints the URL, the routes and whether keys are checked (never a key). ``azml mock-server`` calls this.

    Raises:
        ValueError: an option is out of range (before anything listens).
        OSError: the port cannot be bound.
    """
    endpoint = MockEndpoint(host=host, port=port, **options)

    async def serve() -> None:
        async with endpoint:
            url = endpoint.url
            keys = "on (send 'Authorization: Bearer <key>')" if options.get("api_key") is not None else "off"
            deployment = options.get("default_deployment", "gpt2")
            default = "by the body's shape" if deployment == AUTO else deployment
            print(f"azml mock-server listening on {url}", flush=True)
            print(f"  dedicated:  POST {url}/score (azureml-model-deployment: {', '.join(DEPLOYMENTS)};", flush=True)
            print(f"              or NAME-suffix, e.g. llama-blue; without the header: {default})", flush=True)
            print(f"  serverless: POST {url}/v1/completions, POST {url}/v1/chat/completions", flush=True)
            pushback = endpoint.pushback_summary
            if pushback is not None:
                print(f"  push-back: {pushback}", flush=True)
            print(f"  key check: {keys}. Press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
