"""Proxies: the environment (urllib's rule), ``proxy=False`` and ``proxy="http://user:pass@host:port"``.

Every test runs a real forward proxy on 127.0.0.1, written below: it reads each request head, checks
``Proxy-Authorization`` when it has credentials (407 otherwise), forwards absolute-form HTTP requests to the
target over a plain asyncio connection, tunnels ``CONNECT`` requests, relays the answers and records what it
relayed. The suite's conftest clears the proxy variables, so each test sets the ones it means.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

import azml_client as az
from azml_client._transport import EndpointClient
from azml_client.testing import MockEndpoint

KEY = "sk-canary-proxy-1"
USER = "proxyuser"
PASSWORD = "pr0xy-s3cret-canary"
GPT2_BODY = {"inputs": {"input_string": ["Hi"]}, "parameters": {}}
CHAT_BODY = {"messages": [{"role": "user", "content": "Hello"}]}
NO_RETRY = az.RetryPolicy.none()
HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ForwardProxy:
    """A forward proxy on 127.0.0.1: absolute-form HTTP requests are forwarded, CONNECT requests tunnelled.

    Every request it takes gets a fresh upstream connection and ``Connection: close`` on the answer, so one
    relayed request is one entry of :attr:`relayed`.
    """

    def __init__(self, credentials: tuple[str, str] | None = None, *, connect_status: int = 200) -> None:
        self._expected = None if credentials is None else basic(*credentials)
        self._connect_status = connect_status
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.relayed: list[str] = []  # "POST http://127.0.0.1:PORT/score", "CONNECT 127.0.0.1:PORT"
        self.refused: list[str] = []  # requests answered 407 (or connect_status)
        self.authorizations: list[str | None] = []  # the Proxy-Authorization of every request head

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port: int = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._one_request(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]
        found = {name.lower(): value for name, value in headers}
        authorization = found.get("proxy-authorization")
        self.authorizations.append(authorization)
        body = await reader.readexactly(int(found.get("content-length", "0")))
        assert "chunked" not in found.get("transfer-encoding", ""), "the client sent a chunked body"
        if self._expected is not None and authorization != self._expected:
            self.refused.append(f"{method} {target}")
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nwho are u?"
            )
            await writer.drain()
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return
        parts = urlsplit(target)
        assert parts.scheme == "http", f"not an absolute-form target: {target}"
        assert parts.hostname, f"not an absolute-form target: {target}"
        self.relayed.append(f"{method} {target}")
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            out = [f"{method} {path or '/'} HTTP/1.1"]
            out += [f"{name}: {value}" for name, value in headers if name.lower() not in HOP_BY_HOP]
            out.append("Connection: close")
            up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            answer_head = await up_reader.readuntil(b"\r\n\r\n")
            kept = [
                line
                for line in answer_head.split(b"\r\n")
                if line and not line.lower().startswith((b"connection:", b"keep-alive:"))
            ]
            writer.write(b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n")
            while chunk := await up_reader.read(65536):  # relayed as it comes: streams stay streams
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connect_status != 200:
            self.refused.append(f"CONNECT {target}")
            writer.write(f"HTTP/1.1 {self._connect_status} No\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            return
        host, _, port = target.rpartition(":")
        self.relayed.append(f"CONNECT {target}")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            with contextlib.suppress(Exception):
                sink.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as forward:
        yield forward


@pytest.fixture
async def auth_proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy((USER, PASSWORD)) as forward:
        yield forward


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening, kept until the test ends)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert basic(USER, PASSWORD).split()[1] not in text
        assert basic(USER, "wrong").split()[1] not in text


# ---------------------------------------------------------------- the environment, urllib's rule


@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy"])
async def test_the_environments_http_proxy_carries_loopback_requests(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, proxy.url)
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        assert client.proxy == proxy.url
        response = await client.post(GPT2_BODY)
    assert response.status == 200
    assert proxy.relayed == [f"POST {ep.score_url}"]
    assert ep.request_count == 1
    assert ep.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the endpoint's own auth got through


async def test_the_lower_case_variable_wins_as_in_urllib(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, dead_port: int
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("http_proxy", proxy.url)
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        await client.post(GPT2_BODY)
    assert len(proxy.relayed) == 1


async def test_a_value_without_scheme_is_an_http_proxy(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        await client.post(GPT2_BODY)
    assert len(proxy.relayed) == 1


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "ALL_PROXY"])
async def test_an_http_endpoint_ignores_the_other_schemes_proxy(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, proxy.url)
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        assert client.proxy is None
        await client.post(GPT2_BODY)
    assert proxy.relayed == []
    assert ep.request_count == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NO_PROXY", "127.0.0.1"),
        ("no_proxy", "localhost, 127.0.0.1"),
        ("NO_PROXY", "*"),
        ("NO_PROXY", "example.com,.0.0.1"),  # urllib's suffix rule
        ("NO_PROXY", "127.0.0.1:{port}"),
    ],
)
async def test_no_proxy_keeps_the_emulator_direct(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv(name, value.format(port=ep.port))
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        assert client.proxy is None
        await client.post(GPT2_BODY)
    assert proxy.relayed == []
    assert ep.request_count == 1


async def test_no_proxy_for_other_hosts_leaves_the_proxy_in_place(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.2,127.0.0.1:1")
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        await client.post(GPT2_BODY)
    assert len(proxy.relayed) == 1


async def test_the_environment_is_read_once_when_the_client_is_built(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY) as client:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        await client.post(GPT2_BODY)
    assert proxy.relayed == []


# ---------------------------------------------------------------- proxy=False and proxy="http://..."


async def test_proxy_false_ignores_the_environment(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY, proxy=False) as client:
        assert client.proxy is None
        await client.post(GPT2_BODY)
    assert proxy.relayed == []
    assert ep.request_count == 1


async def test_models_pass_proxy_through_to_their_client(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, dead_port: int
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port}")
    async with az.LLM(ep.score_url, KEY, formatter="gpt2", retry=NO_RETRY, proxy=False) as llm:
        assert await llm.ainvoke("Hi") == "echo: Hi"
    async with az.ChatModel(ep.url, KEY, api_type="serverless", retry=NO_RETRY, proxy=proxy.url) as chat:
        assert (await chat.ainvoke("Hi")).content == "echo: Hi"
    assert proxy.relayed == [f"POST {ep.url}/v1/chat/completions"]


async def test_a_proxy_url_with_credentials_authenticates(
    ep: MockEndpoint, auth_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, dead_port: int
) -> None:
    # proxy= is the proxy of every request: neither HTTP_PROXY nor NO_PROXY changes that.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with EndpointClient(ep.url, KEY, retry=NO_RETRY, proxy=auth_proxy.url_with(USER, PASSWORD)) as client:
        assert client.proxy == auth_proxy.url
        assert_no_secret(repr(client))
        assert f"proxy={auth_proxy.url!r}" in repr(client)
        for _ in range(3):
            await client.post(GPT2_BODY)
    assert auth_proxy.authorizations == [basic(USER, PASSWORD)] * 3
    assert len(auth_proxy.relayed) == 3
    assert auth_proxy.refused == []


async def test_percent_encoded_credentials_are_decoded(ep: MockEndpoint) -> None:
    async with ForwardProxy(("us er", "p@ss:word")) as forward:
        url = f"http://us%20er:p%40ss%3Aword@127.0.0.1:{forward.port}"
        async with EndpointClient(ep.url, KEY, retry=NO_RETRY, proxy=url) as client:
            await client.post(GPT2_BODY)
    assert forward.authorizations == [basic("us er", "p@ss:word")]


@pytest.mark.parametrize("password", ["wrong", None])
async def test_a_wrong_or_missing_proxy_password_is_a_407_that_shows_no_secret(
    ep: MockEndpoint, auth_proxy: ForwardProxy, caplog: pytest.LogCaptureFixture, password: str | None
) -> None:
    caplog.set_level(logging.DEBUG, logger="azml_client")
    url = auth_proxy.url if password is None else auth_proxy.url_with(USER, password)
    async with EndpointClient(ep.url, KEY, proxy=url) as client:  # the default retry policy
        with pytest.raises(az.APIStatusError) as caught:
            await client.post(GPT2_BODY)
    error = caught.value
    assert error.status_code == 407
    assert error.attempts == 1  # a 407 is not retried
    assert str(error).startswith(
        f"HTTP 407: proxy authentication required: the proxy 127.0.0.1:{auth_proxy.port} (set by proxy=) refused"
    )
    assert error.headers["proxy-authenticate"] == 'Basic realm="test"'
    assert_no_secret(str(error), repr(error), caplog.text, repr(client))
    assert "wrong" not in caplog.text
    assert f"127.0.0.1:{auth_proxy.port}" in caplog.text  # the DEBUG log says which proxy, without its password
    assert ep.request_count == 0
    assert len(auth_proxy.refused) == 1


async def test_a_dead_proxy_is_a_connection_error_naming_it(
    ep: MockEndpoint, dead_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="azml_client")
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{dead_port}"
    async with EndpointClient(ep.url, KEY, proxy=url, retry=NO_RETRY) as client:
        with pytest.raises(az.APIConnectionError) as caught:
            await client.post(GPT2_BODY)
    error = caught.value
    assert type(error) is az.APIConnectionError
    assert str(error).startswith(f"cannot connect to the proxy 127.0.0.1:{dead_port} (set by proxy=): ")
    assert error.retryable
    assert_no_secret(str(error), repr(error), caplog.text)
    assert ep.request_count == 0


async def test_a_dead_proxy_from_the_environment_says_which_variable(
    ep: MockEndpoint, dead_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead_port}")
    fast = az.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    async with EndpointClient(ep.url, KEY, retry=fast) as client:
        with pytest.raises(az.APIConnectionError, match=f"the proxy 127.0.0.1:{dead_port} \\(set by HTTP_PROXY\\)"):
            await client.post(GPT2_BODY)
        with pytest.raises(az.APIConnectionError) as caught:
            await client.post(GPT2_BODY)
    assert caught.value.attempts == 3  # a proxy that is down is retried like any connection error


# ---------------------------------------------------------------- streaming


async def test_a_serverless_stream_goes_through_the_proxy(ep: MockEndpoint, auth_proxy: ForwardProxy) -> None:
    url = auth_proxy.url_with(USER, PASSWORD)
    async with (
        EndpointClient(ep.url, KEY, api_type="serverless", retry=NO_RETRY, proxy=url) as client,
        client.stream({**CHAT_BODY, "stream": True}, route="chat") as events,
    ):
        data = [event.data async for event in events]
    assert data[-1] == "[DONE]"
    assert len(data) > 2
    assert auth_proxy.relayed == [f"POST {ep.url}/v1/chat/completions"]
    assert ep.requests[0].headers["accept"] == "text/event-stream"


async def test_chat_model_astream_goes_through_the_environments_proxy(
    ep: MockEndpoint, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with az.ChatModel(ep.url, KEY, api_type="serverless", retry=NO_RETRY) as chat:
        text = "".join([chunk.content async for chunk in chat.astream("Hello there")])
    assert text == "echo: Hello there"
    assert proxy.relayed == [f"POST {ep.url}/v1/chat/completions"]


# ---------------------------------------------------------------- https through CONNECT


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_ep(ca: trustme.CA) -> AsyncIterator[MockEndpoint]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with MockEndpoint(api_key=KEY, ssl_context=context) as endpoint:
        yield endpoint


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_tunnels_through_the_environments_https_proxy_with_credentials(
    https_ep: MockEndpoint, auth_proxy: ForwardProxy, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url_with(USER, PASSWORD))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # the other scheme's proxy is not used
    async with EndpointClient(https_ep.url, KEY, retry=NO_RETRY, ssl=client_context(ca)) as client:
        assert client.proxy == auth_proxy.url
        await client.post(GPT2_BODY)
        await client.post(GPT2_BODY)  # the tunnel is kept alive and reused
    assert auth_proxy.relayed == [f"CONNECT 127.0.0.1:{https_ep.port}"]
    assert auth_proxy.authorizations == [basic(USER, PASSWORD)]
    assert https_ep.request_count == 2
    assert all("proxy-authorization" not in request.headers for request in https_ep.requests)


async def test_https_stream_through_connect(https_ep: MockEndpoint, proxy: ForwardProxy, ca: trustme.CA) -> None:
    async with az.ChatModel(
        https_ep.url, KEY, api_type="serverless", retry=NO_RETRY, ssl=client_context(ca), proxy=proxy.url
    ) as chat:
        text = "".join([chunk.content async for chunk in chat.astream("Hi")])
    assert text == "echo: Hi"
    assert proxy.relayed == [f"CONNECT 127.0.0.1:{https_ep.port}"]


async def test_a_connect_refused_for_credentials_is_a_407_that_shows_no_secret(
    https_ep: MockEndpoint, auth_proxy: ForwardProxy, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="azml_client")
    url = auth_proxy.url_with(USER, "wrong")
    async with EndpointClient(https_ep.url, KEY, ssl=client_context(ca), proxy=url) as client:
        with pytest.raises(az.APIStatusError) as caught:
            await client.post(GPT2_BODY)
    error = caught.value
    assert error.status_code == 407
    assert error.attempts == 1
    assert str(error).startswith(
        f"HTTP 407: proxy authentication required: the proxy 127.0.0.1:{auth_proxy.port} (set by proxy=) refused"
    )
    assert_no_secret(str(error), repr(error), caplog.text)
    assert https_ep.request_count == 0


async def test_a_connect_the_proxy_refuses_names_the_proxy(https_ep: MockEndpoint, ca: trustme.CA) -> None:
    async with (
        ForwardProxy(connect_status=403) as forward,
        EndpointClient(https_ep.url, KEY, ssl=client_context(ca), proxy=forward.url) as client,
    ):
        with pytest.raises(az.PermissionDeniedError) as caught:
            await client.post(GPT2_BODY)
    assert f"the proxy 127.0.0.1:{forward.port} (set by proxy=) did not open a tunnel" in str(caught.value)
    assert caught.value.status_code == 403
    assert https_ep.request_count == 0


# ---------------------------------------------------------------- validation and secrecy


@pytest.mark.parametrize(
    "url",
    [
        f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080",
        f"ftp://{USER}:{PASSWORD}@proxy",
        f"{USER}:{PASSWORD}@proxy:3128",  # no scheme
        f"http://{USER}:{PASSWORD}@:3128",  # no host
        "http://",
        f"http://{USER}:{PASSWORD}@proxy:99999",
        f"http://{USER}:{PASSWORD}@proxy:port",
        "",
    ],
)
def test_a_bad_proxy_url_is_a_configuration_error_without_its_password(url: str) -> None:
    with pytest.raises(az.ConfigurationError, match="the proxy URL given as proxy=") as caught:
        EndpointClient("https://x.inference.ml.azure.com/score", KEY, proxy=url)
    assert_no_secret(str(caught.value), repr(caught.value))


@pytest.mark.parametrize("value", [True, 8080, b"http://proxy:1"])
def test_proxy_must_be_none_false_or_a_str(value: object) -> None:
    with pytest.raises(az.ConfigurationError, match="proxy must be None, False or a proxy URL"):
        EndpointClient("https://x.inference.ml.azure.com/score", KEY, proxy=value)  # type: ignore[arg-type]


def test_a_bad_proxy_in_the_environment_names_the_variable_not_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080")
    with pytest.raises(az.ConfigurationError, match="in HTTPS_PROXY has the scheme 'socks5'") as caught:
        EndpointClient("https://x.inference.ml.azure.com/score", KEY)
    assert_no_secret(str(caught.value))
    # the variable is read only for the scheme it serves, and proxy=False reads none
    EndpointClient("http://127.0.0.1:1/score", KEY)
    EndpointClient("https://x.inference.ml.azure.com/score", KEY, proxy=False)


def test_a_saved_config_holds_no_proxy_credentials(tmp_path: Path) -> None:
    proxy = f"http://{USER}:{PASSWORD}@proxy.corp:3128"
    llm = az.LLM("https://x.inference.ml.azure.com/score", KEY, formatter="gpt2", proxy=proxy)
    assert llm.client.proxy == "http://proxy.corp:3128"
    path = tmp_path / "llm.json"
    llm.save(path)
    llm.close()
    assert_no_secret(path.read_text())
    assert USER not in path.read_text()


# ---------------------------------------------------------------- the suite's own isolation


def test_the_suite_runs_without_the_developers_proxy_variables() -> None:
    """What conftest promises: no proxy variable reaches a test (run for real by the test below)."""
    names = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    assert not [name for name in os.environ if name.lower() in names]
    assert EndpointClient("http://127.0.0.1:1/score", KEY).proxy is None


def test_proxy_variables_in_the_developers_environment_do_not_reach_tests(tmp_path: Path) -> None:
    dead = "http://127.0.0.1:1"
    env = {**os.environ, "HTTP_PROXY": dead, "https_proxy": dead, "ALL_PROXY": dead, "no_proxy": "nothing"}
    nodeid = f"{__file__}::test_the_suite_runs_without_the_developers_proxy_variables"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", nodeid],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
