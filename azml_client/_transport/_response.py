"""The answer of one successful call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from azml_client._exceptions import ResponseFormatError
from azml_client._json import JSONDecodeError, loads
from azml_client._types import trusted_constructor

__all__ = ["Response", "new_response", "request_id_from"]

_REQUEST_ID_HEADERS = ("x-request-id", "x-ms-request-id", "apim-request-id", "x-ms-client-request-id")


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """Return the request id an answer carries (``x-request-id``, ``x-ms-request-id``...), if any."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


@attrs.frozen(slots=True)
class Response:
    """A successful (2xx) answer, read whole.

    Attributes:
        status: the HTTP status.
        headers: the answer's headers (case-insensitive mapping).
        body: the raw body.
        url: the URL that answered.
        request_id: the endpoint's request id, when it sent one.
        attempts: how many attempts the call took (1 when it was not retried).
        elapsed: seconds from the first attempt to the end of the body.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    url: str
    request_id: str | None = None
    attempts: int = 1
    elapsed: float = 0.0

    @property
    def deployment(self) -> str | None:
        """The deployment that answered (``azureml-model-deployment``), when the endpoint said."""
        return self.headers.get("azureml-model-deployment")

    def json(self) -> Any:
        """Decode the body as JSON.

        Raises:
            ResponseFormatError: the body is not JSON.
        """
        try:
            return loads(self.body)
        except JSONDecodeError as exc:
            raise ResponseFormatError(
                "the answer is not JSON", status=self.status, body=self.body, hint=str(exc)
            ) from None

    def text(self) -> str:
        """Decode the body as UTF-8 text (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")


#: Response's constructor without attrs' per-field indirection (the transport builds one per call).
new_response: Callable[..., Response] = trusted_constructor(Response)
