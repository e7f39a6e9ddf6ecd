"""The SDK against Microsoft's own Azure ML inference server (azmlinfsrv: flask + gunicorn) on loopback.

The server runs ``score.py`` (beside this file), which reads every dedicated schema of wire-formats.md strictly and
fails on purpose for chosen prompts. The server answers every request with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import azml_client as az

from .probes import acquired_connections, pooled_connections

pytest.importorskip("azureml_inference_server_http", reason="the dev extra installs azureml-inference-server-http")

HERE = Path(__file__).resolve().parent
PARAMS = {"temperature": 0.25, "max_new_tokens": 8}
PROMPT = 'Say "hi"\n\tthen stop \\ üñí 🎉'
COMPLETION_FORMATTERS = ["gpt2", "hf", "dolly", "openai"]
CHAT_FORMATTERS = ["openai-chat", "mistral-chat"]
NO_RETRY = az.RetryPolicy.none()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.status, answer.read()


class InferenceServer:
    """A running azmlinfsrv process serving ``score.py``."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    @property
    def score_url(self) -> str:
        return self.url + "/score"

    def stats(self) -> dict[str, int]:
        """What score.py counted: POSTs scored and distinct client ports."""
        status, body = _get(self.score_url)
        assert status == 200
        result: dict[str, int] = json.loads(body)
        return result


def _start(tmp: Path) -> InferenceServer:
    port = _free_port()
    log = tmp / f"azmlinfsrv-{port}.log"
    env = {
        **os.environ,
        "GUNICORN_CMD_ARGS": "--no-control-socket",
        "AML_APP_ROOT": str(HERE),
        "WORKER_COUNT": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, str(HERE / "infsrv_launcher.py"), "--entry_script", str(HERE / "score.py")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = InferenceServer(process, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azmlinfsrv exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(server.url + "/")[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    _stop(process)
    raise RuntimeError(f"azmlinfsrv did not answer GET / within 30 s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # gunicorn: quick shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def infsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceServer]:
    server = _start(tmp_path_factory.mktemp("azmlinfsrv"))
    try:
        yield server
    finally:
        _stop(server.process)


def expected(schema: str, prompt: str, params: dict[str, Any] | None = None) -> str:
    text = f"score.py[{schema}]: {prompt}"
    return text + " " + json.dumps(params, sort_keys=True) if params else text


# ---------------------------------------------------------------- every dedicated formatter round-trips


def test_the_server_binds_loopback_only_and_closes_every_connection(infsrv: InferenceServer) -> None:
    request = urllib.request.Request(
        infsrv.score_url, data=b'{"inputs": {"input_string": ["x"]}}', headers={"x-request-id": "probe-1"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Connection"] == "close"
        assert answer.headers["x-request-id"] == "probe-1"
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=False).stdout
    if out:
        port = infsrv.url.rsplit(":", 1)[1]
        listening = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]
        assert listening == [f"127.0.0.1:{port}"]


@pytest.mark.parametrize("formatter", COMPLETION_FORMATTERS)
async def test_completion_formatters_round_trip(infsrv: InferenceServer, formatter: str) -> None:
    async with az.LLM(infsrv.url, "k", formatter=formatter, deployment_name=formatter, model_kwargs=PARAMS) as llm:
        assert await llm.ainvoke(PROMPT) == expected(formatter, PROMPT, PARAMS)
        completion = await llm.acomplete("plain", stop=["\n\n"], temperature=0.5)
        assert completion.text == expected(formatter, "plain", {**PARAMS, "temperature": 0.5, "stop": ["\n\n"]})
        pieces = [piece async for piece in llm.astream("streamed")]  # dedicated: the whole answer as one piece
        assert pieces == [expected(formatter, "streamed", PARAMS)]


@pytest.mark.parametrize("formatter", CHAT_FORMATTERS)
async def test_chat_formatters_round_trip(infsrv: InferenceServer, formatter: str) -> None:
    messages = [("system", "Be brief."), ("user", PROMPT)]
    async with az.ChatModel(infsrv.url, "k", formatter=formatter, deployment_name=formatter) as chat:
        result = await chat.ainvoke(messages, temperature=0.1)
        user_text = PROMPT if formatter == "openai-chat" else f"Be brief.\n\n{PROMPT}"  # mistral folds the system
        assert result.content == expected(formatter, user_text, {"temperature": 0.1})
        chunks = [chunk.content async for chunk in chat.astream("one message")]
        assert "".join(chunks) == expected(formatter, "one message")


def test_sync_twin_round_trips(infsrv: InferenceServer) -> None:
    with az.LLM(infsrv.url, "k", formatter="hf", deployment_name="hf") as llm:
        assert llm.invoke(PROMPT) == expected("hf", PROMPT)
        assert llm.batch(["a", "b"]) == [expected("hf", "a"), expected("hf", "b")]


# ---------------------------------------------------------------- its errors, typed, with their request ids


async def test_a_formatter_that_does_not_fit_the_model_is_a_model_error(infsrv: InferenceServer) -> None:
    async with az.LLM(infsrv.url, "k", formatter="gpt2", deployment_name="dolly", retry=NO_RETRY) as llm:
        with pytest.raises(az.ModelError) as info:
            await llm.ainvoke("hello")
    error = info.value
    assert error.status_code == 424
    assert "formatter" in str(error)  # the usual cause is named
    assert "dolly model cannot read the request" in str(error)  # and the container's own message kept
    assert error.request_id
    assert error.request_id == error.json()["request_id"]
    assert error.deployment == "dolly"


@pytest.mark.parametrize(
    ("prompt", "error_type", "status"),
    [
        ("fail-424", az.ModelError, 424),
        ("fail-429", az.RateLimitError, 429),
        ("fail-503", az.ServerError, 503),
    ],
)
async def test_errors_from_run_are_typed_with_the_servers_request_id(
    infsrv: InferenceServer, prompt: str, error_type: type[az.APIStatusError], status: int
) -> None:
    async with az.LLM(infsrv.url, "k", retry=NO_RETRY) as llm:
        with pytest.raises(error_type) as info:
            await llm.ainvoke(prompt)
    error = info.value
    assert error.status_code == status
    assert error.request_id  # the server made one up and echoed it
    assert error.request_id == error.json()["request_id"] == error.headers["x-request-id"]
    assert error.request_id in str(error)
    if status == 429:
        assert error.retry_after == 1.0


async def test_an_exception_in_run_is_a_server_error_with_the_servers_message(infsrv: InferenceServer) -> None:
    async with az.LLM(infsrv.url, "k", retry=NO_RETRY, headers={"x-request-id": "rel-req-0042"}) as llm:
        with pytest.raises(az.ServerError) as info:
            await llm.ainvoke("fail-raise")
    assert info.value.status_code == 500
    assert info.value.request_id == "rel-req-0042"  # a client-chosen request id comes back
    assert "unexpected error occurred in scoring script" in str(info.value)
    assert info.value.headers["x-ms-run-function-failed"] == "True"


async def test_retry_after_from_the_server_is_honoured_then_retries_run_out(infsrv: InferenceServer) -> None:
    before = infsrv.stats()["posts"]
    policy = az.RetryPolicy(max_retries=1, initial_delay=0.01)
    async with az.LLM(infsrv.url, "k", retry=policy) as llm:
        started = time.monotonic()
        with pytest.raises(az.RateLimitError) as info:
            await llm.ainvoke("fail-429 twice")
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited, not the 0.01 s backoff
    assert info.value.attempts == 2
    assert infsrv.stats()["posts"] - before == 2


# ---------------------------------------------------------------- load with a connection per request


async def test_batch_of_2000_at_concurrency_32_with_a_connection_per_request(
    infsrv: InferenceServer, record_property: Any
) -> None:
    prompts = [f"prompt {i}: {'x' * (i % 50)}" for i in range(2000)]
    before = infsrv.stats()
    async with az.LLM(infsrv.url, "k", formatter="openai", deployment_name="openai") as llm:
        started = time.monotonic()
        answers = await llm.abatch(prompts, max_concurrency=32)
        elapsed = time.monotonic() - started
        assert acquired_connections(llm.client) == 0
        assert pooled_connections(llm.client) == 0  # the server closed each one: nothing is kept alive
    assert answers == [expected("openai", p) for p in prompts]
    after = infsrv.stats()
    assert after["posts"] - before["posts"] == 2000  # none retried, none lost
    assert after["distinct_ports"] - before["distinct_ports"] > 32 * 4  # far more connections than the pool holds
    record_property("requests_per_second", round(2000 / elapsed))
    print(f"\nazmlinfsrv: 2000 prompts at concurrency 32 in {elapsed:.2f} s = {2000 / elapsed:.0f} req/s")
    await asyncio.sleep(0)
