"""One mapping from aiohttp's and the OS's errors to azml-client's, for the request and the stream path alike."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from azml_client._config import Timeout, parse_retry_after
from azml_client._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AzureMLError,
    ConfigurationError,
    status_error_for,
    status_message_for,
)
from azml_client._transport._response import request_id_from

__all__ = ["DEPLOYMENT_HEADER", "status_error", "transport_error"]

DEPLOYMENT_HEADER = "azureml-model-deployment"


def transport_error(
    exc: BaseException,
    *,
    url: str,
    timeout: Timeout,
    attempts: int,
    remaining: float | None = None,
    mid_stream: bool = False,
    proxy: str | None = None,
) -> AzureMLError | None:
    """Return the azml-client error for an exception raised while sending or reading, or ``None`` if it is not one.

    Our own errors pass through (with ``attempts`` set); asyncio and aiohttp timeouts become
    :class:`APITimeoutError` with a message naming the timeout that ran out; TLS verification failures become a
    non-retryable :class:`APIConnectionError`; other aiohttp and OS errors become :class:`APIConnectionError`;
    an invalid URL is a :class:`ConfigurationError`. Anything else (a cancellation, a bug) is not mapped.
    ``proxy`` names the client's proxy (``the proxy host:port (set by ...)``, no credentials): a failure to
    reach it is an :class:`APIConnectionError` naming it, and its refusal to open a tunnel the
    :class:`APIStatusError` of the proxy's status.
    """
    error: AzureMLError
    if isinstance(exc, AzureMLError):
        set_attempts(exc, attempts)
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        error = APITimeoutError(_timeout_message(exc, timeout, remaining, mid_stream), url=url, attempts=attempts)
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = APIConnectionError(f"TLS verification failed: {exc}", url=url, attempts=attempts)
        error.retryable = False
    elif isinstance(exc, aiohttp.ClientProxyConnectionError):
        label = proxy or f"the proxy {exc.host}:{exc.port}"
        error = APIConnectionError(f"cannot connect to {label}: {exc.os_error}", url=url, attempts=attempts)
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        error = _proxy_refusal(exc, proxy or "the proxy", attempts)
    elif isinstance(exc, aiohttp.InvalidURL):
        return ConfigurationError(f"invalid URL {exc}")
    elif isinstance(exc, (aiohttp.ClientError, OSError)):
        message = _connection_message(exc)
        if mid_stream:
            message = f"the event stream broke off: {message}"
        error = APIConnectionError(message, url=url, attempts=attempts)
    else:
        return None
    error.__cause__ = exc
    return error


def status_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    attempts: int,
    deployment: str | None,
    proxy: str | None = None,
) -> APIStatusError:
    """Build the error of an answer with a non-2xx status (a subclass per status).

    A 407 comes from a proxy, never from the endpoint: its message names ``proxy`` when the client has one. A 424
    from a managed endpoint names the model container's own status and reason (``ms-azureml-model-error-statuscode``
    / ``ms-azureml-model-error-reason``).
    """
    message = _proxy_auth_message(proxy) if status == 407 and proxy is not None else status_message_for(status)
    if status == 424:
        code = headers.get("ms-azureml-model-error-statuscode")
        reason = headers.get("ms-azureml-model-error-reason")
        if code or reason:
            message = f"the model container answered {code or '?'}: {reason or 'no reason given'}; {message}"
    return status_error_for(status)(
        message,
        status_code=status,
        body=body,
        headers=headers,
        request_id=request_id_from(headers),
        deployment=headers.get(DEPLOYMENT_HEADER) or deployment,
        attempts=attempts,
        retry_after=parse_retry_after(headers),
    )


def _proxy_refusal(exc: aiohttp.ClientHttpProxyError, proxy: str, attempts: int) -> APIStatusError:
    """The error of a proxy that answered the ``CONNECT`` of an https request with another status than 200."""
    headers: Mapping[str, str] = exc.headers if exc.headers is not None else {}
    if exc.status == 407:
        message = _proxy_auth_message(proxy)
    else:
        message = f"{proxy} did not open a tunnel to the endpoint: it answered {exc.status} {exc.message}"
    return status_error_for(exc.status)(
        message,
        status_code=exc.status,
        headers=headers,
        request_id=request_id_from(headers),
        attempts=attempts,
        retry_after=parse_retry_after(headers),
    )


def _proxy_auth_message(proxy: str) -> str:
    return (
        f"proxy authentication required: {proxy} refused the request; put its user and password in the "
        "proxy URL (http://user:password@host:port) or check them"
    )


def set_attempts(error: AzureMLError, attempts: int) -> None:
    """Record on ``error`` how many attempts the call made."""
    if isinstance(error, (APIStatusError, APIConnectionError)):
        error.attempts = attempts


def _timeout_message(exc: BaseException, timeout: Timeout, remaining: float | None, mid_stream: bool) -> str:
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
