"""Which forward proxy a client's requests go through: ``proxy=``, or the environment as urllib reads it.

A client talks to one host, so the choice is made once, when the client is built. The proxy URL's
credentials are kept apart from it and sent as a ``Proxy-Authorization: Basic`` header: in the request itself
when the endpoint is plain http (the proxy forwards that request), and only in the ``CONNECT`` request that
opens the tunnel when it is https (so they never reach the endpoint). The credentials are never part of a
repr, a message or anything the client logs.
"""

from __future__ import annotations

import base64
import logging
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs
from yarl import URL

from azml_client._exceptions import ConfigurationError

__all__ = ["ProxyRoute", "ProxySetting", "parse_proxy_url", "resolve_proxy"]

logger = logging.getLogger("azml_client")

#: What ``EndpointClient(proxy=...)`` accepts: None (the environment), False (no proxy) or a proxy URL.
ProxySetting = str | Literal[False] | None

_PROXY_AUTHORIZATION = "Proxy-Authorization"

#: urllib's NO_PROXY rule; public in urllib.request (and what urlopen uses on Linux), missing from typeshed.
_proxy_bypass_environment: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


@attrs.frozen(slots=True, repr=False)
class ProxyRoute:
    """The forward proxy of one client, with what ``session.post`` needs to go through it.

    Attributes:
        url: the proxy's URL without credentials (``http://host:port``).
        source: where it came from: ``"proxy="`` or the environment variable's name (``"HTTPS_PROXY"``...).
        authorization: the ``Proxy-Authorization`` value built from the URL's credentials, or None.
        tunnel: whether requests tunnel through it with ``CONNECT`` (an https endpoint).
    """

    url: URL
    source: str
    authorization: str | None = None
    tunnel: bool = True

    @property
    def name(self) -> str:
        """``host:port`` of the proxy: what messages name, never with credentials."""
        return f"{self.url.host_subcomponent}:{self.url.port}"

    @property
    def label(self) -> str:
        """How error messages name it: ``the proxy host:port (set by HTTPS_PROXY)``, never with credentials."""
        return f"the proxy {self.name} (set by {self.source})"

    def request_headers(self) -> Mapping[str, str]:
        """Headers to add to every request: the proxy credentials when the proxy forwards the request itself."""
        if self.authorization is None or self.tunnel:
            return {}
        return {_PROXY_AUTHORIZATION: self.authorization}

    def post_options(self) -> dict[str, Any]:
        """The keywords of ``session.post`` that send a request through this proxy."""
        options: dict[str, Any] = {"proxy": self.url}
        if self.authorization is not None and self.tunnel:
            options["proxy_headers"] = {_PROXY_AUTHORIZATION: self.authorization}
        return options

    def __repr__(self) -> str:
        auth = ", auth=True" if self.authorization is not None else ""
        return f"ProxyRoute({str(self.url)!r}, source={self.source!r}{auth})"


def resolve_proxy(setting: ProxySetting, target: URL) -> ProxyRoute | None:
    """Return the proxy that requests to ``target`` go through, or None for a direct connection.

    ``setting`` None reads the environment with urllib's rule: ``https_proxy`` / ``HTTPS_PROXY`` for an https
    target, ``http_proxy`` / ``HTTP_PROXY`` for an http one (the lower-case name wins, as in
    :func:`urllib.request.getproxies_environment`), unless ``no_proxy`` / ``NO_PROXY`` matches the target
    (:func:`urllib.request.proxy_bypass_environment`). Loopback hosts are not exempt: list them in
    ``NO_PROXY`` to keep them direct. ``ALL_PROXY`` is not read (urllib does not read it either). A value
    without a scheme (``proxy.corp:3128``) means an http proxy. ``setting`` False means no proxy; a string is
    the proxy for every request, ``NO_PROXY`` notwithstanding.

    Raises:
        ConfigurationError: the proxy URL is not a valid http(s) URL with a host (the message names where it
            came from, never its credentials), or ``setting`` is neither None, False nor a str.
    """
    tunnel = target.scheme == "https"
    if setting is False:
        return None
    if setting is None:
        proxies = urllib.request.getproxies_environment()
        scheme = "https" if tunnel else "http"
        raw = proxies.get(scheme)
        if not raw:
            return None
        if _proxy_bypass_environment(_bypass_host(target), proxies):
            logger.debug("requests to %s go direct: NO_PROXY lists the host", target.host)
            return None
        if "://" not in raw:
            raw = "http://" + raw
        route = parse_proxy_url(raw, source=f"{scheme.upper()}_PROXY", tunnel=tunnel)
    elif isinstance(setting, str):
        route = parse_proxy_url(setting, source="proxy=", tunnel=tunnel)
    else:
        raise ConfigurationError(f"proxy must be None, False or a proxy URL str, got {type(setting).__name__}")
    if logger.isEnabledFor(logging.DEBUG):
        auth = " with proxy credentials" if route.authorization is not None else ""
        how = "tunnelled with CONNECT" if tunnel else "forwarded"
        logger.debug("requests to %s go through %s%s, %s", target.host, route.label, auth, how)
    return route


def parse_proxy_url(raw: str, *, source: str, tunnel: bool) -> ProxyRoute:
    """Validate a proxy URL and split off its credentials.

    Raises:
        ConfigurationError: not a URL, not http/https, or no host; the message never shows the URL itself,
            which may hold a password.
    """
    where = "the proxy URL" + (" given as proxy=" if source == "proxy=" else f" in {source}")
    text = raw.strip()
    if not text:
        raise ConfigurationError(f"{where} is empty; pass proxy=False for no proxy")
    try:
        url = URL(text)
        url.port  # noqa: B018  # an invalid port raises only when read
    except (ValueError, TypeError):
        raise ConfigurationError(f"{where} is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        # Without "://" what yarl calls the scheme may be a user name: name only a real scheme.
        shown = f"the scheme {url.scheme!r}" if "://" in text else "no scheme"
        raise ConfigurationError(f"{where} has {shown}; it must be an http:// or https:// URL (http://host:port)")
    if not url.host:
        raise ConfigurationError(f"{where} has no host; it must look like http://[user:password@]host:port")
    authorization = None
    if url.user is not None or url.password is not None:
        login = url.user or ""
        if ":" in login:
            raise ConfigurationError(f"{where} has a ':' in its user name")
        credentials = f"{login}:{url.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return ProxyRoute(url=url.origin(), source=source, authorization=authorization, tunnel=tunnel)


def _bypass_host(target: URL) -> str:
    """The host as urllib's ``Request.host`` gives it to ``proxy_bypass``: ``host[:port]``, the port if explicit."""
    host = target.host_subcomponent or ""
    return host if target.explicit_port is None else f"{host}:{target.explicit_port}"
