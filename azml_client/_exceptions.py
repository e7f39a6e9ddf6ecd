"""The exception tree of azml-client.

Every error the SDK raises on purpose derives from :class:`AzureMLError`::

    AzureMLError
    ├── ConfigurationError        bad settings or input; raised before any request is sent (also a ValueError)
    ├── CredentialError           the credential gave no token; nothing was sent
    ├── StreamConsumedError       an event stream was iterated a second time (also a RuntimeError)
    ├── ResponseFormatError       the answer does not fit the formatter
    ├── StreamError               the server reported an error in an event stream
    ├── APIConnectionError        the request did not get a whole HTTP answer
    │   ├── APITimeoutError       ... because a timeout ran out
    │   └── ResponseTooLargeError ... because the body is over max_response_size
    └── APIStatusError            the endpoint answered with a non-2xx status
        ├── BadRequestError           400
        ├── AuthenticationError       401
        ├── PermissionDeniedError     403
        ├── NotFoundError             404
        ├── RequestTooLargeError      413
        ├── UnprocessableEntityError  422
        ├── ModelError                424 (the model container failed)
        ├── RateLimitError            429
        └── ServerError               >= 500
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "AzureMLError",
    "BadRequestError",
    "ConfigurationError",
    "CredentialError",
    "ModelError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseFormatError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamConsumedError",
    "StreamError",
    "SystematicFailureError",
    "UnprocessableEntityError",
    "status_error_for",
]

#: How much of an error body is kept on an exception and shown in its message.
MAX_ERROR_BODY = 4096
_MESSAGE_BODY_PREVIEW = 500


def _preview(body: bytes | str | None, limit: int = _MESSAGE_BODY_PREVIEW) -> str:
    """Return the start of ``body`` as text, marking where it was cut."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + "…"


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """Unpickle an :class:`AzureMLError` without calling its ``__init__`` (pickle then restores its attributes)."""
    return cls.__new__(cls, *args)


class AzureMLError(Exception):
    """Base class of every error azml-client raises on purpose.

    Every one pickles, keyword-only arguments and all, so an error raised in a worker process (a Ray actor, a
    ``multiprocessing`` pool) reaches the driver whole.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args), self.__dict__ or None


class ConfigurationError(AzureMLError, ValueError):
    """Bad settings or input, detected before any request leaves the machine."""


class CredentialError(AzureMLError):
    """The credential failed to give a token (or gave something that is not one); no request was sent.

    The credential's own exception is the ``__cause__``; its message is not repeated here, since credential
    errors may quote secrets.
    """


class StreamConsumedError(AzureMLError, RuntimeError):
    """An :class:`~azml_client.EventStream` was iterated again after its first iteration began.

    A stream's events are read from the connection once; make a new call to read them again.
    """


class ResponseFormatError(AzureMLError):
    """The endpoint's answer does not fit what the formatter expects.

    Attributes:
        formatter: the registered name (or class name) of the formatter that could not parse the body.
        status: the HTTP status of the answer, when known.
        body: the start of the body (at most ``MAX_ERROR_BODY`` bytes).
        hint: what usually causes this and what to try.
    """

    def __init__(
        self,
        message: str,
        *,
        formatter: str = "",
        status: int | None = None,
        body: bytes | None = None,
        hint: str = "",
    ) -> None:
        self.formatter = formatter
        self.status = status
        self.body = body[:MAX_ERROR_BODY] if body is not None else None
        self.hint = hint
        parts = [message]
        if formatter:
            parts.append(f"formatter={formatter!r}")
        if status is not None:
            parts.append(f"status={status}")
        if body is not None:
            parts.append(f"body starts: {_preview(body, 300)!r}")
        if hint:
            parts.append(f"hint: {hint}")
        super().__init__("; ".join(parts))


class StreamError(AzureMLError):
    """The server reported an error in an event stream: an error object as a chunk, or an ``event: error`` event.

    The stream had started (the answer's status was 2xx), so this is the server's failure mid-answer, not a
    formatter that cannot read the answer.

    Attributes:
        data: the event's data (at most ``MAX_ERROR_BODY`` characters), when known.
        code: the error's ``code``, when the server gave one.
    """

    def __init__(self, message: str, *, data: str | None = None, code: str | None = None) -> None:
        self.data = data[:MAX_ERROR_BODY] if data is not None else None
        self.code = code
        super().__init__(f"{message}; code={code!r}" if code is not None else message)


class SystematicFailureError(AzureMLError):
    """A batch stopped early: its last finished calls all failed the same way, for a reason no retry fixes.

    A wrong key (401), a wrong path or deployment (404), no permission (403), the same 400 for every input, a
    refused connection or a DNS failure: sending the rest of the batch would only fail the same way. Transient
    faults (5xx, timeouts, dropped connections) and throttling (429) never raise it. See
    :class:`azml_client._models._batch.FailFast` for the exact rule.

    Attributes:
        kind: the failure, as ``"AuthenticationError (HTTP 401)"`` or ``"APIConnectionError (connection refused)"``.
        count: how many finished calls in a row failed that way.
        sent: how many inputs had been taken (sent, or on their way) when the batch stopped.
        error: the last of those failures (also the ``__cause__``).

    ``message`` replaces the default text (the scale-out helpers speak of rows, not calls).
    """

    def __init__(self, kind: str, *, count: int, sent: int, error: BaseException, message: str | None = None) -> None:
        self.kind = kind
        self.count = count
        self.sent = sent
        self.error = error
        super().__init__(
            message
            if message is not None
            else f"stopped early: the last {count} finished calls all failed the same way ({kind}); "
            f"{sent} inputs were sent, the rest were not. Last error: {error}"
        )


class APIConnectionError(AzureMLError):
    """The request got no HTTP answer (connection refused, reset, DNS, TLS, truncated body...).

    Attributes:
        url: the URL that was called.
        attempts: how many attempts were made before giving up.
        retryable: whether sending the request again may help (False for a failed TLS verification or an
            answer over ``max_response_size``).
    """

    retryable: bool = True

    def __init__(self, message: str, *, url: str = "", attempts: int = 1) -> None:
        self.url = url
        self.attempts = attempts
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """A connect, read (idle) or total timeout ran out."""


class APIStatusError(AzureMLError):
    """The endpoint answered with an error status.

    Attributes:
        status_code: the HTTP status.
        body: the start of the answer's body (at most ``MAX_ERROR_BODY`` bytes), never hidden.
        headers: the answer's headers (a case-insensitive mapping).
        request_id: ``x-request-id`` / ``x-ms-request-id`` of the answer, when present.
        deployment: the deployment that answered (``azureml-model-deployment``), when known.
        attempts: how many attempts were made.
        retry_after: the wait in seconds the server asked for (Retry-After), when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        deployment: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        self.body = body[:MAX_ERROR_BODY]
        # Header names are case-insensitive: err.headers['retry-after'] must find 'Retry-After'.
        self.headers: Mapping[str, str] = CIMultiDict(headers or {})
        self.request_id = request_id
        self.deployment = deployment
        self.attempts = attempts
        details = [f"HTTP {status_code}: {message}"]
        if request_id:
            details.append(f"request_id={request_id}")
        if deployment:
            details.append(f"deployment={deployment}")
        if retry_after is not None:
            details.append(f"retry_after={retry_after:g}s")
        if body:
            details.append(f"body: {_preview(body)}")
        super().__init__("; ".join(details))

    def json(self) -> Any:
        """Return the body decoded as JSON (NaN and Infinity included), or ``None`` when it is not JSON."""
        from azml_client._json import JSONDecodeError, loads

        try:
            return loads(self.body)
        except JSONDecodeError:
            return None


class BadRequestError(APIStatusError):
    """400: the endpoint rejected the payload."""


class AuthenticationError(APIStatusError):
    """401: the key or token was missing, wrong or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the key or identity may not call this endpoint."""


class NotFoundError(APIStatusError):
    """404: wrong path, endpoint or deployment name."""


class RequestTooLargeError(APIStatusError):
    """413: the payload is too large for the endpoint."""


class UnprocessableEntityError(APIStatusError):
    """422: the endpoint understood the payload but refused its values."""


class ModelError(APIStatusError):
    """424 Failed Dependency: the model container returned an error.

    The usual cause is a formatter whose payload does not match the model's schema (for example ``gpt2``
    against a model that expects ``input_data``); the body holds the container's own message.
    """


class RateLimitError(APIStatusError):
    """429: throttled; ``retry_after`` holds the wait the server asked for, when it said."""


class ServerError(APIStatusError):
    """>= 500: the endpoint failed."""


class ResponseTooLargeError(APIConnectionError):
    """The answer's body is larger than the client's ``max_response_size``; it was not read."""

    retryable = False


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    424: ModelError,
    429: RateLimitError,
}

_STATUS_MESSAGES: dict[int, str] = {
    400: "the endpoint rejected the request payload",
    401: "authentication failed: check the API key or the credential's token",
    403: "permission denied for this endpoint",
    404: "not found: check the endpoint URL, its path and the deployment name",
    407: (
        "proxy authentication required: the proxy refused the request; put its user and password in the "
        "proxy URL (http://user:password@host:port) or check them"
    ),
    408: "the endpoint timed out waiting for the request",
    413: "the request payload is too large",
    422: "the endpoint could not process the request's values",
    424: (
        "the model container failed (Failed Dependency); the usual cause is a formatter that does not "
        "match the model's input schema: try another content formatter"
    ),
    429: "rate limited by the endpoint",
}


def status_error_for(status: int) -> type[APIStatusError]:
    """Return the exception class for an HTTP error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return APIStatusError


def status_message_for(status: int) -> str:
    """Return a short explanation of an HTTP error status."""
    if status in _STATUS_MESSAGES:
        return _STATUS_MESSAGES[status]
    if status >= 500:
        return "the endpoint failed with a server error"
    return "the endpoint answered with an error status"
