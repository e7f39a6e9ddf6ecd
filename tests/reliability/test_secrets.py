"""One sweep for a canary key (and a canary token) through everything the SDK shows, logs, raises or writes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest

import azml_client as az
from azml_client.testing import Fault, MockEndpoint

CANARY = f"sk-canary-{uuid.uuid4().hex}"
TOKEN_CANARY = f"eyJ-token-canary-{uuid.uuid4().hex}"
FAST = az.RetryPolicy(max_retries=1, initial_delay=0.001)


class Sweep:
    """Collects every text the SDK produced, to search for the canaries at the end."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, *values: Any) -> None:
        for value in values:
            self.texts.append((where, str(value)))
            self.texts.append((where, repr(value)))
            if isinstance(value, BaseException):
                self.texts.append((where, "".join(traceback.format_exception(value))))
                self.texts.append((where, repr(value.args)))
                self.texts.append((where, repr(vars(value))))

    async def error(self, where: str, call: Any) -> BaseException:
        try:
            await call
        except az.AzureMLError as exc:
            self.add(where, exc)
            return exc
        raise AssertionError(f"{where}: expected an error")

    def logs(self, caplog: pytest.LogCaptureFixture) -> None:
        for record in caplog.records:
            self.texts.append(("log", record.getMessage()))
            self.texts.append(("log args", repr(record.args)))
            if record.exc_info:
                self.texts.append(("log exc", "".join(traceback.format_exception(*record.exc_info))))
        self.texts.append(("log text", caplog.text))

    def leaks(self) -> list[str]:
        return [where for where, text in self.texts if CANARY in text or TOKEN_CANARY in text]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_key_and_token_never_appear_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's and asyncio's included
    sweep = Sweep()
    async with MockEndpoint(api_key=CANARY) as ep:
        ep.accepted_keys.add(TOKEN_CANARY)
        llm = az.LLM(ep.url, CANARY, retry=FAST, deployment_name="gpt2", model_kwargs={"temperature": 0.1})
        chat = az.ChatModel(ep.url, CANARY, api_type="serverless", retry=FAST)
        by_token = az.LLM(ep.url, credential=lambda: TOKEN_CANARY, retry=FAST)
        sweep.add("objects", llm, chat, by_token, llm.client, chat.client, by_token.client, llm.formatter)

        # Succeeding calls, a retried one included.
        ep.enqueue(Fault.status(503))
        sweep.add("answers", await llm.ainvoke("hi"), await llm.acomplete("hi"), await by_token.ainvoke("hi"))
        sweep.add("chat", await chat.ainvoke("hi"), [chunk async for chunk in chat.astream("hi there")])
        sweep.add("response", await llm.client.post({"inputs": {"input_string": ["x"]}}))

        # Failing calls: every kind of error, each made while the canary was being sent.
        ep.enqueue(Fault.status(503), Fault.status(503))
        await sweep.error("server error", llm.ainvoke("hi"))
        ep.enqueue(Fault.status(400, body={"error": "bad"}))
        await sweep.error("bad request", chat.ainvoke("hi"))
        ep.enqueue(Fault.malformed())
        await sweep.error("format error", llm.ainvoke("hi"))
        ep.enqueue(Fault.drop(), Fault.drop())
        await sweep.error("dropped", llm.ainvoke("hi"))
        ep.enqueue(Fault.hang(), Fault.hang())
        await sweep.error("timeout", llm.ainvoke("hi", timeout=az.Timeout(read=0.1)))
        ep.enqueue(Fault.cut_stream(after_events=2))
        await sweep.error("cut stream", _drain(chat.astream("one two three")))
        ep.accepted_keys.clear()
        ep.accepted_keys.add("someone-else")
        await sweep.error("401 key", llm.ainvoke("hi"))
        await sweep.error("401 token", by_token.ainvoke("hi"))  # refreshed once, then raised
        refused = az.LLM(f"http://127.0.0.1:{_closed_port()}", CANARY, retry=FAST)
        await sweep.error("refused", refused.ainvoke("hi"))
        sweep.add("refused object", refused)

        # Refused before sending: a key or an Authorization header that would split the header.
        for options in (
            {"api_key": CANARY + "\r\nX-Evil: 1"},
            {"api_key": "k", "headers": {"Authorization": f"Bearer {CANARY}\n"}},
            {"credential": lambda: TOKEN_CANARY + "\n"},
        ):
            try:
                client = az.EndpointClient(ep.url, retry=FAST, **options)
                await sweep.error("bad token", client.post(b"{}"))
                await client.aclose()
            except az.ConfigurationError as exc:
                sweep.add("bad key", exc)

        # Saved configs, JSON and YAML, of every model kind, and loading them back.
        for model in (llm, chat, by_token):
            for suffix in (".json", ".yaml"):
                path = tmp_path / f"{type(model).__name__}-{id(model)}{suffix}"
                model.save(path)
                sweep.texts.append((f"saved {path.name}", path.read_text()))
                monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", CANARY)
                loaded = az.load(path)
                sweep.add("loaded", loaded)
                loaded.save(path)
                sweep.texts.append((f"re-saved {path.name}", path.read_text()))
                await loaded.aclose()

        # The LangChain adapter, when installed.
        if _has_langchain():
            from azml_client.langchain import AzureMLChatOnlineEndpoint, AzureMLOnlineEndpoint

            lc_llm = AzureMLOnlineEndpoint(endpoint_url=ep.score_url, endpoint_api_key=CANARY)
            lc_chat = AzureMLChatOnlineEndpoint(endpoint_url=ep.url + "/v1/chat/completions", endpoint_api_key=CANARY)
            sweep.add("langchain", lc_llm, lc_chat, lc_llm.model_dump(), lc_llm.model_dump_json(), lc_chat.model_dump())
            for lc_model in (lc_llm, lc_chat):
                path = tmp_path / f"lc-{id(lc_model)}.json"
                lc_model.save(path)
                sweep.texts.append(("langchain saved", path.read_text()))

        for model in (llm, chat, by_token, refused):
            await model.aclose()
    sweep.logs(caplog)
    assert len(sweep.texts) > 100
    assert "-> 503" in caplog.text  # DEBUG records were really captured
    assert sweep.leaks() == []


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


def _has_langchain() -> bool:
    try:
        import azml_client.langchain  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- the command line


async def _azml(*args: str, key: str, stdin: bytes | None = None) -> tuple[int, str]:
    env = {**os.environ, "AZUREML_ENDPOINT_API_KEY": key, "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "azml_client.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace")


async def test_the_key_never_appears_in_cli_output(tmp_path: Path) -> None:
    pytest.importorskip("azml_client.cli", reason="the azml command line is not there yet")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": i, "prompt": f"p{i}"}) for i in range(5)) + "\n")
    results = tmp_path / "results.jsonl"
    key_file = tmp_path / "key.txt"
    key_file.write_text(CANARY + "\n")
    outputs: list[tuple[str, int, str]] = []
    async with MockEndpoint(api_key=CANARY) as ep:
        endpoint = ["--endpoint-url", ep.url, "--max-retries", "1"]
        serverless = ["--endpoint-url", ep.url, "--api-type", "serverless"]
        runs = {
            "complete": (["complete", "hello", *endpoint], CANARY),
            "complete --json": (["complete", "hello", "--json", *endpoint], CANARY),
            "chat --stream": (["chat", "hello", "--stream", *serverless], CANARY),
            "batch": (["batch", str(prompts), "-o", str(results), *endpoint], CANARY),
            "wrong key": (["complete", "hello", *endpoint], "not-the-key"),  # 401 sending a key: check below
            "key file": (["complete", "hello", *endpoint, "--api-key-file", str(key_file)], ""),
            "bad key": (["complete", "hello", *endpoint], CANARY + "\r\nX-Evil: 1"),
        }
        for name, (args, key) in runs.items():
            code, out = await _azml(*args, key=key)
            outputs.append((name, code, out))
        # A key the endpoint refuses: the canary is sent and must not be echoed back in the error output.
        ep.accepted_keys.clear()
        ep.accepted_keys.add("someone-else")
        code, out = await _azml("complete", "hello", *endpoint, key=CANARY)
        outputs.append(("refused key", code, out))
        ep.enqueue(Fault.status(503), Fault.status(503))
        ep.accepted_keys.add(CANARY)
        code, out = await _azml("complete", "hello", *endpoint, key=CANARY)
        outputs.append(("server error", code, out))
    codes = {name: code for name, code, _ in outputs}
    assert codes["complete"] == codes["chat --stream"] == codes["batch"] == codes["key file"] == 0, outputs
    assert codes["refused key"] != 0
    assert codes["server error"] != 0
    assert codes["bad key"] != 0
    texts = [(name, out) for name, _, out in outputs] + [("results file", results.read_text())]
    assert [name for name, text in texts if CANARY in text] == [], outputs
