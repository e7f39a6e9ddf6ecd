"""EndpointClient against the emulator on loopback: URLs, headers, auth, retries, timeouts, caps, streams, errors."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

import azml_client as az
from azml_client._transport import EndpointClient, TokenProvider
from azml_client.testing import Fault, MockEndpoint

KEY = "sk-canary-7f3a9c1e"
GPT2_BODY = {"inputs": {"input_string": ["Hi"]}, "parameters": {}}
FAST_RETRY = az.RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint


def make(ep: MockEndpoint, **options: object) -> EndpointClient:
    options.setdefault("retry", FAST_RETRY)
    return EndpointClient(ep.url, KEY, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- URLs and headers


def test_dedicated_url_gets_score_and_any_path_is_kept() -> None:
    assert EndpointClient("https://x.inference.ml.azure.com", "k").endpoint_url.endswith("/score")
    assert EndpointClient("https://x.inference.ml.azure.com/", "k").endpoint_url.endswith("/score")
    assert EndpointClient("https://x/custom/predict", "k").endpoint_url == "https://x/custom/predict"


@pytest.mark.parametrize(
    ("url", "route", "expected"),
    [
        ("https://m.models.ai.azure.com", "chat", "https://m.models.ai.azure.com/v1/chat/completions"),
        ("https://m.models.ai.azure.com", "completions", "https://m.models.ai.azure.com/v1/completions"),
        ("https://m.models.ai.azure.com/v1", "chat", "https://m.models.ai.azure.com/v1/chat/completions"),
        ("https://m/v1/chat/completions", "chat", "https://m/v1/chat/completions"),
        ("https://m/chat/completions", "chat", "https://m/chat/completions"),
        ("https://m/v1/completions", "completions", "https://m/v1/completions"),
        (
            "https://r.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview",
            "chat",
            "https://r.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview",
        ),
        ("https://r/models?api-version=1", "chat", "https://r/models/chat/completions?api-version=1"),
    ],
)
def test_serverless_routes(url: str, route: str, expected: str) -> None:
    client = EndpointClient(url, "k", api_type="serverless")
    assert client.url_for(route) == expected  # type: ignore[arg-type]


def test_chat_body_to_completions_url_names_both() -> None:
    client = EndpointClient("https://m/v1/completions", "k", api_type="serverless")
    with pytest.raises(az.ConfigurationError, match=r"chat request .*https://m/v1/completions.*completions"):
        client.url_for("chat")


@pytest.mark.parametrize("url", ["", "example.com/score", "ftp://x/score", "https:///score", "https://u:p@x/score"])
def test_bad_urls_are_configuration_errors_with_the_url(url: str) -> None:
    with pytest.raises(az.ConfigurationError) as info:
        EndpointClient(url, "k")
    if url and "u:p" not in url:
        assert url in str(info.value)


def test_env_vars_fill_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", "https://e.inference.ml.azure.com/score")
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_TYPE", "serverless")
    monkeypatch.setenv("AZUREML_DEPLOYMENT_NAME", "blue")
    monkeypatch.setenv("AZUREML_TIMEOUT", "12")
    client = EndpointClient()
    assert (client.api_type, client.deployment_name, client.timeout.total, client.auth_kind) == (
        az.ApiType.serverless,
        "blue",
        12.0,
        "key",
    )


@pytest.mark.parametrize(
    "options",
    [
        {"deployment_name": "blue\r\nX-Evil: 1"},
        {"headers": {"X-Trace": "a\nb"}},
        {"api_key": "key\r\nInjected: yes"},
    ],
)
def test_crlf_in_header_values_is_refused_before_sending(options: dict[str, object]) -> None:
    options.setdefault("api_key", "k")
    with pytest.raises(az.ConfigurationError, match="control character") as info:
        EndpointClient("https://x/score", **options)  # type: ignore[arg-type]
    assert "Injected" not in str(info.value)


async def test_headers_sent(ep: MockEndpoint) -> None:
    async with make(ep, deployment_name="gpt2", headers={"X-Trace": "t-1"}) as client:
        await client.post(GPT2_BODY, headers={"Accept": "application/json; q=1"})
    (seen,) = ep.requests
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["azureml-model-deployment"] == "gpt2"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json; q=1"
    assert seen.headers["user-agent"].startswith(f"azml-client/{az.__version__}")
    assert seen.headers["x-trace"] == "t-1"
    assert seen.path == "/score"
    assert orjson.loads(seen.body) == GPT2_BODY


async def test_response_fields(ep: MockEndpoint) -> None:
    async with make(ep) as client:
        resp = await client.post(GPT2_BODY, headers={"x-request-id": "req-42"})
    assert resp.status == 200
    assert resp.json() == [{"0": "echo: Hi"}]
    assert resp.request_id == "req-42"
    assert resp.attempts == 1
    assert resp.elapsed > 0
    assert resp.deployment == "gpt2"


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503),
        Fault.status(500),
        Fault.status(502),
        Fault.status(504),
        Fault.status(408),
        Fault.status(429, headers={"retry-after-ms": "5"}),
        Fault.drop(),
        Fault.truncate(),
    ],
)
async def test_transient_faults_are_retried(ep: MockEndpoint, fault: Fault) -> None:
    ep.enqueue(fault, fault)
    async with make(ep) as client:
        resp = await client.post(GPT2_BODY)
    assert resp.json() == [{"0": "echo: Hi"}]
    assert resp.attempts == 3
    assert ep.request_count == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, az.BadRequestError),
        (401, az.AuthenticationError),
        (403, az.PermissionDeniedError),
        (404, az.NotFoundError),
        (413, az.RequestTooLargeError),
        (422, az.UnprocessableEntityError),
        (424, az.ModelError),
    ],
)
async def test_permanent_statuses_are_not_retried(ep: MockEndpoint, status: int, error: type[Exception]) -> None:
    ep.enqueue(Fault.status(status, body={"error": {"message": f"detail-{status}"}}, headers={"x-request-id": "r9"}))
    async with make(ep) as client:
        with pytest.raises(error) as info:
            await client.post(GPT2_BODY)
    assert ep.request_count == 1
    exc = info.value
    assert isinstance(exc, az.APIStatusError)
    assert exc.status_code == status
    assert f"detail-{status}".encode() in exc.body
    assert f"detail-{status}" in str(exc)
    assert exc.request_id == "r9"
    assert exc.attempts == 1


async def test_424_explains_the_usual_cause(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(424, body="model failed: KeyError 'input_data'"))
    async with make(ep, deployment_name="gpt2") as client:
        with pytest.raises(az.ModelError, match="formatter") as info:
            await client.post(GPT2_BODY)
    assert "KeyError 'input_data'" in str(info.value)
    assert info.value.deployment == "gpt2"


async def test_retries_run_out_with_the_last_error(ep: MockEndpoint) -> None:
    ep.enqueue(*[Fault.status(503)] * 3)
    async with make(ep) as client:
        with pytest.raises(az.ServerError) as info:
            await client.post(GPT2_BODY)
    assert info.value.attempts == 3
    assert ep.request_count == 3


async def test_no_retry_policy(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.drop())
    async with make(ep, retry=az.RetryPolicy.none()) as client:
        with pytest.raises(az.APIConnectionError, match="closed the connection"):
            await client.post(GPT2_BODY)
    assert ep.request_count == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after-ms": "300"},
        {"x-ms-retry-after-ms": "300"},
        {"retry-after": "1"},
    ],
)
async def test_retry_after_is_honoured(ep: MockEndpoint, headers: dict[str, str]) -> None:
    ep.enqueue(Fault.status(429, headers=headers))
    async with make(ep) as client:
        started = time.monotonic()
        resp = await client.post(GPT2_BODY)
        waited = time.monotonic() - started
    assert resp.attempts == 2
    expected = float(headers.get("retry-after", 0)) or int(next(iter(headers.values()))) / 1000
    assert expected * 0.9 <= waited < expected + 1.0


async def test_retry_after_http_date(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(503, headers={"retry-after": email.utils.formatdate(time.time() + 1.2, usegmt=True)}))
    async with make(ep) as client:
        started = time.monotonic()
        await client.post(GPT2_BODY)
    # HTTP dates have a one-second resolution.
    assert 0.15 <= time.monotonic() - started < 2.5


async def test_retry_after_beyond_the_cap_fails_at_once_with_the_value(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(429, headers={"retry-after": "300"}))
    async with make(ep, retry=az.RetryPolicy(max_retry_after=60)) as client:
        started = time.monotonic()
        with pytest.raises(az.RateLimitError) as info:
            await client.post(GPT2_BODY)
    assert time.monotonic() - started < 1
    assert info.value.retry_after == 300
    assert "300" in str(info.value)
    assert ep.request_count == 1


# ---------------------------------------------------------------- auth


class FakeAsyncCredential:
    """The shape of azure-core's AsyncTokenCredential: get_token(*scopes) -> AccessToken."""

    def __init__(self, tokens: list[str], expires_in: float = 3600) -> None:
        self.tokens = tokens
        self.calls: list[tuple[str, ...]] = []
        self.expires_in = expires_in

    async def get_token(self, *scopes: str, **kwargs: object) -> object:
        self.calls.append(scopes)
        token = self.tokens[min(len(self.calls), len(self.tokens)) - 1]
        return type("AccessToken", (), {"token": token, "expires_on": int(time.time() + self.expires_in)})()


class FakeSyncCredential(FakeAsyncCredential):
    """The shape of azure-core's sync TokenCredential."""

    def get_token(self, *scopes: str, **kwargs: object) -> object:  # type: ignore[override]
        self.calls.append(scopes)
        token = self.tokens[min(len(self.calls), len(self.tokens)) - 1]
        return type("AccessToken", (), {"token": token, "expires_on": int(time.time() + self.expires_in)})()


@pytest.mark.parametrize("credential_cls", [FakeAsyncCredential, FakeSyncCredential])
async def test_token_is_cached_and_refreshed_once_on_401(
    ep: MockEndpoint, credential_cls: type[FakeAsyncCredential]
) -> None:
    ep.accepted_keys.clear()
    ep.accepted_keys.add("token-2")
    credential = credential_cls(["token-1", "token-2"])
    async with EndpointClient(ep.url, credential=credential, retry=FAST_RETRY) as client:
        assert client.auth_kind == "credential"
        resp = await client.post(GPT2_BODY)
        await client.post(GPT2_BODY)
    assert resp.status == 200
    assert credential.calls == [("https://ml.azure.com/.default",)] * 2
    assert [r.headers["authorization"] for r in ep.requests] == ["Bearer token-1"] + ["Bearer token-2"] * 2


async def test_token_near_expiry_is_refreshed(ep: MockEndpoint) -> None:
    ep.accepted_keys.update({"a", "b"})
    credential = FakeAsyncCredential(["a", "b"], expires_in=120)  # inside the 5-minute margin
    async with EndpointClient(ep.url, credential=credential) as client:
        await client.post(GPT2_BODY)
        await client.post(GPT2_BODY)
    assert len(credential.calls) == 2


async def test_second_401_after_refresh_is_raised(ep: MockEndpoint) -> None:
    credential = FakeAsyncCredential(["bad-1", "bad-2"])
    async with EndpointClient(ep.url, credential=credential, retry=FAST_RETRY) as client:
        with pytest.raises(az.AuthenticationError):
            await client.post(GPT2_BODY)
    assert ep.request_count == 2


async def test_plain_callable_credential(ep: MockEndpoint) -> None:
    async def provider() -> str:
        return KEY

    async with EndpointClient(ep.url, credential=provider) as client:
        assert (await client.post(GPT2_BODY)).status == 200


async def test_failing_credential_is_a_credential_error_not_an_http_answer(ep: MockEndpoint) -> None:
    def broken() -> str:
        raise RuntimeError("no az login (secret-ish detail)")

    async with EndpointClient(ep.url, credential=broken) as client:
        with pytest.raises(az.CredentialError, match="credential failed") as caught:
            await client.post(GPT2_BODY)
    assert not isinstance(caught.value, az.APIStatusError)  # no made-up 401: nothing was answered
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "secret-ish" not in str(caught.value)
    assert ep.request_count == 0


async def test_a_credential_returning_no_token_is_a_credential_error(ep: MockEndpoint) -> None:
    async with EndpointClient(ep.url, credential=lambda: 42) as client:  # type: ignore[arg-type, return-value]
        with pytest.raises(az.CredentialError, match="not a token"):
            await client.post(GPT2_BODY)
    assert ep.request_count == 0


def test_key_and_credential_together_is_refused() -> None:
    with pytest.raises(az.ConfigurationError, match="either api_key or credential"):
        EndpointClient("https://x/score", "k", credential=lambda: "t")
    assert "TokenProvider" in repr(TokenProvider(lambda: "t"))


# ---------------------------------------------------------------- timeouts


async def test_read_timeout_on_a_server_that_never_answers(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.hang())
    async with make(ep, timeout=az.Timeout(read=0.2), retry=az.RetryPolicy.none()) as client:
        started = time.monotonic()
        with pytest.raises(az.APITimeoutError, match="read timeout"):
            await client.post(GPT2_BODY)
    assert time.monotonic() - started < 2


async def test_timeouts_are_retried(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.hang())
    async with make(ep, timeout=az.Timeout(read=0.2)) as client:
        resp = await client.post(GPT2_BODY)
    assert resp.attempts == 2


async def test_total_timeout_covers_retries_and_backoff(ep: MockEndpoint) -> None:
    ep.enqueue(*[Fault.status(503)] * 10)
    policy = az.RetryPolicy(max_retries=10, initial_delay=0.2, max_delay=0.2, jitter=0)
    async with make(ep, timeout=az.Timeout(total=0.5), retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(az.ServerError):
            await client.post(GPT2_BODY)
    assert time.monotonic() - started < 1.5  # 0.5 s of total timeout, with room for a loaded machine
    assert 2 <= ep.request_count <= 3


async def test_total_timeout_mid_answer(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.slow(bytes_per_second=5))
    async with make(ep, timeout=az.Timeout(total=0.4, read=5), retry=az.RetryPolicy.none()) as client:
        with pytest.raises(az.APITimeoutError):
            await client.post(GPT2_BODY)


async def test_call_timeout_overrides_client_timeout(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.delay(0.5))
    async with make(ep, retry=az.RetryPolicy.none()) as client:
        with pytest.raises(az.APITimeoutError):
            await client.post(GPT2_BODY, timeout=0.2)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full, so new connections hang in the handshake."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_connect_timeout(full_backlog: int) -> None:
    client = EndpointClient(
        f"http://127.0.0.1:{full_backlog}/score", timeout=az.Timeout(connect=0.3, read=10), retry=az.RetryPolicy.none()
    )
    async with client:
        started = time.monotonic()
        with pytest.raises(az.APIConnectionError):
            await client.post(GPT2_BODY)
    assert time.monotonic() - started < 3


async def test_connection_refused_is_a_connection_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with EndpointClient(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as client:
        with pytest.raises(az.APIConnectionError) as info:
            await client.post(GPT2_BODY)
    assert info.value.attempts == 3


# ---------------------------------------------------------------- concurrency and size caps


async def test_max_concurrency_caps_requests_in_flight() -> None:
    async with MockEndpoint(latency=0.05) as endpoint:
        async with EndpointClient(endpoint.url, max_concurrency=4) as client:
            await asyncio.gather(*(client.post(GPT2_BODY) for _ in range(20)))
        assert endpoint.max_in_flight == 4
        assert endpoint.request_count == 20


async def test_response_size_cap_on_an_endless_body(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.endless())
    async with make(ep, max_response_size=64 * 1024, retry=az.RetryPolicy.none()) as client:
        with pytest.raises(az.ResponseTooLargeError, match="max_response_size"):
            await client.post(GPT2_BODY)


# ---------------------------------------------------------------- streaming

CHAT_STREAM = {"messages": [{"role": "user", "content": "one two three"}], "stream": True}


@pytest.mark.parametrize("line_ending", ["\n", "\r\n", "\r"])
async def test_stream_events(line_ending: str) -> None:
    async with (
        MockEndpoint(sse_line_ending=line_ending) as endpoint,
        EndpointClient(endpoint.url, api_type="serverless") as client,
    ):
        events = [e async for e in client.stream(CHAT_STREAM, route="chat")]
    assert events[-1].data == "[DONE]"
    chunks = [orjson.loads(e.data) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two three"


async def test_breaking_out_of_a_stream_releases_the_connection(ep: MockEndpoint) -> None:
    async with make(ep, api_type="serverless", max_concurrency=1) as client:
        for _ in range(3):  # with one slot, a leaked stream would block the next call forever
            async with client.stream(CHAT_STREAM, route="chat") as events:
                async for _event in events:
                    break
        resp = await asyncio.wait_for(client.post(GPT2_BODY, path="/score"), timeout=5)
    assert resp.status == 200
    await asyncio.sleep(0.05)
    assert ep.in_flight == 0


async def test_stream_cut_mid_way_is_a_typed_error(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.cut_stream(after_events=2))
    async with make(ep, api_type="serverless", max_concurrency=1) as client:
        received = []
        with pytest.raises(az.APIConnectionError, match="stream broke off"):
            async for event in client.stream(CHAT_STREAM, route="chat"):
                received.append(event)
        assert len(received) == 2
        assert (await client.post(GPT2_BODY, path="/score")).status == 200


async def test_stream_retries_before_the_first_event(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(503))
    async with make(ep, api_type="serverless") as client:
        stream = client.stream(CHAT_STREAM, route="chat")
        events = [e async for e in stream]
    assert events[-1].data == "[DONE]"
    assert ep.request_count == 2


async def test_stream_status_error_is_typed(ep: MockEndpoint) -> None:
    async with EndpointClient(ep.url, "wrong-key", api_type="serverless") as client:
        with pytest.raises(az.AuthenticationError):
            async for _ in client.stream(CHAT_STREAM, route="chat"):
                pass


async def test_stream_idle_read_timeout(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.slow(bytes_per_second=2))
    async with make(ep, api_type="serverless", timeout=az.Timeout(read=0.1), retry=az.RetryPolicy.none()) as client:
        with pytest.raises(az.APITimeoutError):
            async for _ in client.stream(CHAT_STREAM, route="chat"):
                pass


# ---------------------------------------------------------------- lifecycle and secrets


async def test_closed_client_refuses_new_calls(ep: MockEndpoint) -> None:
    client = make(ep)
    await client.post(GPT2_BODY)
    await client.aclose()
    assert client.closed
    with pytest.raises(az.ConfigurationError, match="closed"):
        await client.post(GPT2_BODY)


def test_client_survives_a_second_event_loop() -> None:
    async def scenario() -> None:
        async with MockEndpoint(api_key=KEY) as endpoint:
            client = EndpointClient(endpoint.url, KEY)

            async def call() -> int:
                return (await client.post(GPT2_BODY)).status

            # A second loop in another thread: the client opens a session there and never reuses this one.
            assert await asyncio.to_thread(asyncio.run, call()) == 200
            assert await call() == 200
            await client.aclose()

    asyncio.run(scenario())


async def test_key_never_appears_in_repr_logs_or_errors(ep: MockEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="azml_client")
    ep.enqueue(Fault.status(503), Fault.status(400, body="bad"))
    client = make(ep)
    async with client:
        with pytest.raises(az.BadRequestError) as info:
            await client.post(GPT2_BODY)
        await client.post(GPT2_BODY)
    texts = [repr(client), str(client), str(info.value), repr(info.value), caplog.text]
    texts += [str(record.args) for record in caplog.records]
    assert all(KEY not in text for text in texts)
    assert "attempt 1" in caplog.text
    assert "-> 503" in caplog.text


def test_plain_http_with_a_key_to_a_remote_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="azml_client")
    EndpointClient("http://remote-host.example/score", "k")
    EndpointClient("http://remote-host.example/score", "k")
    EndpointClient("http://127.0.0.1:9/score", "k")
    assert caplog.text.count("plain http") == 1
