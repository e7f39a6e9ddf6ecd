"""The transport layer: HTTP sessions, auth, retries, timeouts, SSE decoding, typed errors and attempt events.

Nothing here knows about formatters or models.
"""

from azml_client._transport._auth import DEFAULT_TOKEN_SCOPE, CredentialLike, TokenProvider
from azml_client._transport._client import ClientStats, EndpointClient
from azml_client._transport._events import Attempt, AttemptHook, AttemptKind
from azml_client._transport._response import Response
from azml_client._transport._sse import ServerSentEvent, SSEDecoder
from azml_client._transport._stream import NON_SSE_EVENT, EventStream
from azml_client._transport._throttle import ThrottleKind, batch_calls
from azml_client._transport._urls import Route

__all__ = [
    "DEFAULT_TOKEN_SCOPE",
    "NON_SSE_EVENT",
    "Attempt",
    "AttemptHook",
    "AttemptKind",
    "ClientStats",
    "CredentialLike",
    "EndpointClient",
    "EventStream",
    "Response",
    "Route",
    "SSEDecoder",
    "ServerSentEvent",
    "ThrottleKind",
    "TokenProvider",
    "batch_calls",
]
