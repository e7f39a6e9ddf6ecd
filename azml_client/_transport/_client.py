"""The async transport's front: settings, auth headers, the short retry loop of one call, and stats.

Its rooms: :mod:`._pool` (sessions per event loop; the only code touching aiohttp internals),
:mod:`._limiter` (the in-flight cap shared by every loop and thread), :mod:`._errors` (one mapping of
aiohttp and OS errors), :mod:`._stream` (reading bodies and event streams) and :mod:`._events` (the per-attempt
events given to hooks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import ssl as ssl_module
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

import aiohttp
import attrs
import orjson
from yarl import URL

from azml_client._config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_RETRY_POLICY,
    ApiType,
    OnThrottle,
    RateLimit,
    RetryPolicy,
    Timeout,
    TimeoutLike,
)
from azml_client._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AzureMLError,
    ConfigurationError,
)
from azml_client._transport._auth import (
    DEFAULT_TOKEN_SCOPE,
    CredentialLike,
    TokenProvider,
    check_header_name,
    check_header_value,
)
from azml_client._transport._errors import DEPLOYMENT_HEADER, set_attempts, status_error, transport_error
from azml_client._transport._events import Attempt, AttemptHook, AttemptKind
from azml_client._transport._pool import SessionPool
from azml_client._transport._proxy import ProxySetting, resolve_proxy
from azml_client._transport._response import Response, new_response, request_id_from
from azml_client._transport._stream import EventStream, OpenStream, read_body, read_error_body
from azml_client._transport._throttle import Slot, Throttle, throttle_mode
from azml_client._transport._urls import Route, is_loopback, parse_endpoint_url, route_url
from azml_client._version import __version__

__all__ = ["ClientStats", "EndpointClient"]

logger = logging.getLogger("azml_client")

USER_AGENT: Final = f"azml-client/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
_warned_plain_http: set[str] = set()
_warned_lock = threading.Lock()


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _client_timeout(timeout: Timeout, total: float | None) -> aiohttp.ClientTimeout:
    """The aiohttp timeouts of one attempt that has ``total`` seconds of the call left."""
    return aiohttp.ClientTimeout(total=total, connect=None, sock_connect=timeout.connect, sock_read=timeout.read)


def _with_extra(headers: Mapping[str, str], extra: Mapping[str, str] | None) -> Mapping[str, str]:
    """``headers`` with a call's ``extra`` headers over them, checked; ``headers`` itself when they change nothing.

    A model passes its formatter's Content-Type and Accept with every call and they nearly always equal the
    client's own, so the common case copies no dict and re-checks no value.
    """
    if not extra:
        return headers
    for name, value in extra.items():
        current = headers.get(name)
        if current is None or current != value:
            break
    else:
        return headers
    merged = dict(headers)
    for name, value in extra.items():
        merged[check_header_name(name)] = check_header_value(name, value)
    return merged


def _log_url(url: URL) -> str:
    return str(url.with_query(None))


def _closed_while_in_flight(url: URL, attempts: int) -> APIConnectionError:
    error = APIConnectionError(
        "the EndpointClient was closed while this call was in flight", url=_log_url(url), attempts=attempts
    )
    error.retryable = False
    return error


def _line_timeout(timeout: Timeout, url: URL, attempt: int) -> APITimeoutError:
    return APITimeoutError(
        f"the total timeout of {timeout.total:g} s ran out while the call waited for the client's concurrency limit "
        "(on_throttle='raise' counts that wait; batches use 'wait', whose timeout runs from the first send)",
        url=_log_url(url),
        attempts=attempt - 1,
    )


def _request_id(result: Response | OpenStream) -> str | None:
    return request_id_from(result.response.headers) if isinstance(result, OpenStream) else result.request_id


@attrs.frozen(slots=True)
class ClientStats:
    """A snapshot of an :class:`EndpointClient`, from :meth:`EndpointClient.stats`.

    Attributes:
        in_flight: requests holding an in-flight slot right now (a stream holds one until it is closed).
        waiting: calls waiting for a slot.
        limit: the current adaptive concurrency limit (at most ``max_concurrency``; below 1 while sends are
            paced).
        max_concurrency: the user's upper bound.
        sessions: open aiohttp sessions (one per event loop the client is used on).
        pooled_connections: idle keep-alive connections over all sessions.
        connections_in_use: connections lent to requests right now.
    """

    in_flight: int
    waiting: int
    limit: float
    max_concurrency: int
    sessions: int
    pooled_connections: int
    connections_in_use: int


class EndpointClient:
    """An async client for one Azure ML online endpoint (dedicated ``/score`` or serverless ``/v1/...``).

    It owns at most one aiohttp session per event loop it is used on (created on first use there) and one
    in-flight cap shared by all of them, so ``max_concurrency`` holds across every model built on it, every
    loop and every thread. :meth:`aclose` (or ``async with``) closes every session. Settings left as ``None``
    come from the environment: ``AZUREML_ENDPOINT_URL``, ``AZUREML_ENDPOINT_API_KEY``,
    ``AZUREML_ENDPOINT_API_TYPE``, ``AZUREML_DEPLOYMENT_NAME`` and ``AZUREML_TIMEOUT``.

    Args:
        endpoint_url: the scoring URL; a dedicated URL with no path gets ``/score``; a serverless URL may be
            a full ``.../chat/completions`` / ``.../completions`` URL or the endpoint's base URL.
        api_key: sent as ``Authorization: Bearer <key>``; never shown in a repr, log or error.
        api_type: ``"dedicated"`` (default) or ``"serverless"``; ``"realtime"`` is a deprecated alias.
        deployment_name: sent as ``azureml-model-deployment`` to pin requests to one deployment.
        credential: Entra ID auth instead of a key: an azure-core ``TokenCredential`` /
            ``AsyncTokenCredential``, or a callable returning a token (sync or async).
        credential_scope: the token scope (default ``https://ml.azure.com/.default``).
        timeout: seconds (the total) or a :class:`Timeout`.
        retry: the :class:`RetryPolicy` (default: 2 retries with backoff).
        max_connections: the connection pool's size (per event loop).
        max_concurrency: the most requests in flight through this client at once, over every loop and thread
            (default ``max_connections``); requests beyond it wait for a slot, not for a pooled connection, so
            waiting never eats the connect timeout.
        headers: extra headers sent with every request.
        max_response_size: the largest body read, in bytes (default 64 MiB).
        ssl: ``True`` (verify, the default), ``False`` (no verification), an ``ssl.SSLContext``, or the path of
            a CA bundle to verify against.
        on_attempt: a callable given an :class:`Attempt` for every event of every attempt (sent, answered,
            failed, retry); it runs in the calling task, so keep it quick.
        proxy: ``None`` (default): the proxy of the environment, read once here with urllib's rule:
            ``HTTPS_PROXY`` for an https endpoint, ``HTTP_PROXY`` for an http one (either case), unless
            ``NO_PROXY`` matches the host; loopback hosts too go through it unless ``NO_PROXY`` lists them.
            ``False``: no proxy. ``"http://[user:password@]host:port"``: that proxy for every request, with
            proxy auth from the URL's credentials, which never appear in a repr, log or error.
        propagate_trace: send the W3C ``traceparent`` (and ``tracestate``) of the model call's OpenTelemetry
            span with each request, so that a gateway in front of the endpoint can join the trace (default off;
            needs ``azml-client[otel]`` and a configured tracer provider).

    Raises:
        ConfigurationError: a missing or invalid URL, an unknown api type, a header with CR/LF, both a key
            and a credential, or a proxy URL that is not http(s) or has no host.
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        *,
        api_type: ApiType | str | None = None,
        deployment_name: str | None = None,
        credential: CredentialLike | None = None,
        credential_scope: str = DEFAULT_TOKEN_SCOPE,
        timeout: TimeoutLike | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_concurrency: int | None = None,
        headers: Mapping[str, str] | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        ssl: bool | ssl_module.SSLContext | str = True,
        on_attempt: AttemptHook | None = None,
        proxy: ProxySetting = None,
        rate_limit: RateLimit | None = None,
        on_throttle: OnThrottle | None = None,
        adaptive_concurrency: bool = True,
        propagate_trace: bool = False,
    ) -> None:
        self._api_type = ApiType.parse(api_type if api_type is not None else _env("AZUREML_ENDPOINT_API_TYPE"))
        raw_url = endpoint_url if endpoint_url is not None else _env("AZUREML_ENDPOINT_URL")
        self._url = parse_endpoint_url(raw_url or "", self._api_type)
        key = api_key if api_key is not None else (None if credential is not None else _env("AZUREML_ENDPOINT_API_KEY"))
        if key is not None and credential is not None:
            raise ConfigurationError("pass either api_key or credential, not both")
        if key is not None:
            if not isinstance(key, str) or not key.strip():
                raise ConfigurationError("api_key must be a non-empty str")
            check_header_value("Authorization", key, secret=True)
        self._api_key = key
        self._tokens = TokenProvider(credential, credential_scope) if credential is not None else None
        deployment = deployment_name if deployment_name is not None else _env("AZUREML_DEPLOYMENT_NAME")
        if deployment is not None:
            check_header_value(DEPLOYMENT_HEADER, deployment)
            deployment = deployment or None
        self._deployment = deployment
        self._timeout = Timeout.parse(timeout if timeout is not None else _env("AZUREML_TIMEOUT"))
        self._first_attempt_timeout = _client_timeout(self._timeout, self._timeout.total)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self._retry = retry if retry is not None else DEFAULT_RETRY_POLICY
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be an int >= 1, got {max_connections!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ConfigurationError(f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}")
        self._max_connections = max_connections
        self._max_concurrency = max_concurrency if max_concurrency is not None else max_connections
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise ConfigurationError(f"rate_limit must be an az.RateLimit, got {type(rate_limit).__name__}")
        if on_throttle not in (None, "wait", "raise"):
            raise ConfigurationError(f"on_throttle must be 'wait', 'raise' or None, got {on_throttle!r}")
        self._rate_limit = rate_limit
        self._on_throttle: OnThrottle | None = on_throttle
        self._throttle = Throttle(self._max_concurrency, rate_limit, adaptive=bool(adaptive_concurrency))
        if isinstance(max_response_size, bool) or not isinstance(max_response_size, int) or max_response_size < 1:
            raise ConfigurationError(f"max_response_size must be an int >= 1, got {max_response_size!r}")
        self._max_response_size = max_response_size
        if on_attempt is not None and not callable(on_attempt):
            raise ConfigurationError(f"on_attempt must be a callable, got {type(on_attempt).__name__}")
        self._hooks: tuple[AttemptHook, ...] = () if on_attempt is None else (on_attempt,)
        self._propagate_trace = bool(propagate_trace)
        self._pool = SessionPool(limit=max_connections, ssl_setting=self._ssl_setting(ssl))
        self._close_callbacks: list[Callable[[], object]] = []
        self._proxy = resolve_proxy(proxy, self._url)
        self._proxy_options = None if self._proxy is None else self._proxy.post_options()
        self._proxy_label = None if self._proxy is None else self._proxy.label

        base: dict[str, str] = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if deployment:
            base[DEPLOYMENT_HEADER] = deployment
        for name, value in (headers or {}).items():
            check_header_name(name)
            base[name] = check_header_value(name, value)
        if key is not None:
            base["Authorization"] = f"Bearer {key}"
        if self._proxy is not None:
            base.update(self._proxy.request_headers())
        self._base_headers = base
        self._token_headers: tuple[str, dict[str, str]] | None = None

        self._route_urls: dict[Route | None, URL] = {}
        self._last_url_text: tuple[URL, str] | None = None
        if (key is not None or credential is not None) and self._url.scheme == "http" and not is_loopback(self._url):
            self._warn_plain_http()

    # ------------------------------------------------------------------ properties

    @property
    def endpoint_url(self) -> str:
        """The endpoint URL as the client uses it (``/score`` added to a bare dedicated URL)."""
        return str(self._url)

    @property
    def api_type(self) -> ApiType:
        """Dedicated or serverless."""
        return self._api_type

    @property
    def deployment_name(self) -> str | None:
        """The deployment every request is pinned to, if any."""
        return self._deployment

    @property
    def timeout(self) -> Timeout:
        """The default timeouts of each call."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._retry

    @property
    def max_connections(self) -> int:
        """The size of the connection pool."""
        return self._max_connections

    @property
    def max_concurrency(self) -> int:
        """The most requests in flight through this client at once."""
        return self._max_concurrency

    @property
    def max_response_size(self) -> int:
        """The largest answer body that is read, in bytes."""
        return self._max_response_size

    @property
    def auth_kind(self) -> str:
        """How requests authenticate: ``"key"``, ``"credential"`` or ``"none"``."""
        if self._api_key is not None:
            return "key"
        return "credential" if self._tokens is not None else "none"

    @property
    def proxy(self) -> str | None:
        """The URL of the proxy requests go through (without its credentials), or None for direct connections."""
        return None if self._proxy is None else str(self._proxy.url)

    @property
    def propagate_trace(self) -> bool:
        """Whether model calls send the W3C ``traceparent`` of their span (``propagate_trace=``)."""
        return self._propagate_trace

    def add_attempt_hook(self, hook: AttemptHook) -> None:
        """Deliver every :class:`Attempt` to ``hook`` too, after ``on_attempt`` (once, however often it is added).

        What a layer above the transport uses to watch attempts without replacing the user's hook (the
        OpenTelemetry instrumentation records retries and throttling waits this way).
        """
        if not callable(hook):
            raise ConfigurationError(f"an attempt hook must be a callable, got {type(hook).__name__}")
        if hook not in self._hooks:
            self._hooks = (*self._hooks, hook)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._pool.closed

    def __repr__(self) -> str:
        deployment = f", deployment_name={self._deployment!r}" if self._deployment else ""
        proxy = f", proxy={self.proxy!r}" if self._proxy is not None else ""
        return (
            f"EndpointClient(endpoint_url={str(self._url)!r}, api_type={self._api_type.value!r}"
            f"{deployment}, auth={self.auth_kind!r}{proxy})"
        )

    def url_for(self, route: Route | None = None) -> str:
        """Return the URL a request for ``route`` (``"chat"``, ``"completions"`` or None) goes to.

        Raises:
            ConfigurationError: the URL serves the other route (a chat request to a completions URL...).
        """
        return str(self._route_url(route))

    def _url_text(self, url: URL) -> str:
        """``str(url)``, remembered for the last URL: nearly every call goes to the same one."""
        last = self._last_url_text
        if last is not None and last[0] is url:
            return last[1]
        text = str(url)
        self._last_url_text = (url, text)
        return text

    def _route_url(self, route: Route | None) -> URL:
        url = self._route_urls.get(route)
        if url is None:
            url = self._route_urls[route] = route_url(self._url, self._api_type, route)
        return url

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> EndpointClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every session the client opened; the client cannot be used afterwards (idempotent)."""
        first = not self._pool.closed
        await self._pool.close()
        if first:
            self._run_close_callbacks()

    def close(self) -> None:
        """Close the client from sync code (or a finalizer), without awaiting; the client cannot be used afterwards.

        Sessions are closed as :meth:`discard_sessions` does; prefer ``await client.aclose()`` where you can.
        """
        first = not self._pool.closed
        self._pool.discard(final=True)
        if first:
            self._run_close_callbacks()

    def discard_sessions(self) -> None:
        """Close every session without awaiting, from any thread; the client can still be used afterwards.

        For finalizers and sync code that cannot await :meth:`aclose`: a session on a closed loop has its
        sockets closed directly, one on a running loop is closed on that loop's next turn.
        """
        self._pool.discard()

    def call_on_close(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` once when :meth:`aclose` is first called (for what a layer above keeps per client).

        It runs in the thread that closes the client; an exception it raises is logged and swallowed.
        """
        self._close_callbacks.append(callback)

    def _run_close_callbacks(self) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("a close callback of an EndpointClient failed")

    @property
    def rate_limit(self) -> RateLimit | None:
        """The quotas the client keeps, if any were stated."""
        return self._rate_limit

    @property
    def counts_tokens(self) -> bool:
        """Whether a token quota is kept, so that callers should pass each request's estimated ``weight``."""
        return self._throttle.counts_tokens

    def correct_tokens(self, estimated: float, actual: float) -> None:
        """Settle a call's token ``weight`` against the tokens its answer's usage reports (for ``RateLimit``)."""
        self._throttle.correct_tokens(estimated, actual)

    def stats(self) -> ClientStats:
        """Return a snapshot: requests in flight, the concurrency limit, sessions and pooled connections."""
        sessions, pooled, in_use = self._pool.counts()
        return ClientStats(
            in_flight=self._throttle.slots.in_flight,
            waiting=self._throttle.slots.waiting,
            limit=self._throttle.limit,
            max_concurrency=self._max_concurrency,
            sessions=sessions,
            pooled_connections=pooled,
            connections_in_use=in_use,
        )

    # ------------------------------------------------------------------ requests

    async def post(
        self,
        body: bytes | Any,
        *,
        path: str | None = None,
        route: Route | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutLike | None = None,
        weight: float = 0.0,
        on_throttle: OnThrottle | None = None,
    ) -> Response:
        """POST ``body`` to the endpoint and return the whole answer, retrying as the policy says.

        Args:
            body: the raw bytes to send, or a JSON-able value (encoded with orjson).
            path: another path on the endpoint's host (absolute, starting with ``/``).
            route: ``"chat"`` or ``"completions"``: which serverless route the body is for.
            headers: extra headers for this call (``Content-Type`` / ``Accept`` of a formatter, say).
            timeout: this call's timeouts instead of the client's.
            weight: the tokens this call is estimated to use, for a ``RateLimit`` with ``tokens_per_minute``
                (settle it with :meth:`correct_tokens` once the answer's usage is known).
            on_throttle: what a 429 does for this call (``"wait"`` or ``"raise"``; default: the client's).

        Raises:
            APIStatusError: (a subclass per status) the endpoint answered with an error status.
            APIConnectionError: no whole answer arrived; APITimeoutError when a timeout ran out.
            CredentialError: the credential gave no token.
            ConfigurationError: bad arguments, or the client is closed; nothing was sent.
        """
        url = self._target(path, route)
        data = self._encode(body)
        call_timeout = self._timeout if timeout is None else Timeout.parse(timeout)
        result = await self._send(
            url, data, headers, call_timeout, stream=False, weight=weight, on_throttle=on_throttle
        )
        assert isinstance(result, Response)
        return result

    def stream(
        self,
        body: bytes | Any,
        *,
        path: str | None = None,
        route: Route | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutLike | None = None,
        weight: float = 0.0,
        on_throttle: OnThrottle | None = None,
    ) -> EventStream:
        """POST ``body`` and iterate the server-sent events of the answer.

        The request is sent when iteration starts; it is retried like :meth:`post` until the answer's
        headers arrive, never after an event was delivered. Use it as ``async with client.stream(...) as
        events: async for event in events: ...`` so that stopping early releases the connection at once. An
        answer that is not ``text/event-stream`` comes as one event of type ``NON_SSE_EVENT`` holding the
        whole body. ``Accept: text/event-stream`` is sent unless ``headers`` name another Accept. ``weight`` and
        ``on_throttle`` are as for :meth:`post`.
        """
        url = self._target(path, route)
        data = self._encode(body)
        call_timeout = self._timeout if timeout is None else Timeout.parse(timeout)
        stream_headers = {"Accept": "text/event-stream"}
        if headers:
            stream_headers.update(headers)

        async def opener() -> OpenStream:
            opened = await self._send(
                url, data, stream_headers, call_timeout, stream=True, weight=weight, on_throttle=on_throttle
            )
            assert isinstance(opened, OpenStream)
            return opened

        return EventStream(
            opener, url=self._url_text(url), timeout=call_timeout, max_response_size=self._max_response_size
        )

    def _target(self, path: str | None, route: Route | None) -> URL:
        if path is None:
            return self._route_url(route)
        if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in "\r\n"):
            raise ConfigurationError(f"path must be an absolute path starting with '/', got {path!r}")
        return self._url.with_path(path)

    @staticmethod
    def _encode(body: bytes | Any) -> bytes:
        if isinstance(body, bytes):
            return body
        if isinstance(body, (bytearray, memoryview)):
            return bytes(body)
        try:
            return orjson.dumps(body)
        except TypeError as exc:
            raise ConfigurationError(f"the request body is not JSON-serialisable: {exc}") from None

    async def _headers(self, extra: Mapping[str, str] | None) -> Mapping[str, str]:
        headers: Mapping[str, str] = self._base_headers
        if self._tokens is not None:
            token = self._tokens.cached()
            if token is None:
                token = await self._tokens.fetch()
            cached = self._token_headers
            if cached is None or cached[0] != token:
                cached = (token, {**self._base_headers, "Authorization": f"Bearer {token}"})
                self._token_headers = cached
            headers = cached[1]
        return _with_extra(headers, extra)

    async def _send(
        self,
        url: URL,
        data: bytes,
        extra_headers: Mapping[str, str] | None,
        timeout: Timeout,
        *,
        stream: bool,
        weight: float = 0.0,
        on_throttle: OnThrottle | None = None,
    ) -> Response | OpenStream:
        """Make the attempts of one call: a Response, or (stream=True) an open 2xx answer holding a slot."""
        session = self._pool.session()
        if session is None:
            raise ConfigurationError("this EndpointClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        mode: OnThrottle | None = None  # worked out when a wait or a 429 needs it (a context variable read)
        throttle = self._throttle
        start = loop.time()
        # "raise": the total timeout also covers the wait in the client's line; "wait": it runs from the first send.
        deadline = None if timeout.total is None else start + timeout.total
        attempt = retries = throttled = 0
        refreshed = False
        hooks = self._hooks
        while True:
            attempt += 1
            if attempt > 1 and session.closed:
                raise _closed_while_in_flight(url, attempt - 1)
            if self._tokens is None:  # no await when there is no token to fetch
                headers = _with_extra(self._base_headers, extra_headers)
            else:
                headers = await self._headers(extra_headers)
            slot = throttle.try_acquire()
            waited = slot is None
            if slot is None:
                mode = mode or throttle_mode(on_throttle, self._on_throttle)
                slot = await self._wait_for_slot(mode, deadline, url, attempt)
            try:
                gate = throttle.send_delay(weight)
                if gate > 0:
                    waited = True
                    mode = mode or throttle_mode(on_throttle, self._on_throttle)
                    if mode == "raise" and deadline is not None and loop.time() + gate >= deadline:
                        raise _line_timeout(timeout, url, attempt)
                    await asyncio.sleep(gate)
            except BaseException:
                slot.release()
                raise
            if mode == "wait" and attempt == 1 and waited and timeout.total is not None:
                start = loop.time()
                deadline = start + timeout.total
            if attempt == 1 and not waited and timeout is self._timeout and self._tokens is None:
                # Nothing was awaited since ``start``: the whole total is left, so the client's prepared
                # aiohttp timeout says the same as a fresh one would.
                remaining = timeout.total
                client_timeout = self._first_attempt_timeout
            else:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    slot.release()
                    raise APITimeoutError(
                        f"the total timeout of {timeout.total:g} s ran out before attempt {attempt}",
                        url=str(url),
                        attempts=attempt - 1,
                    )
                client_timeout = _client_timeout(timeout, remaining)
            throttle.mark_sent(slot)
            seq = slot.seq
            try:
                result = await self._send_once(
                    session, slot, url, data, headers, client_timeout, stream, attempt, start, timeout, remaining
                )
            except AzureMLError as error:
                status = getattr(error, "status_code", None)
                if hooks:
                    kind: AttemptKind = "answered" if status is not None else "failed"
                    self._emit(kind, attempt, url, start, status=status, error=error)
                if status == 401 and self._tokens is not None and not refreshed:
                    # One fresh token, one more try: it does not count as a retry.
                    refreshed = True
                    self._tokens.invalidate()
                    continue
                left = None if deadline is None else deadline - loop.time()
                if isinstance(error, APIStatusError) and status == 429:
                    mode = mode or throttle_mode(on_throttle, self._on_throttle)
                    too_long = error.retry_after is not None and error.retry_after > self._retry.max_retry_after
                    if mode == "wait" and not too_long:
                        throttled += 1
                        backoff = self._retry.backoff(throttled)
                        _, wait = throttle.on_throttled(error.headers, error.retry_after, backoff, seq)
                        if left is not None and wait >= left:
                            set_attempts(error, attempt)
                            raise
                        if hooks:
                            self._emit("throttled", attempt, url, start, status=status, error=error, delay=wait)
                        if logger.isEnabledFor(logging.DEBUG):
                            logger.debug(
                                "throttled: %s again in %.3f s (429 number %d)", _log_url(url), wait, throttled
                            )
                        await asyncio.sleep(wait)
                        continue
                    throttle.on_throttled(error.headers, error.retry_after, self._retry.backoff(retries + 1), seq)
                elif status in (408, 503) or isinstance(error, APITimeoutError):
                    throttle.on_pushback()
                delay = self._retry.next_delay(retries, error, left)
                if delay is None:
                    set_attempts(error, attempt)
                    raise
                retries += 1
                if hooks:
                    self._emit("retry", attempt, url, start, status=status, error=error, delay=delay)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "retrying %s in %.3f s (retry %d of %d)", _log_url(url), delay, retries, self._retry.max_retries
                    )
                await asyncio.sleep(delay)
                continue
            if hooks:
                status = result.response.status if isinstance(result, OpenStream) else result.status
                self._emit("answered", attempt, url, start, status=status, request_id=_request_id(result))
            return result

    async def _wait_for_slot(self, mode: OnThrottle, deadline: float | None, url: URL, attempt: int) -> Slot:
        """Wait for an in-flight slot; with ``"raise"``, no longer than the call's total timeout allows."""
        if mode == "wait" or deadline is None:
            return await self._throttle.acquire()
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(self._throttle.acquire(), max(left, 0.0))
        except (asyncio.TimeoutError, TimeoutError):  # the same class from 3.11 on; not on 3.10
            raise _line_timeout(self._timeout, url, attempt) from None

    async def _send_once(
        self,
        session: aiohttp.ClientSession,
        slot: Slot,
        url: URL,
        data: bytes,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
        stream: bool,
        attempt: int,
        start: float,
        timeout: Timeout,
        remaining: float | None,
    ) -> Response | OpenStream:
        """One attempt, holding ``slot`` (given back here, or by the stream): a 2xx answer or a mapped error."""
        loop = asyncio.get_running_loop()
        attempt_start = loop.time()
        held: Slot | None = slot
        if self._hooks:
            self._emit("sent", attempt, url, start)
        try:
            if self._proxy_options is None:
                response = await session.post(
                    url, data=data, headers=headers, timeout=client_timeout, allow_redirects=False
                )
            else:
                response = await session.post(
                    url,
                    data=data,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                    **self._proxy_options,
                )
            status = response.status
            if status >= 300:
                error_body = await read_error_body(response)
                error = status_error(
                    status,
                    error_body,
                    response.headers,
                    attempts=attempt,
                    deployment=self._deployment,
                    proxy=self._proxy_label,
                )
            elif stream:
                self._throttle.on_success(loop.time() - attempt_start)
                opened = OpenStream(response, slot.release, attempt, loop.time() - start)
                held = None  # the stream gives it back
                if logger.isEnabledFor(logging.DEBUG):
                    self._log_attempt(url, status, attempt_start, attempt, loop)
                return opened
            else:
                try:
                    payload = await read_body(response, self._max_response_size, str(url))
                finally:
                    response.release()
                self._throttle.on_success(loop.time() - attempt_start)
                if logger.isEnabledFor(logging.DEBUG):
                    self._log_attempt(url, status, attempt_start, attempt, loop)
                headers = response.headers
                return new_response(
                    status,
                    headers,
                    payload,
                    self._url_text(url),
                    request_id_from(headers),
                    attempt,
                    loop.time() - start,
                )
        except Exception as exc:
            if session.closed:  # our own close, not the server's doing: say so, and do not retry
                raise _closed_while_in_flight(url, attempt) from exc
            mapped = transport_error(
                exc, url=str(url), timeout=timeout, attempts=attempt, remaining=remaining, proxy=self._proxy_label
            )
            if mapped is None:
                raise
            if logger.isEnabledFor(logging.DEBUG):
                self._log_attempt(url, type(mapped).__name__, attempt_start, attempt, loop)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            if held is not None:
                held.release()
        if logger.isEnabledFor(logging.DEBUG):
            self._log_attempt(url, status, attempt_start, attempt, loop)
        raise error

    def _emit(
        self,
        kind: AttemptKind,
        attempt: int,
        url: URL,
        start: float,
        *,
        status: int | None = None,
        error: BaseException | None = None,
        delay: float | None = None,
        request_id: str | None = None,
    ) -> None:
        if request_id is None and error is not None:
            request_id = getattr(error, "request_id", None)
        event = Attempt(
            kind=kind,
            attempt=attempt,
            url=_log_url(url),
            status=status,
            error=None if error is None or kind == "answered" else type(error).__name__,
            delay=delay,
            request_id=request_id,
            elapsed=asyncio.get_running_loop().time() - start,
            limit=self._throttle.limit,
            in_flight=self._throttle.slots.in_flight,
        )
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("an on_attempt hook failed")

    @staticmethod
    def _log_attempt(
        url: URL, status: int | str, started: float, attempt: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        logger.debug("POST %s -> %s in %.3f s (attempt %d)", _log_url(url), status, loop.time() - started, attempt)

    @staticmethod
    def _ssl_setting(value: bool | ssl_module.SSLContext | str) -> bool | ssl_module.SSLContext:
        if isinstance(value, ssl_module.SSLContext):
            return value
        if value is True:
            return True
        if value is False:
            logger.warning("TLS certificate verification is switched off for this EndpointClient")
            return False
        if isinstance(value, str):
            try:
                return ssl_module.create_default_context(cafile=value)
            except (OSError, ssl_module.SSLError) as exc:
                raise ConfigurationError(f"cannot load the CA bundle {value!r}: {exc}") from None
        raise ConfigurationError(f"ssl must be True, False, an ssl.SSLContext or a CA bundle path, got {value!r}")

    def _warn_plain_http(self) -> None:
        host = self._url.host or ""
        with _warned_lock:
            if host in _warned_plain_http:
                return
            _warned_plain_http.add(host)
        logger.warning(
            "sending credentials over plain http to %s: anyone on the network path can read them; use https",
            host,
        )
