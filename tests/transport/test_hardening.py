"""Hostile and odd answers, secrets in headers, shared token fetches, closing under load (issue: hardening)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import azml_client as az
from azml_client.testing import Fault, MockEndpoint
from tests.servers import serving

KEY = "hardening-key"
CAP = 1024 * 1024  # 1 MiB


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


# 200 MiB of zeros, about 200 KB on the wire.
BOMB = _gzip(b"\0" * (200 * 1024 * 1024))


@pytest.fixture
async def bomb_server() -> AsyncIterator[str]:
    """Answers every POST with a gzip bomb: as JSON, and on /sse as an event stream."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        kind = "text/event-stream" if request.path.endswith("/sse") else "application/json"
        return web.Response(body=BOMB, headers={"Content-Type": kind, "Content-Encoding": "gzip"})

    async with serving(handle) as url:
        yield url


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def test_a_gzip_bomb_stops_at_the_decoded_size_cap(bomb_server: str) -> None:
    assert len(BOMB) < CAP  # the wire size is under the cap: only the decoded size can trip it
    before = _rss()
    retry = az.RetryPolicy.none()
    async with az.EndpointClient(bomb_server + "/score", max_response_size=CAP, retry=retry) as client:
        with pytest.raises(az.ResponseTooLargeError, match="max_response_size"):
            await client.post(b"{}")
        # A streaming call whose answer is not an event stream reads a whole body: capped the same way.
        with pytest.raises(az.ResponseTooLargeError):
            async with client.stream(b"{}") as events:
                [event async for event in events]
        # An event stream is capped on its decoded size too.
        with pytest.raises(az.ResponseTooLargeError, match="event stream"):
            async with client.stream(b"{}", path="/sse") as events:
                [event async for event in events]
    assert _rss() - before < 64 * CAP  # bounded near the cap, not 200 MiB


@pytest.mark.parametrize("name", ["api-key", "Ocp-Apim-Subscription-Key", "x-api-key", "X-My-Token", "Cookie"])
def test_a_credential_header_value_is_never_echoed(name: str, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-canary-0042"
    with pytest.raises(az.ConfigurationError) as caught:
        az.EndpointClient("https://x.example/score", headers={name: secret + "\n"})
    assert secret not in str(caught.value)
    assert name in str(caught.value)
    client = az.EndpointClient("https://x.example/score", headers={name: secret})
    assert secret not in repr(client)


def test_a_harmless_header_value_is_still_shown() -> None:
    with pytest.raises(az.ConfigurationError, match="'v1\\\\n'"):
        az.EndpointClient("https://x.example/score", headers={"X-Client-Version": "v1\n"})


class _CountingCredential:
    """An azure-core-shaped credential that takes a while and counts its calls (sync or async)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        import time

        with self._lock:
            self.calls += 1
        time.sleep(0.05)
        return type("AccessToken", (), {"token": KEY, "expires_on": time.time() + 3600})()


class _AsyncCountingCredential:
    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: object) -> object:
        import time

        self.calls += 1
        await asyncio.sleep(0.05)
        return type("AccessToken", (), {"token": KEY, "expires_on": time.time() + 3600})()


@pytest.mark.parametrize("credential_type", [_CountingCredential, _AsyncCountingCredential])
async def test_concurrent_first_calls_share_one_token_fetch(credential_type: type) -> None:
    credential = credential_type()
    async with MockEndpoint(api_key=KEY) as ep, az.LLM(ep.url, credential=credential) as llm:
        texts = await asyncio.gather(*(llm.ainvoke(f"p{i}") for i in range(20)))
    assert texts == [f"echo: p{i}" for i in range(20)]
    assert credential.calls == 1


async def test_a_failed_shared_fetch_fails_every_waiter_with_a_credential_error() -> None:
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("no login")

    async with MockEndpoint(api_key=KEY) as ep, az.LLM(ep.url, credential=broken) as llm:
        outcomes = await asyncio.gather(*(llm.ainvoke("x") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(outcome, az.CredentialError) for outcome in outcomes)
    assert calls == 1
    assert ep.request_count == 0


async def test_closing_a_client_with_calls_in_flight_gives_a_typed_error_that_blames_the_close() -> None:
    async with MockEndpoint(api_key=KEY, latency=0.5) as ep:
        client = az.EndpointClient(ep.url, KEY, retry=az.RetryPolicy.none())
        llm = az.LLM(client=client)
        calls = [asyncio.ensure_future(llm.ainvoke(f"p{i}")) for i in range(4)]
        await asyncio.sleep(0.1)
        await client.aclose()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        late = await asyncio.gather(llm.ainvoke("late"), return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, az.APIConnectionError), outcome
        assert "closed while this call was in flight" in str(outcome)
    assert isinstance(late[0], az.ConfigurationError)
    assert "closed" in str(late[0])


def test_closing_a_model_under_its_sync_twins_gives_a_typed_error() -> None:
    loop = asyncio.new_event_loop()
    ep = MockEndpoint(api_key=KEY, latency=1.0)
    loop.run_until_complete(ep.start())
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()
    try:
        llm = az.LLM(ep.url, KEY, retry=az.RetryPolicy.none())
        outcome: list[BaseException | str] = []

        def call() -> None:
            try:
                outcome.append(llm.invoke("x"))
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        threading.Event().wait(0.2)
        llm.close()
        caller.join(10)
        assert len(outcome) == 1
        assert isinstance(outcome[0], az.APIConnectionError), outcome
        assert "closed while this call was in flight" in str(outcome[0])
    finally:
        asyncio.run_coroutine_threadsafe(ep.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        server.join(10)
        loop.close()


@pytest.mark.parametrize("timeout", [float("inf"), "inf", az.Timeout(connect=float("inf"), read=float("inf"))])
async def test_an_infinite_timeout_means_no_limit(timeout: object, monkeypatch: pytest.MonkeyPatch) -> None:
    async with MockEndpoint() as ep, az.LLM(ep.url, timeout=timeout) as llm:  # type: ignore[arg-type]
        assert await llm.ainvoke("x") == "echo: x"
    monkeypatch.setenv("AZUREML_TIMEOUT", "inf")
    async with MockEndpoint() as ep, az.LLM(ep.url) as llm:
        assert llm.client.timeout.total is None
        assert await llm.ainvoke("y") == "echo: y"


async def test_no_credential_header_reaches_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="azml_client")
    secret = "sk-canary-log-77"
    async with MockEndpoint() as ep:
        ep.enqueue(Fault.status(503))
        retry = az.RetryPolicy(initial_delay=0.01)
        async with az.LLM(ep.url, secret, headers={"api-key": secret}, retry=retry) as llm:
            await llm.ainvoke("x")
    assert "retrying" in caplog.text
    assert secret not in caplog.text


NOTEBOOK = """
import asyncio, threading
import azml_client as az
from azml_client.testing import MockEndpoint

server_loop = asyncio.new_event_loop()
ep = MockEndpoint()
server_loop.run_until_complete(ep.start())
threading.Thread(target=server_loop.run_forever, daemon=True).start()

loop = asyncio.new_event_loop()  # a notebook's loop: it stays open and nobody closes anything
llm = az.LLM(ep.url)
print(loop.run_until_complete(llm.ainvoke("x")))
shared = az.EndpointClient(ep.url)
print(loop.run_until_complete(az.LLM(client=shared).ainvoke("y")))
"""


def test_models_left_open_on_an_open_loop_do_not_warn_at_exit(tmp_path: object) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", NOTEBOOK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["echo:", "x", "echo:", "y"]
    for warning in ("Unclosed client session", "Unclosed connector", "unclosed transport", "unclosed <socket"):
        assert warning not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "url",
    ["https://<name>.<region>.inference.ml.azure.com/score", "https://{endpoint}.eastus.inference.ml.azure.com"],
)
def test_a_placeholder_url_is_refused_before_sending(url: str) -> None:
    with pytest.raises(az.ConfigurationError, match="placeholder"):
        az.EndpointClient(url, "k")


async def test_a_424_names_the_model_containers_own_status_and_reason() -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        headers = {"ms-azureml-model-error-statuscode": "500", "ms-azureml-model-error-reason": "model_error"}
        return web.json_response(
            {"message": "An unexpected error occurred in scoring script."}, status=424, headers=headers
        )

    async with serving(handle, "/score") as base, az.LLM(f"{base}/score", "k") as llm:
        with pytest.raises(az.ModelError) as caught:
            await llm.ainvoke("x")
    assert "the model container answered 500: model_error" in str(caught.value)
    assert caught.value.headers["ms-azureml-model-error-reason"] == "model_error"
