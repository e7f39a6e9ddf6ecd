"""Authentication: an API key, or an Entra ID token from a credential, turned into an Authorization header."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from azml_client._exceptions import ConfigurationError, CredentialError

__all__ = [
    "DEFAULT_TOKEN_SCOPE",
    "TOKEN_REFRESH_MARGIN",
    "CredentialLike",
    "TokenProvider",
    "check_header_name",
    "check_header_value",
    "is_secret_header",
]

#: The Entra ID scope of Azure ML online endpoints.
DEFAULT_TOKEN_SCOPE = "https://ml.azure.com/.default"
#: A cached token is refreshed this many seconds before it expires.
TOKEN_REFRESH_MARGIN = 300.0


@runtime_checkable
class _HasGetToken(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


#: A credential: an azure-core (Async)TokenCredential, or a callable returning a token str (sync or async).
CredentialLike = _HasGetToken | Callable[[], str | Awaitable[str]]

# C0 controls but tab, DEL and the C1 controls (U+0080-U+009F): none belongs in a header value.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# RFC 9110 token: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


#: Header names that carry credentials (Azure OpenAI, Azure AI, API Management, and the usual ones).
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "ocp-apim-subscription-key", "x-api-key", "cookie"}
)
_SECRET_WORDS = ("key", "token", "secret", "password", "auth", "signature", "credential", "session")


def is_secret_header(name: str) -> bool:
    """Whether a header's value may be a credential, so that it is never shown in an error, repr or log.

    Known credential headers, and any name containing a word such as key, token, secret or auth: showing a
    harmless value is a smaller loss than echoing a key.
    """
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


def check_header_name(name: str) -> str:
    """Return ``name`` when it is a valid header name (an RFC 9110 token), else raise ConfigurationError.

    Spaces, colons, control characters and non-ASCII letters are refused: aiohttp would send some of them as
    they are (for the server to reject or misread) and fail on others only once the request is being sent.
    """
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise ConfigurationError(f"invalid header name {name!r}: use letters, digits and !#$%&'*+-.^_`|~")
    return name


def check_header_value(name: str, value: str, *, secret: bool = False) -> str:
    """Return ``value`` when it is a valid header value, else raise ConfigurationError.

    CR, LF and other control characters (C0 but tab, DEL, C1) are refused: they would split the header.
    The value is never shown in the message when ``secret`` is set or the name is a credential's
    (:func:`is_secret_header`).
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"header {name!r} must be a str, got {type(value).__name__}")
    if _CONTROL_CHARACTER.search(value) is not None:
        shown = "" if secret or is_secret_header(name) else f" {value!r}"
        raise ConfigurationError(f"header {name!r} has a control character (CR, LF or similar) in its value{shown}")
    return value


class TokenProvider:
    """Gets bearer tokens from a credential and caches them until shortly before they expire.

    azure-core credentials (sync ``TokenCredential``, called in a worker thread, or ``AsyncTokenCredential``)
    return an ``AccessToken(token, expires_on)``: the token is reused until ``TOKEN_REFRESH_MARGIN``
    seconds before ``expires_on``. A plain callable (sync or async) is asked on every request, so it should
    cache on its own (``azure.identity.get_bearer_token_provider`` does).

    Calls that need a token while one is being fetched on the same event loop wait for that fetch instead of
    starting their own, as azure-core's bearer policy does: 20 concurrent first calls make one ``get_token``.
    """

    __slots__ = ("_credential", "_expires_on", "_fetching", "_scope", "_token")

    def __init__(self, credential: CredentialLike, scope: str = DEFAULT_TOKEN_SCOPE) -> None:
        if not isinstance(credential, _HasGetToken) and not callable(credential):
            raise ConfigurationError(
                "credential must be an azure-core TokenCredential / AsyncTokenCredential or a callable "
                f"returning a token str, got {type(credential).__name__}"
            )
        self._credential = credential
        self._scope = scope
        self._token: str | None = None
        self._expires_on = 0.0
        self._fetching: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[str]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"TokenProvider(credential={type(self._credential).__name__}, scope={self._scope!r})"

    def cached(self) -> str | None:
        """Return the cached token while it is fresh, else ``None``."""
        if self._token is not None and time.time() < self._expires_on - TOKEN_REFRESH_MARGIN:
            return self._token
        return None

    def invalidate(self) -> None:
        """Forget the cached token (after a 401)."""
        self._token = None
        self._expires_on = 0.0

    async def fetch(self) -> str:
        """Ask the credential for a new token (or join the fetch under way) and cache it when it expires.

        Raises:
            CredentialError: the credential raised, or returned something that is not a token.
        """
        loop = asyncio.get_running_loop()
        under_way = self._fetching.get(loop)
        if under_way is not None:
            return await asyncio.shield(under_way)
        future: asyncio.Future[str] = loop.create_future()
        future.add_done_callback(_retrieve)
        self._fetching[loop] = future
        try:
            token = await self._ask()
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
            else:
                future.cancel()
            raise
        else:
            future.set_result(token)
            return token
        finally:
            del self._fetching[loop]

    async def _ask(self) -> str:
        credential = self._credential
        try:
            if isinstance(credential, _HasGetToken):
                getter = credential.get_token
                if inspect.iscoroutinefunction(getter):
                    result = await getter(self._scope)
                else:
                    import anyio.to_thread  # only credential users pay for importing it

                    result = await anyio.to_thread.run_sync(getter, self._scope)
                    if inspect.isawaitable(result):
                        result = await result
            else:
                result = credential()
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            raise CredentialError(f"the credential failed to give a token: {type(exc).__name__}") from exc
        token, expires_on = _unpack_token(result)
        check_header_value("Authorization", token, secret=True)
        if expires_on is not None:
            self._token, self._expires_on = token, expires_on
        return token


def _retrieve(future: asyncio.Future[str]) -> None:
    # Waiters re-raise the error; this keeps asyncio from also warning that nobody retrieved it.
    if not future.cancelled():
        future.exception()


def _unpack_token(result: Any) -> tuple[str, float | None]:
    token: Any
    expires_on: Any
    if isinstance(result, str):
        token, expires_on = result, None
    else:
        token = getattr(result, "token", None)
        expires_on = getattr(result, "expires_on", None)
    if not isinstance(token, str) or not token:
        raise CredentialError(f"the credential returned {type(result).__name__}, not a token str or an AccessToken")
    if expires_on is not None and not isinstance(expires_on, (int, float)):
        expires_on = None
    return token, None if expires_on is None else float(expires_on)
