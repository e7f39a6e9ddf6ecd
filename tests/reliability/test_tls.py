"""TLS: verification is on by default, and a custom CA (path or SSLContext) works; certificates made at test time."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import azml_client as az
from azml_client.testing import MockEndpoint, echo_text

from .probes import KEY

trustme = pytest.importorskip("trustme", reason="the dev extra installs trustme")

NO_RETRY = az.RetryPolicy.none()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
async def https_ep(ca: trustme.CA) -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY, ssl_context=_server_context(ca, "127.0.0.1", "localhost")) as endpoint:
        assert endpoint.url.startswith("https://")
        yield endpoint


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_verification_is_on_by_default_and_nothing_is_sent(https_ep: MockEndpoint) -> None:
    async with az.LLM(https_ep.url, KEY, retry=az.RetryPolicy(max_retries=2, initial_delay=0.01)) as llm:
        with pytest.raises(az.APIConnectionError, match="TLS verification failed") as info:
            await llm.ainvoke("hello")
    assert info.value.attempts == 1  # a certificate error is not retried
    assert https_ep.request_count == 0  # the key never left: the handshake failed first
    assert KEY not in str(info.value)


async def test_a_ca_bundle_path_is_trusted(https_ep: MockEndpoint, ca_file: str) -> None:
    async with az.LLM(https_ep.url, KEY, ssl=ca_file) as llm:
        assert await llm.ainvoke("over tls") == echo_text("over tls")
    assert https_ep.request_count == 1


async def test_an_ssl_context_is_used(https_ep: MockEndpoint, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with az.ChatModel(https_ep.url, KEY, api_type="serverless", ssl=context) as chat:
        assert (await chat.ainvoke("over tls")).content == echo_text("over tls")
        chunks = [chunk.content async for chunk in chat.astream("streamed over tls")]
    assert "".join(chunks) == echo_text("streamed over tls")


async def test_a_certificate_for_another_host_fails_even_from_a_trusted_ca(ca: trustme.CA, ca_file: str) -> None:
    async with MockEndpoint(api_key=KEY, ssl_context=_server_context(ca, "other.example")) as endpoint:
        async with az.LLM(endpoint.url, KEY, ssl=ca_file, retry=NO_RETRY) as llm:
            with pytest.raises(az.APIConnectionError):
                await llm.ainvoke("hello")
        assert endpoint.request_count == 0


async def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(az.ConfigurationError, match="CA bundle"):
        az.EndpointClient("https://x.example/score", KEY, ssl=str(tmp_path / "missing.pem"))


async def test_switching_verification_off_works_and_says_so(
    https_ep: MockEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="azml_client")
    async with az.LLM(https_ep.url, KEY, ssl=False) as llm:
        assert await llm.ainvoke("unverified") == echo_text("unverified")
    assert "verification is switched off" in caplog.text


def test_keys_to_loopback_or_over_https_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="azml_client")
    az.EndpointClient("http://127.0.0.1:9/score", KEY)
    az.EndpointClient("http://localhost:9/score", KEY)
    az.EndpointClient("http://[::1]:9/score", KEY)
    az.EndpointClient("https://tls-only.example/score", KEY)
    az.EndpointClient("http://no-key.example/score")
    assert "plain http" not in caplog.text
