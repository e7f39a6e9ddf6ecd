"""Endpoint URL rules: validation, ``/score`` for dedicated endpoints, and serverless chat/completions routes."""

from __future__ import annotations

import ipaddress
from typing import Literal

from yarl import URL

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError

__all__ = ["Route", "is_loopback", "parse_endpoint_url", "route_url"]

#: What a request asks of a serverless endpoint.
Route = Literal["chat", "completions"]

_SERVERLESS_SUFFIXES: dict[Route, str] = {"chat": "/chat/completions", "completions": "/completions"}


def parse_endpoint_url(raw: str, api_type: ApiType) -> URL:
    """Validate an endpoint URL and return it, with ``/score`` added to a dedicated URL that has no path.

    Raises:
        ConfigurationError: no scheme, a scheme other than http/https, or no host. The URL is in the message.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigurationError(
            "an endpoint URL is required: pass endpoint_url= or set AZUREML_ENDPOINT_URL "
            "(for example https://<name>.<region>.inference.ml.azure.com/score)"
        )
    text = raw.strip()
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"endpoint URL {text!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"endpoint URL {text!r} needs an http:// or https:// scheme "
            "(for example https://<name>.<region>.inference.ml.azure.com/score)"
        )
    if not url.host:
        raise ConfigurationError(f"endpoint URL {text!r} has no host")
    if any(mark in text for mark in "<>{}"):
        raise ConfigurationError(
            f"endpoint URL {text!r} still holds a placeholder (<...> or {{...}}): put in your endpoint's name and "
            "region, as shown on its Consume tab in Azure ML studio"
        )
    if url.user is not None or url.password is not None:
        raise ConfigurationError("endpoint URL must not carry credentials; pass api_key= or credential=")
    if api_type is ApiType.dedicated and url.path in ("", "/"):
        url = url.with_path("/score")
    return url.with_fragment(None)


def route_url(base: URL, api_type: ApiType, route: Route | None) -> URL:
    """Return the URL a request for ``route`` goes to.

    Dedicated endpoints serve every request on their own URL. Serverless endpoints: a URL that already ends
    in ``/chat/completions`` or ``/completions`` is used as it is, and a request for the other route is a
    ConfigurationError naming both; a base URL gets ``/v1/chat/completions`` or ``/v1/completions``
    (only ``/chat/completions`` or ``/completions`` when it already ends in ``/v1`` or ``/models``).
    """
    if api_type is ApiType.dedicated or route is None:
        return base
    path = base.path.rstrip("/")
    if path.endswith("/chat/completions"):
        served: Route | None = "chat"
    elif path.endswith("/completions"):
        served = "completions"
    else:
        served = None
    if served is not None:
        if served != route:
            kind = "a chat" if route == "chat" else "a completion"
            raise ConfigurationError(
                f"{kind} request cannot go to {base!s}: that URL serves {served} requests. "
                f"Use the endpoint's {_SERVERLESS_SUFFIXES[route]} URL or its base URL"
            )
        return base
    prefix = path if path.endswith(("/v1", "/models")) else path + "/v1"
    return base.with_path(prefix + _SERVERLESS_SUFFIXES[route], encoded=False).with_query(base.query)


def is_loopback(url: URL) -> bool:
    """Whether the URL's host is this machine (localhost or a loopback address)."""
    host = (url.host or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
