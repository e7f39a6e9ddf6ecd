"""Tests of the endpoint emulator itself, driven by a plain aiohttp client over loopback."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from azml_client.testing import Fault, MockEndpoint, RecordedRequest, echo_text, run_mock_server

JSON = dict[str, Any]
PACKAGE = Path(__file__).resolve().parents[2] / "azml_client" / "testing"


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    timeout: float | None = None,
) -> tuple[int, Any, Any]:
    """Send a request; return the status, the parsed JSON body (or raw bytes) and the headers."""
    payload = orjson.dumps(body) if data is None else data
    client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else aiohttp.helpers.sentinel
    async with session.request(method, url, data=payload, headers=headers, timeout=client_timeout) as resp:
        raw = await resp.read()
        try:
            parsed: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw
        return resp.status, parsed, resp.headers


def deploy(name: str) -> dict[str, str]:
    return {"azureml-model-deployment": name}


def split_sse(raw: bytes, end: bytes = b"\n") -> tuple[bytes, list[Any]]:
    """Split a stream into its leading comment line and the parsed data of its events."""
    comment, _, rest = raw.partition(end)
    blocks = rest.split(end + end)
    assert blocks[-1] == b"", "the stream must end with a blank line"
    events = []
    for block in blocks[:-1]:
        assert block.startswith(b"data: ")
        assert end not in block, "one line per event"
        data = block.removeprefix(b"data: ")
        events.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return comment, events


# --- text ----------------------------------------------------------------------------------------------------


def test_echo_text_is_deterministic() -> None:
    assert echo_text("Hi there") == "echo: Hi there"
    assert echo_text("") == "echo: "


def test_public_names_have_docstrings() -> None:
    import azml_client.testing as testing

    for name in testing.__all__:
        assert getattr(testing, name).__doc__, name


def test_emulator_does_not_import_the_client() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("azml_client"):
                assert node.module.startswith(("azml_client.testing", "azml_client._version")), (path, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("azml_client") or alias.name.startswith("azml_client.testing")


# --- dedicated /score ----------------------------------------------------------------------------------------

P = "Hello, world"
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": P}]


@pytest.mark.parametrize(
    ("deployment", "body", "expected"),
    [
        ("gpt2", {"inputs": {"input_string": [P]}, "parameters": {"top_p": 1}}, [{"0": echo_text(P)}]),
        ("oss", {"inputs": {"input_string": [P]}}, [{"0": echo_text(P)}]),
        ("hf", {"inputs": [P], "parameters": {}}, [{"0": {"generated_text": echo_text(P)}}]),
        ("dolly", {"input_data": {"input_string": [P]}, "parameters": {}}, [echo_text(P)]),
        ("openai", {"input_data": {"input_string": [P], "parameters": {"temperature": 0}}}, [{"0": echo_text(P)}]),
        ("llama", {"input_data": {"input_string": [P]}}, [{"0": echo_text(P)}]),
        ("openai-chat", {"input_data": {"input_string": CHAT, "parameters": {}}}, {"output": echo_text(P)}),
        ("llama-chat", {"input_data": {"input_string": CHAT}}, {"output": echo_text(P)}),
        ("mistral-chat", {"input_data": {"input_string": CHAT[1:]}}, {"output": echo_text(P)}),
    ],
)
async def test_dedicated_schemas_answer(
    ep: MockEndpoint, session: aiohttp.ClientSession, deployment: str, body: JSON, expected: Any
) -> None:
    status, answer, headers = await post(session, ep.score_url, body, headers=deploy(deployment))
    assert status == 200
    assert answer == expected
    assert headers["azureml-model-deployment"] == deployment
    assert len(headers["x-request-id"]) == 32
    assert headers["Content-Type"].startswith("application/json")
    assert ep.requests[-1].deployment == deployment


async def test_default_deployment_and_several_prompts(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(default_deployment="hf") as ep:
        status, answer, headers = await post(session, ep.score_url, {"inputs": ["a", "b c"]})
    assert status == 200
    assert answer == [{"0": {"generated_text": "echo: a"}}, {"0": {"generated_text": "echo: b c"}}]
    assert headers["azureml-model-deployment"] == "hf"


async def test_multimodal_chat_content_is_joined(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    parts = [
        {"type": "text", "text": "look "},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "here"},
    ]
    body = {
        "input_data": {"input_string": [{"role": "user", "content": parts}, {"role": "assistant", "content": "ok"}]}
    }
    status, answer, _ = await post(session, ep.score_url, body, headers=deploy("openai-chat"))
    assert (status, answer) == (200, {"output": "echo: look here"})


@pytest.mark.parametrize(
    ("deployment", "data", "needle"),
    [
        ("gpt2", b"not json", "not valid JSON"),
        ("gpt2", orjson.dumps({"inputs": [P]}), "inputs must be an object"),
        ("gpt2", orjson.dumps({"inputs": {"input_string": P}}), "input_string must be a non-empty array of strings"),
        ("gpt2", orjson.dumps({"inputs": {"input_string": [1]}}), "input_string[0] must be a string"),
        ("gpt2", orjson.dumps({"inputs": {"input_string": [P]}, "parameters": []}), "parameters must be an object"),
        ("gpt2", orjson.dumps({"inputs": {"input_string": [P]}, "extra": 1}), "unexpected key(s) 'extra'"),
        ("hf", orjson.dumps({"inputs": {"input_string": [P]}}), "inputs must be a non-empty array"),
        ("dolly", orjson.dumps({"input_data": {"input_string": [P], "parameters": {}}}), "unexpected key"),
        ("openai", orjson.dumps({"input_data": {"input_string": [P]}, "parameters": {}}), "unexpected key"),
        ("openai", orjson.dumps({"prompt": P}), "missing the key 'input_data'"),
        ("openai-chat", orjson.dumps({"input_data": {"input_string": [P]}}), "input_string[0] must be an object"),
        ("openai-chat", orjson.dumps({"input_data": {"input_string": [{"role": "bot", "content": "x"}]}}), "role"),
        (
            "openai-chat",
            orjson.dumps({"input_data": {"input_string": [{"role": "tool", "content": "x"}]}}),
            "tool_call_id",
        ),
        ("mistral-chat", orjson.dumps({"input_data": {"input_string": CHAT}}), "role 'system'"),
        (
            "gpt2",
            orjson.dumps({"inputs": {"input_string": [P]}, "parameters": {"max_new_tokens": "3"}}),
            "max_new_tokens",
        ),
        ("gpt2", orjson.dumps({"inputs": {"input_string": [P]}, "parameters": {"stop": [1]}}), "stop"),
    ],
)
async def test_dedicated_schemas_reject(
    ep: MockEndpoint, session: aiohttp.ClientSession, deployment: str, data: bytes, needle: str
) -> None:
    status, answer, headers = await post(session, ep.score_url, data=data, headers=deploy(deployment))
    assert status == 400
    assert needle in answer["error"]["message"]
    assert "Expected {" in answer["error"]["message"]
    assert headers["azureml-model-deployment"] == deployment


async def test_schema_error_status_is_configurable(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(schema_error_status=424) as ep:
        status, answer, _ = await post(session, ep.score_url, {"prompt": "x"})
    assert status == 424
    assert answer["error"]["code"] == "FailedDependency"


async def test_unknown_deployment_path_and_method(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    status, answer, headers = await post(session, ep.score_url, {}, headers=deploy("nope"))
    assert status == 404
    assert "nope" in answer["error"]["message"]
    assert "gpt2" in answer["error"]["message"]
    assert "mistral-chat" in answer["error"]["message"]
    assert "azureml-model-deployment" not in headers
    status, answer, _ = await post(session, ep.url + "/v2/score", {})
    assert status == 404
    assert "/v1/chat/completions" in answer["error"]["message"]
    status, answer, headers = await post(session, ep.score_url, method="GET", data=b"")
    assert (status, headers["Allow"]) == (405, "POST")


async def test_dedicated_parameters_limit_the_text(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    prompt = "one two  three four"
    body = {"inputs": {"input_string": [prompt]}, "parameters": {"max_new_tokens": 3}}
    assert (await post(session, ep.score_url, body))[1] == [{"0": "echo: one two"}]
    body = {"input_data": {"input_string": [prompt], "parameters": {"max_tokens": 0}}}
    assert (await post(session, ep.score_url, body, headers=deploy("openai")))[1] == [{"0": ""}]
    body = {"input_data": {"input_string": [prompt]}, "parameters": {"stop": ["three", " tw"]}}
    assert (await post(session, ep.score_url, body, headers=deploy("dolly")))[1] == ["echo: one"]
    body = {"inputs": {"input_string": [prompt]}, "parameters": {"max_new_tokens": 99}}
    assert (await post(session, ep.score_url, body))[1] == [{"0": "echo: one two  three four"}]


# --- serverless ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/completions", "/completions"])
async def test_completions(ep: MockEndpoint, session: aiohttp.ClientSession, path: str) -> None:
    status, answer, headers = await post(session, ep.url + path, {"prompt": "a b", "temperature": 0.2})
    assert status == 200
    assert "azureml-model-deployment" not in headers
    assert answer["object"] == "text_completion"
    assert answer["model"] == "azml-emulator"
    assert answer["id"].startswith("cmpl-")
    assert isinstance(answer["created"], int)
    assert answer["choices"] == [{"index": 0, "text": "echo: a b", "finish_reason": "stop", "logprobs": None}]
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


async def test_completions_n_list_prompt_and_limits(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    body = {"prompt": ["x y z", "q"], "n": 2, "max_tokens": 2}
    _, answer, _ = await post(session, ep.url + "/v1/completions", body)
    got = [(c["index"], c["text"], c["finish_reason"]) for c in answer["choices"]]
    assert got == [
        (0, "echo: x", "length"),
        (1, "echo: x (1)", "length"),
        (2, "echo: q", "stop"),
        (3, "echo: q (1)", "stop"),
    ]
    _, answer, _ = await post(session, ep.url + "/completions", {"prompt": "x y z", "stop": "y"})
    assert answer["choices"][0]["text"] == "echo: x "


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/chat/completions", "/models/chat/completions?api-version=2024-05-01-preview"]
)
async def test_chat(ep: MockEndpoint, session: aiohttp.ClientSession, path: str) -> None:
    body = {"messages": [*CHAT, {"role": "assistant", "content": None, "tool_calls": []}], "n": 2}
    status, answer, headers = await post(session, ep.url + path, body, headers={"x-request-id": "req-1"})
    assert status == 200
    assert headers["x-request-id"] == "req-1"
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": echo_text(P)}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": echo_text(P) + " (1)"}, "finish_reason": "stop"},
    ]
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}
    assert ep.requests[-1].query == path.partition("?")[2]


async def test_chat_limits(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    body = {"messages": [{"role": "user", "content": "a b c d"}], "max_tokens": 2, "stop": ["zzz"]}
    _, answer, _ = await post(session, ep.url + "/v1/chat/completions", body)
    assert answer["choices"][0]["message"]["content"] == "echo: a"
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/completions", {"messages": CHAT}, "send 'messages' to /chat/completions"),
        ("/v1/completions", {}, "missing the key 'prompt'"),
        ("/v1/completions", {"prompt": [1, 2]}, "prompt[0] must be a string"),
        ("/v1/completions", {"prompt": "x", "n": 0}, "n must be"),
        ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, "only allowed when stream"),
        ("/v1/chat/completions", {"prompt": "x"}, "send 'prompt' to /completions"),
        ("/v1/chat/completions", {"messages": []}, "messages must be a non-empty array"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ("/v1/chat/completions", {"messages": [{"role": "user"}]}, "content is required"),
        ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ("/v1/chat/completions", {"messages": CHAT, "stream": "yes"}, "stream must be a boolean"),
        ("/v1/chat/completions", {"messages": CHAT, "stream": False, "stream_options": {}}, "only allowed when stream"),
        ("/v1/chat/completions", {"messages": CHAT, "tool_choice": "auto"}, "only allowed when tools"),
        ("/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function"}]}, "tools[0].function"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": -1}, "max_tokens must be a non-negative"),
    ],
)
async def test_serverless_rejects(
    ep: MockEndpoint, session: aiohttp.ClientSession, path: str, body: JSON, needle: str
) -> None:
    status, answer, _ = await post(session, ep.url + path, body)
    assert status == 400
    assert answer["error"]["code"] == "BadRequest"
    assert needle in answer["error"]["message"]


async def test_serverless_rejects_non_json(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(session, ep.url + "/v1/chat/completions", data=b"{")
    assert (status, answer["error"]["code"]) == (400, "BadRequest")


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "temp": {"type": ["number", "null"]},
                "metric": {"type": "boolean"},
                "hours": {"type": "array"},
                "opts": {"type": "object"},
                "unit": {"type": "string", "enum": ["C", "F"]},
                "optional": {"type": "string"},
            },
            "required": ["city", "days", "temp", "metric", "hours", "opts", "unit"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}


async def test_tool_calls(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    url = ep.url + "/v1/chat/completions"
    user = [{"role": "user", "content": "weather?"}]
    _, answer, _ = await post(session, url, {"messages": user, "tools": [WEATHER, CLOCK]})
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "call_1"
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather"
    assert orjson.loads(call["function"]["arguments"]) == {
        "city": "x",
        "days": 3,
        "temp": 3.0,
        "metric": True,
        "hours": [],
        "opts": {},
        "unit": "C",
    }
    forced = {"type": "function", "function": {"name": "clock"}}
    _, answer, _ = await post(session, url, {"messages": user, "tools": [WEATHER, CLOCK], "tool_choice": forced})
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert (call["id"], call["function"]) == ("call_2", {"name": "clock", "arguments": "{}"})
    _, answer, _ = await post(session, url, {"messages": user, "tools": [WEATHER], "tool_choice": "none"})
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "echo: weather?"}
    history = [
        *user,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
    ]
    _, answer, _ = await post(session, url, {"messages": history, "tools": [WEATHER]})
    assert answer["choices"][0]["message"]["content"] == "tool result: sunny"
    assert answer["choices"][0]["finish_reason"] == "stop"
    bad = {"type": "function", "function": {"name": "nope"}}
    status, answer, _ = await post(session, url, {"messages": user, "tools": [WEATHER], "tool_choice": bad})
    assert status == 400
    assert "not in tools" in answer["error"]["message"]


# --- streaming -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(session: aiohttp.ClientSession, line_end: str, include_usage: bool) -> None:
    prompt = "one  two\nthree"
    body: JSON = {"messages": [{"role": "user", "content": prompt}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with (
        MockEndpoint(sse_line_ending=line_end) as ep,
        session.post(ep.url + "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert "x-request-id" in resp.headers
        raw = await resp.read()
    end = line_end.encode()
    comment, events = split_sse(raw, end)
    assert comment == b": emulator"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    pieces = [
        c["choices"][0]["delta"]["content"] for c in chunks if c["choices"] and "content" in c["choices"][0]["delta"]
    ]
    assert "".join(pieces) == echo_text(prompt)
    assert len(pieces) == 4
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        chunks = chunks[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}


async def test_completion_stream_with_limit(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    body = {"prompt": "a b c", "stream": True, "max_tokens": 2, "n": 2}
    async with session.post(ep.url + "/v1/completions", json=body) as resp:
        _, events = split_sse(await resp.read())
    assert events[-1] == "[DONE]"
    by_choice: dict[int, str] = {0: "", 1: ""}
    finish = {}
    for chunk in events[:-1]:
        [choice] = chunk["choices"]
        assert chunk["object"] == "text_completion"
        by_choice[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finish[choice["index"]] = choice["finish_reason"]
    assert by_choice == {0: "echo: a", 1: "echo: a (1)"}
    assert finish == {0: "length", 1: "length"}


async def test_tool_call_stream(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER], "stream": True}
    async with session.post(ep.url + "/v1/chat/completions", json=body) as resp:
        _, events = split_sse(await resp.read())
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant"}
    head = deltas[1]["tool_calls"][0]
    assert (head["id"], head["function"]["name"], head["function"]["arguments"]) == ("call_1", "weather", "")
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:4]]
    assert all(pieces)
    assert orjson.loads("".join(pieces))["days"] == 3
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


# --- keys and headers ----------------------------------------------------------------------------------------

GPT2 = {"inputs": {"input_string": ["hi"]}}


async def test_key_check(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(api_key="secret-key") as ep:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "secret-key"}):
            status, answer, _ = await post(session, ep.score_url, GPT2, headers=headers)
            assert status == 401
            assert answer["error"]["code"] == "Unauthorized"
            assert b"wrong-key" not in orjson.dumps(answer)
            assert b"secret-key" not in orjson.dumps(answer)
        status, _, _ = await post(session, ep.url + "/nowhere", {}, headers={"Authorization": "Bearer wrong-key"})
        assert status == 401
        good = {"Authorization": "Bearer secret-key"}
        assert (await post(session, ep.score_url, GPT2, headers=good))[0] == 200
        ep.accepted_keys.add("token-2")
        ep.accepted_keys.discard("secret-key")
        assert (await post(session, ep.score_url, GPT2, headers=good))[0] == 401
        assert (await post(session, ep.score_url, GPT2, headers={"Authorization": "bearer token-2"}))[0] == 200
        assert ep.request_count == 7


async def test_keys_added_later_are_checked(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    assert (await post(session, ep.score_url, GPT2))[0] == 200
    ep.accepted_keys.add("k")
    assert (await post(session, ep.score_url, GPT2))[0] == 401
    assert (await post(session, ep.score_url, GPT2, headers={"Authorization": "Bearer k"}))[0] == 200


# --- faults --------------------------------------------------------------------------------------------------


async def test_status_faults(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(
        Fault.status(429, headers={"retry-after-ms": "20"}),
        Fault.status(503),
        Fault.status(424, body={"message": "model failed"}),
        Fault.status(500, body="oops"),
        Fault.status(502, body=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
    )
    status, answer, headers = await post(session, ep.score_url, GPT2, headers={"x-request-id": "abc"})
    assert (status, headers["retry-after-ms"], headers["x-request-id"]) == (429, "20", "abc")
    assert answer["error"]["code"] == "TooManyRequests"
    status, answer, _ = await post(session, ep.score_url, GPT2)
    assert (status, answer["error"]["code"]) == (503, "ServiceUnavailable")
    assert (await post(session, ep.score_url, GPT2))[:2] == (424, {"message": "model failed"})
    status, answer, headers = await post(session, ep.score_url, GPT2)
    assert (status, answer, headers["Content-Type"]) == (500, b"oops", "text/plain; charset=utf-8")
    status, answer, headers = await post(session, ep.score_url, GPT2)
    assert (status, answer, headers["Content-Type"]) == (502, b"<html>bad gateway</html>", "text/html")
    assert (await post(session, ep.score_url, GPT2))[0] == 200
    assert [r.fault.status_code if r.fault else None for r in ep.requests] == [429, 503, 424, 500, 502, None]
    assert (ep.fault_count, ep.request_count) == (5, 6)


async def test_drop_truncate_malformed(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.drop(), Fault.truncate(), Fault.malformed(), Fault.cut_stream(2))
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, ep.score_url, GPT2)
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(session, ep.score_url, GPT2)
    status, answer, headers = await post(session, ep.score_url, GPT2)
    assert (status, answer, headers["Content-Type"]) == (200, b"<html>not json", "text/html")
    with pytest.raises(aiohttp.ClientConnectionError):  # cut_stream on a non-streaming answer drops
        await post(session, ep.score_url, GPT2)
    assert (await post(session, ep.score_url, GPT2))[:2] == (200, [{"0": "echo: hi"}])
    assert ep.in_flight == 0


async def test_cut_stream(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.cut_stream(2))
    body = {"messages": [{"role": "user", "content": "a b c d e"}], "stream": True}
    received = bytearray()

    async def read_all(resp: aiohttp.ClientResponse) -> None:
        async for data in resp.content.iter_any():
            received.extend(data)

    async with session.post(ep.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all(resp)
    assert received.count(b"data: ") == 2
    assert received.startswith(b": emulator\ndata: ")
    assert received.endswith(b"\n\n")


async def test_delay_and_slow(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.delay(0.15), Fault.slow(2000))
    started = time.monotonic()
    assert (await post(session, ep.score_url, GPT2))[:2] == (200, [{"0": "echo: hi"}])
    assert time.monotonic() - started >= 0.14
    long = {"inputs": {"input_string": ["x" * 200]}}
    started = time.monotonic()
    status, answer, headers = await post(session, ep.score_url, long)
    assert (status, answer) == (200, [{"0": "echo: " + "x" * 200}])
    assert headers["Content-Length"] == str(len(orjson.dumps(answer)))
    assert time.monotonic() - started >= 0.1  # ~215 bytes at 2000 B/s


async def test_slow_stream(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.slow(20_000))
    body = {"messages": [{"role": "user", "content": "a b"}], "stream": True}
    async with session.post(ep.url + "/v1/chat/completions", json=body) as resp:
        _, events = split_sse(await resp.read())
    assert events[-1] == "[DONE]"


async def test_hang_until_client_gives_up(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.hang())
    with pytest.raises(asyncio.TimeoutError):
        await post(session, ep.score_url, GPT2, timeout=0.2)
    for _ in range(100):
        if ep.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert ep.in_flight == 0
    assert (await post(session, ep.score_url, GPT2))[0] == 200


async def test_endless_body(ep: MockEndpoint, session: aiohttp.ClientSession) -> None:
    ep.enqueue(Fault.endless())
    async with session.post(ep.score_url, json=GPT2) as resp:
        assert resp.status == 200
        assert "Content-Length" not in resp.headers
        data = b""
        while len(data) < 2000:
            data += await resp.content.readany()
    assert data.startswith(b'[{"0": "endless endless')
    ep.enqueue(Fault.endless())
    with pytest.raises(asyncio.TimeoutError):  # data keeps coming: only a total timeout ends it
        await post(session, ep.score_url, GPT2, timeout=0.2)
    for _ in range(100):
        if ep.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert ep.in_flight == 0


async def test_shutdown_with_hung_and_endless_requests_is_quick(session: aiohttp.ClientSession) -> None:
    ep = MockEndpoint()
    await ep.start()
    ep.enqueue(Fault.hang(), Fault.endless(), Fault.delay(30))
    calls = [asyncio.ensure_future(post(session, ep.score_url, GPT2)) for _ in range(3)]
    for _ in range(200):
        if ep.in_flight == 3:
            break
        await asyncio.sleep(0.01)
    assert ep.in_flight == 3
    started = time.monotonic()
    await ep.aclose()
    assert time.monotonic() - started < 0.5
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, aiohttp.ClientError) for r in results), results
    assert ep.in_flight == 0
    await ep.aclose()  # idempotent


async def test_queue_takes_precedence_over_rate(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(fault_rate=1.0, fault_kinds=["503"]) as ep:
        ep.enqueue(Fault.status(418))
        assert (await post(session, ep.score_url, GPT2))[0] == 418
        assert (await post(session, ep.score_url, GPT2))[0] == 503
        assert ep.fault_count == 2


async def run_soak(seed: int, count: int = 80) -> list[Fault | None]:
    kinds = ["429", "503", "500", "drop", "truncate", "malformed"]
    async with (
        MockEndpoint(fault_rate=0.5, fault_kinds=kinds, seed=seed) as ep,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(count):
            with contextlib.suppress(aiohttp.ClientError):
                await post(session, ep.score_url, GPT2)
        faults = [r.fault for r in ep.requests]
        assert ep.fault_count == sum(f is not None for f in faults)
        ep.reset()
        for _ in range(count):
            with contextlib.suppress(aiohttp.ClientError):
                await post(session, ep.score_url, GPT2)
        assert [r.fault for r in ep.requests] == faults, "reset() restarts the seeded sequence"
        return faults


async def test_seeded_faults_are_deterministic() -> None:
    first, second, other = await run_soak(7), await run_soak(7), await run_soak(8)
    assert first == second
    assert first != other
    kinds = {f.kind if f.kind != "status" else f.status_code for f in first if f is not None}
    assert kinds == {429, 503, 500, "drop", "truncate", "malformed"}
    retry = [int(dict(f.headers)["retry-after-ms"]) for f in first if f is not None and f.status_code == 429]
    assert retry
    assert all(1 <= ms <= 20 for ms in retry)


# --- counters and records ------------------------------------------------------------------------------------


async def test_concurrency_counters(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(latency=0.2) as ep:
        started = time.monotonic()
        results = await asyncio.gather(*(post(session, ep.score_url, GPT2) for _ in range(12)))
        assert time.monotonic() - started < 1.0
        assert all(status == 200 for status, _, _ in results)
        assert (ep.request_count, ep.in_flight, ep.max_in_flight) == (12, 0, 12)
        ep.reset()
        assert (ep.request_count, ep.max_in_flight, ep.fault_count, ep.requests) == (0, 0, 0, [])


async def test_records(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(record_limit=3) as ep:
        for i in range(5):
            await post(session, f"{ep.url}/v1/completions?i={i}", {"prompt": str(i)}, headers={"X-Custom": "v"})
        await post(session, ep.score_url, data=b"raw", headers=deploy("hf"))
        assert ep.request_count == 6
        records = ep.requests
        assert [r.query for r in records] == ["i=3", "i=4", ""]
        first = records[0]
        assert isinstance(first, RecordedRequest)
        assert (first.method, first.path, first.json, first.deployment, first.fault) == (
            "POST",
            "/v1/completions",
            {"prompt": "3"},
            None,
            None,
        )
        assert first.headers["x-custom"] == "v"
        assert all(name == name.lower() for name in first.headers)
        assert first.body == b'{"prompt":"3"}'
        assert (records[-1].body, records[-1].json, records[-1].deployment) == (b"raw", None, "hf")
        assert records[0].started <= records[1].started <= time.monotonic()
    async with MockEndpoint(record_limit=0) as ep:
        await post(session, ep.score_url, GPT2)
        assert (ep.requests, ep.request_count) == ([], 1)


# --- construction and command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"latency": -1},
        {"default_deployment": "gpt5"},
        {"fault_rate": 1.5},
        {"fault_kinds": ["teapot"]},
        {"fault_kinds": "429"},
        {"fault_rate": 0.1, "fault_kinds": []},
        {"sse_line_ending": "\n\n"},
        {"record_limit": -1},
        {"schema_error_status": 200},
        {"api_key": ""},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked by reading it, not here
        MockEndpoint(**options)


def test_bad_faults() -> None:
    makers: list[Callable[[], Fault]] = [
        lambda: Fault.status(99),
        lambda: Fault.delay(-1),
        lambda: Fault.slow(0),
        lambda: Fault.cut_stream(-1),
        lambda: Fault("explode"),
    ]
    for make in makers:
        with pytest.raises(ValueError):  # noqa: PT011
            make()
    assert Fault.status(503) == Fault.status(503)
    assert Fault.status(429, headers={"retry-after-ms": "1"}) != Fault.status(429)


async def test_url_before_start_and_double_start() -> None:
    ep = MockEndpoint()
    with pytest.raises(RuntimeError):
        _ = ep.url
    async with ep:
        assert ep.url == f"http://127.0.0.1:{ep.port}"
        assert ep.score_url == ep.url + "/score"
        with pytest.raises(RuntimeError):
            await ep.start()
    with pytest.raises(TypeError):
        ep.enqueue("drop")  # type: ignore[arg-type]


def test_run_mock_server_rejects_bad_options_before_listening() -> None:
    with pytest.raises(ValueError, match="latency"):
        run_mock_server(port=0, latency=-1)


async def test_command_line(session: aiohttp.ClientSession) -> None:
    env = {**os.environ, "EMU_KEY": "very-secret-value"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "azml_client.testing",
        "--port",
        "0",
        "--api-key-env",
        "EMU_KEY",
        "--deployment",
        "dolly",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "listening on http://127.0.0.1:" in first
        url = first.split()[-1]
        body = {"input_data": {"input_string": ["cli"]}}
        status, answer, _ = await post(
            session, url + "/score", body, headers={"Authorization": "Bearer very-secret-value"}
        )
        assert (status, answer) == (200, ["echo: cli"])
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    text = first + out.decode() + err.decode()
    assert "key check: on" in text
    assert "very-secret-value" not in text
