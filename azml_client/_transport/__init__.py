"""The transport layer: HTTP session, auth, retries, timeouts, SSE decoding and typed errors.

Nothing here knows about formatters or models.
"""

from azml_client._transport._auth import DEFAULT_TOKEN_SCOPE, CredentialLike, TokenProvider
from azml_client._transport._client import NON_SSE_EVENT, EndpointClient, EventStream
from azml_client._transport._response import Response
from azml_client._transport._sse import ServerSentEvent, SSEDecoder
from azml_client._transport._urls import Route

__all__ = [
    "DEFAULT_TOKEN_SCOPE",
    "NON_SSE_EVENT",
    "CredentialLike",
    "EndpointClient",
    "EventStream",
    "Response",
    "Route",
    "SSEDecoder",
    "ServerSentEvent",
    "TokenProvider",
]
