"""The async transport: one aiohttp session per event loop, auth headers, timeouts, retries and typed errors."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import ssl as ssl_module
import threading
from collections.abc import AsyncIterator, Mapping
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
    RetryPolicy,
    Timeout,
    TimeoutLike,
    parse_retry_after,
)
from azml_client._exceptions import (
    MAX_ERROR_BODY,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AzureMLError,
    ConfigurationError,
    ResponseTooLargeError,
    status_error_for,
    status_message_for,
)
from azml_client._transport._auth import (
    DEFAULT_TOKEN_SCOPE,
    CredentialLike,
    TokenProvider,
    check_header_name,
    check_header_value,
)
from azml_client._transport._response import Response, request_id_from
from azml_client._transport._sse import ServerSentEvent, SSEDecoder
from azml_client._transport._urls import Route, is_loopback, parse_endpoint_url, route_url
from azml_client._version import __version__

__all__ = ["NON_SSE_EVENT", "EndpointClient", "EventStream"]

logger = logging.getLogger("azml_client")

#: The event type :class:`EventStream` gives a whole non-SSE body (an endpoint that ignored ``stream``).
NON_SSE_EVENT: Final = "azml-client.body"

USER_AGENT: Final = f"azml-client/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
_DEPLOYMENT_HEADER: Final = "azureml-model-deployment"
_ERROR_BODY_READ_LIMIT = 64 * 1024
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
        merged[check_header_name(name)] = check_header_value(name, value, secret=name.lower() == "authorization")
    return merged


_mmap_threshold_raised = False


def _raise_mmap_threshold_once() -> None:
    """Free one 512 KiB block, once per process, so that glibc stops serving each socket read with mmap.

    asyncio reads a socket into a fresh 256 KiB buffer and then shrinks it. glibc's malloc serves blocks above
    its mmap threshold (128 KiB until a larger mmap'd block has been freed) with mmap, so until then every read
    costs an mmap, an mremap and a munmap: measured, 10-17% of the client CPU of a small request.
    Freeing one block larger than that buffer lifts the threshold above it (glibc's dynamic threshold), which
    most long-running processes reach by chance sooner or later. Elsewhere this is one harmless allocation.
    """
    global _mmap_threshold_raised
    if not _mmap_threshold_raised:
        _mmap_threshold_raised = True
        block = bytes(512 * 1024)
        del block


@attrs.define(slots=True)
class _LoopState:
    """What the client keeps per event loop: the session and the in-flight cap live on one loop only."""

    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    slots: asyncio.Semaphore


class EndpointClient:
    """An async client for one Azure ML online endpoint (dedicated ``/score`` or serverless ``/v1/...``).

    It owns one aiohttp session per event loop, created on first use and closed by :meth:`aclose` (or
    ``async with``). Many model objects may share one client. Settings left as ``None`` come from the
    environment: ``AZUREML_ENDPOINT_URL``, ``AZUREML_ENDPOINT_API_KEY``, ``AZUREML_ENDPOINT_API_TYPE``,
    ``AZUREML_DEPLOYMENT_NAME`` and ``AZUREML_TIMEOUT``.

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
        max_connections: the connection pool's size.
        max_concurrency: the most requests in flight through this client at once (default
            ``max_connections``); requests beyond it wait for a slot, not for a pooled connection, so waiting
            never eats the connect timeout.
        headers: extra headers sent with every request.
        max_response_size: the largest body read, in bytes (default 64 MiB).
        ssl: ``True`` (verify, the default), ``False`` (no verification), an ``ssl.SSLContext``, or the path of
            a CA bundle to verify against.

    Raises:
        ConfigurationError: a missing or invalid URL, an unknown api type, a header with CR/LF, or both a key
            and a credential.
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
            check_header_value(_DEPLOYMENT_HEADER, deployment)
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
        if isinstance(max_response_size, bool) or not isinstance(max_response_size, int) or max_response_size < 1:
            raise ConfigurationError(f"max_response_size must be an int >= 1, got {max_response_size!r}")
        self._max_response_size = max_response_size
        self._ssl = self._ssl_setting(ssl)

        base: dict[str, str] = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if deployment:
            base[_DEPLOYMENT_HEADER] = deployment
        for name, value in (headers or {}).items():
            check_header_name(name)
            base[name] = check_header_value(name, value, secret=name.lower() == "authorization")
        if key is not None:
            base["Authorization"] = f"Bearer {key}"
        self._base_headers = base
        self._token_headers: tuple[str, dict[str, str]] | None = None

        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._states_lock = threading.Lock()
        self._closed = False
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
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def __repr__(self) -> str:
        deployment = f", deployment_name={self._deployment!r}" if self._deployment else ""
        return (
            f"EndpointClient(endpoint_url={str(self._url)!r}, api_type={self._api_type.value!r}"
            f"{deployment}, auth={self.auth_kind!r})"
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
        """Close every session the client opened; the client cannot be used afterwards."""
        self._closed = True
        with self._states_lock:
            states = list(self._states.values())
            self._states.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for state in states:
            if state.loop is current:
                await state.session.close()
            elif state.loop.is_closed():
                _abandon_session(state.session)
            else:
                # Another thread's loop: that thread may be blocked waiting for us (a sync twin called inside a
                # running loop), so the close is handed to its loop rather than awaited.
                state.loop.call_soon_threadsafe(_close_now, state.session)

    def discard_sessions(self) -> None:
        """Close every session without awaiting, from any thread; the client can still be used afterwards.

        For finalizers and sync code that cannot await :meth:`aclose`: a session on a closed loop has its
        sockets closed directly, one on a running loop is closed on that loop's next turn.
        """
        with self._states_lock:
            states = list(self._states.values())
            self._states.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for state in states:
            if state.loop is current:
                _close_now(state.session)
                continue
            try:
                state.loop.call_soon_threadsafe(_close_now, state.session)
            except RuntimeError:  # the loop is closed
                _abandon_session(state.session)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is not None and not state.session.closed:
            return state
        with self._states_lock:
            if self._closed:
                raise ConfigurationError("this EndpointClient is closed; create a new one")
            for other in [s for s in self._states.values() if s.loop.is_closed()]:
                del self._states[other.loop]
                _abandon_session(other.session)
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                ssl=self._ssl,
            )
            # No skip_auto_headers: every request carries our User-Agent, so aiohttp adds none, and a
            # session-wide skip list would send each request down aiohttp's slow header path.
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
            _raise_mmap_threshold_once()
            state = _LoopState(loop, session, asyncio.Semaphore(self._max_concurrency))
            self._states[loop] = state
            return state

    # ------------------------------------------------------------------ requests

    async def post(
        self,
        body: bytes | Any,
        *,
        path: str | None = None,
        route: Route | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: TimeoutLike | None = None,
    ) -> Response:
        """POST ``body`` to the endpoint and return the whole answer, retrying as the policy says.

        Args:
            body: the raw bytes to send, or a JSON-able value (encoded with orjson).
            path: another path on the endpoint's host (absolute, starting with ``/``).
            route: ``"chat"`` or ``"completions"``: which serverless route the body is for.
            headers: extra headers for this call (``Content-Type`` / ``Accept`` of a formatter, say).
            timeout: this call's timeouts instead of the client's.

        Raises:
            APIStatusError: (a subclass per status) the endpoint answered with an error status.
            APIConnectionError: no whole answer arrived; APITimeoutError when a timeout ran out.
            ConfigurationError: bad arguments; nothing was sent.
        """
        url = self._target(path, route)
        data = self._encode(body)
        call_timeout = self._timeout if timeout is None else Timeout.parse(timeout)
        result = await self._send(url, data, headers, call_timeout, stream=False)
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
    ) -> EventStream:
        """POST ``body`` and iterate the server-sent events of the answer.

        The request is sent when iteration starts; it is retried like :meth:`post` until the answer's
        headers arrive, never after an event was delivered. Use it as ``async for event in
        client.stream(...)`` or, to release the connection as soon as you stop early, as
        ``async with client.stream(...) as events``. An answer that is not ``text/event-stream`` comes
        as one event of type ``NON_SSE_EVENT`` holding the whole body.
        """
        url = self._target(path, route)
        data = self._encode(body)
        call_timeout = self._timeout if timeout is None else Timeout.parse(timeout)
        stream_headers = {"Accept": "text/event-stream"}
        if headers:
            stream_headers.update(headers)
        return EventStream(self, url, data, stream_headers, call_timeout)

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
    ) -> Response | aiohttp.ClientResponse:
        """Send with retries; return a Response, or (stream=True) an open 2xx answer holding a slot."""
        state = self._state()
        loop = state.loop
        policy = self._retry
        start = loop.time()
        deadline = None if timeout.total is None else start + timeout.total
        attempt = 0
        retries = 0
        refreshed = False
        debug = logger.isEnabledFor(logging.DEBUG)
        while True:
            attempt += 1
            if self._tokens is None:  # no await when there is no token to fetch
                headers = _with_extra(self._base_headers, extra_headers)
            else:
                headers = await self._headers(extra_headers)
            if attempt == 1 and timeout is self._timeout and self._tokens is None:
                # Nothing was awaited since ``start``: the whole total is left, so the client's prepared
                # aiohttp timeout says the same as a fresh one would.
                remaining = timeout.total
                client_timeout = self._first_attempt_timeout
            else:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise APITimeoutError(
                        f"the total timeout of {timeout.total:g} s ran out before attempt {attempt}",
                        url=str(url),
                        attempts=attempt - 1,
                    )
                client_timeout = _client_timeout(timeout, remaining)
            error: AzureMLError
            retryable = True
            answer_headers: Mapping[str, str] | None = None
            await state.slots.acquire()
            holding = True
            attempt_start = loop.time()
            try:
                response = await state.session.post(
                    url, data=data, headers=headers, timeout=client_timeout, allow_redirects=False
                )
                status = response.status
                if status < 300 and stream:
                    holding = False  # the EventStream releases the slot
                    if debug:
                        self._log_attempt(url, status, attempt_start, attempt, loop)
                    return response
                if status < 300:
                    try:
                        payload = await _read_body(response, self._max_response_size, url, attempt)
                    finally:
                        response.release()
                    if debug:
                        self._log_attempt(url, status, attempt_start, attempt, loop)
                    return Response(
                        status=status,
                        headers=response.headers,
                        body=payload,
                        url=self._url_text(url),
                        request_id=request_id_from(response.headers),
                        attempts=attempt,
                        elapsed=loop.time() - start,
                    )
                error_body = await _read_error_body(response)
                answer_headers = response.headers
                if debug:
                    self._log_attempt(url, status, attempt_start, attempt, loop)
                error = self._status_error(status, error_body, answer_headers, attempt)
                retryable = policy.should_retry_status(status)
                if status == 401 and self._tokens is not None and not refreshed:
                    # One fresh token, one more try: it does not count as a retry.
                    refreshed = True
                    self._tokens.invalidate()
                    continue
            except AzureMLError as exc:
                error, retryable = exc, False
                if debug:
                    self._log_attempt(url, type(exc).__name__, attempt_start, attempt, loop)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                error = APITimeoutError(_timeout_message(exc, timeout, remaining), url=str(url), attempts=attempt)
                error.__cause__ = exc
                if debug:
                    self._log_attempt(url, "timeout", attempt_start, attempt, loop)
            except aiohttp.ClientConnectorCertificateError as exc:
                error, retryable = APIConnectionError(f"TLS verification failed: {exc}", url=str(url)), False
                error.__cause__ = exc
            except aiohttp.InvalidURL as exc:
                raise ConfigurationError(f"invalid URL {exc}") from None
            except (aiohttp.ClientError, OSError) as exc:
                error = APIConnectionError(_connection_message(exc), url=str(url), attempts=attempt)
                error.__cause__ = exc
                if debug:
                    self._log_attempt(url, type(exc).__name__, attempt_start, attempt, loop)
            finally:
                if holding:
                    state.slots.release()

            if isinstance(error, APIConnectionError) and not policy.retry_connection_errors:
                retryable = False
            if not retryable or retries >= policy.max_retries:
                self._set_attempts(error, attempt)
                raise error
            if answer_headers is not None:
                too_long = policy.retry_after_too_long(answer_headers)
                if too_long is not None:
                    self._set_attempts(error, attempt)
                    raise error
            delay = policy.delay_for(retries + 1, answer_headers)
            if deadline is not None and loop.time() + delay >= deadline:
                self._set_attempts(error, attempt)
                raise error
            retries += 1
            if debug:
                logger.debug(
                    "retrying %s in %.3f s (retry %d of %d)", _log_url(url), delay, retries, policy.max_retries
                )
            await asyncio.sleep(delay)

    def _status_error(self, status: int, body: bytes, headers: Mapping[str, str], attempt: int) -> APIStatusError:
        cls = status_error_for(status)
        return cls(
            status_message_for(status),
            status_code=status,
            body=body,
            headers=headers,
            request_id=request_id_from(headers),
            deployment=headers.get(_DEPLOYMENT_HEADER) or self._deployment,
            attempts=attempt,
            retry_after=parse_retry_after(headers),
        )

    @staticmethod
    def _set_attempts(error: AzureMLError, attempts: int) -> None:
        if isinstance(error, (APIStatusError, APIConnectionError)):
            error.attempts = attempts

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


class EventStream:
    """The server-sent events of one streaming call: an async iterator and an async context manager.

    Leaving the ``async with`` block, breaking out of the loop, an error mid-stream or :meth:`aclose`
    release the connection. Errors while reading are :class:`APIConnectionError` /
    :class:`APITimeoutError`, never raw aiohttp errors.
    """

    def __init__(
        self, client: EndpointClient, url: URL, data: bytes, headers: Mapping[str, str], timeout: Timeout
    ) -> None:
        self._client = client
        self._url = url
        self._data = data
        self._headers = headers
        self._timeout = timeout
        self._response: aiohttp.ClientResponse | None = None
        self._state: _LoopState | None = None
        self._iterator: AsyncIterator[ServerSentEvent] | None = None
        self._done = False

    @property
    def status(self) -> int | None:
        """The answer's status once it arrived."""
        return None if self._response is None else self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers once they arrived (empty before)."""
        return {} if self._response is None else self._response.headers

    @property
    def request_id(self) -> str | None:
        """The endpoint's request id, once the answer arrived."""
        return None if self._response is None else request_id_from(self._response.headers)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    async def __anext__(self) -> ServerSentEvent:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        iterator = self._iterator
        if iterator is not None and hasattr(iterator, "aclose"):
            await iterator.aclose()
        self._release(drop=True)

    def _release(self, *, drop: bool) -> None:
        response, self._response = self._response, None
        if response is not None:
            if drop:
                response.close()
            else:
                response.release()
        state, self._state = self._state, None
        if state is not None:
            state.slots.release()

    async def _events(self) -> AsyncIterator[ServerSentEvent]:
        if self._done:
            return
        self._done = True
        client = self._client
        result = await client._send(self._url, self._data, self._headers, self._timeout, stream=True)
        assert isinstance(result, aiohttp.ClientResponse)
        self._response = result
        self._state = client._state()
        finished = False
        try:
            if "text/event-stream" not in result.headers.get("Content-Type", ""):
                body = await _read_body(result, client.max_response_size, self._url, 1)
                yield ServerSentEvent(data=body.decode("utf-8", "replace"), event=NON_SSE_EVENT)
                finished = True
                return
            decoder = SSEDecoder()
            size = 0
            limit = client.max_response_size
            try:
                async for chunk in result.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise ResponseTooLargeError(
                            f"the event stream passed max_response_size ({limit} bytes)", url=str(self._url)
                        )
                    for event in decoder.feed(chunk):
                        yield event
                tail = decoder.flush()
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise APITimeoutError(
                    _timeout_message(exc, self._timeout, None, mid_stream=True), url=str(self._url)
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise APIConnectionError(
                    f"the event stream broke off: {_connection_message(exc)}", url=str(self._url)
                ) from exc
            for event in tail:
                yield event
            finished = True
        finally:
            self._release(drop=not finished)


async def _read_body(response: aiohttp.ClientResponse, limit: int, url: URL, attempt: int) -> bytes:
    length = response.content_length
    if length is not None:
        if length > limit:
            response.close()
            raise ResponseTooLargeError(
                f"the answer has {length} bytes, more than max_response_size ({limit})",
                url=str(url),
                attempts=attempt,
            )
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLargeError(
                f"the answer passed max_response_size ({limit} bytes) before it ended",
                url=str(url),
                attempts=attempt,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_error_body(response: aiohttp.ClientResponse) -> bytes:
    """Read the start of an error answer; drop the connection when the body is longer than that."""
    try:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_READ_LIMIT:
                response.close()
                break
        return b"".join(chunks)[:MAX_ERROR_BODY]
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, TimeoutError):
        return b""
    finally:
        response.release()


def _timeout_message(exc: BaseException, timeout: Timeout, remaining: float | None, *, mid_stream: bool = False) -> str:
    text = str(exc)
    if "connect" in text.lower() or isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connecting took longer than the connect timeout ({timeout.connect} s)"
    # aiohttp raises SocketTimeoutError for the idle (read) timeout and a bare TimeoutError for the total one,
    # mid-stream too: a stream trickling 1 byte a second ends on the total timeout and must say so.
    if isinstance(exc, aiohttp.SocketTimeoutError) or (mid_stream and timeout.total is None):
        return f"no bytes arrived for longer than the read timeout ({timeout.read} s)"
    if remaining is not None or mid_stream:
        return f"the call ran past the total timeout ({timeout.total} s)"
    return f"the call timed out ({text or type(exc).__name__})"


def _connection_message(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer's body was cut short ({exc})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"{type(exc).__name__}: {exc}"


def _log_url(url: URL) -> str:
    return str(url.with_query(None))


def _close_now(session: aiohttp.ClientSession) -> None:
    """Close a session without awaiting, on its own loop: its sockets close on that loop's next turn."""
    connector = session.connector
    if connector is not None:
        connector._close()
    session.detach()


def _abandon_session(session: aiohttp.ClientSession) -> None:
    """Drop a session whose event loop is closed: its pooled sockets are closed without that loop.

    (The loop cannot run ``session.close()`` any more; left alone, the sockets would leak until garbage
    collection and warn.)
    """
    connector = session.connector
    if connector is not None:
        pools: Any = getattr(connector, "_conns", {})
        for pool in list(pools.values()):
            for entry in pool:
                transport: Any = getattr(entry[0], "transport", None)
                raw_socket = getattr(transport, "_sock", None)
                if raw_socket is not None:
                    raw_socket.close()
                    transport._sock = None
        pools.clear()
    session.detach()
    if connector is not None:
        connector._closed = True
