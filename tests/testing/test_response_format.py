"""The emulator honours ``response_format`` on serverless chat: JSON mode and JSON schemas answer JSON text.

Driven by plain aiohttp, by ``az.ChatModel`` and by the LangChain adapter's ``with_structured_output``, each
against a real :class:`MockEndpoint` on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

import azml_client as az
from azml_client.testing import MockEndpoint

JOKE_PROMPT = "Tell me a joke. Answer in JSON with the keys 'setup' and \"punchline\"."
JOKE_SCHEMA = {
    "type": "object",
    "properties": {
        "setup": {"type": "string"},
        "punchline": {"type": "string"},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["pun", "dad"]}},
        "safe": {"type": "boolean"},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
            "required": ["name", "age"],
        },
        "optional": {"type": "string"},
    },
    "required": ["setup", "punchline", "rating", "tags", "safe", "author"],
}
JOKE_SAMPLE = {
    "setup": "x",
    "punchline": "x",
    "rating": 3,
    "tags": ["pun"],
    "safe": True,
    "author": {"name": "x", "age": 3.0},
}


def json_schema_format(schema: dict[str, Any] = JOKE_SCHEMA) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "joke", "schema": schema, "strict": True}}


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def chat(ep: MockEndpoint) -> AsyncIterator[az.ChatModel]:
    async with az.ChatModel(ep.url, api_type="serverless") as model:
        yield model


async def chat_post(ep: MockEndpoint, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(ep.url + "/v1/chat/completions", data=orjson.dumps(body)) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


# --- the wire -------------------------------------------------------------------------------------------------


async def test_json_object_answers_the_quoted_names(ep: MockEndpoint) -> None:
    body = {"messages": [{"role": "user", "content": JOKE_PROMPT}], "response_format": {"type": "json_object"}}
    status, answer = await chat_post(ep, {**body, "max_tokens": 2, "stop": ["joke"], "n": 2})
    assert status == 200
    expected = {"setup": "echo: " + JOKE_PROMPT, "punchline": "echo: " + JOKE_PROMPT}
    for choice in answer["choices"]:  # never cut, the same in every choice
        assert orjson.loads(choice["message"]["content"]) == expected
        assert choice["finish_reason"] == "stop"


async def test_json_object_without_names_and_without_asking_for_json(ep: MockEndpoint) -> None:
    messages = [{"role": "system", "content": "Reply in json."}, {"role": "user", "content": "hello there"}]
    _, answer = await chat_post(ep, {"messages": messages, "response_format": {"type": "json_object"}})
    assert orjson.loads(answer["choices"][0]["message"]["content"]) == {"text": "echo: hello there"}
    # A conversation that never says JSON is answered as a model that was not told: echo text.
    messages = [{"role": "user", "content": "hello there"}]
    _, answer = await chat_post(ep, {"messages": messages, "response_format": {"type": "json_object"}})
    assert answer["choices"][0]["message"]["content"] == "echo: hello there"
    _, answer = await chat_post(ep, {"messages": messages, "response_format": {"type": "text"}})
    assert answer["choices"][0]["message"]["content"] == "echo: hello there"


async def test_json_schema_answers_a_sample_of_the_schema(ep: MockEndpoint) -> None:
    body = {"messages": [{"role": "user", "content": "a joke"}], "response_format": json_schema_format()}
    _, answer = await chat_post(ep, body)
    assert orjson.loads(answer["choices"][0]["message"]["content"]) == JOKE_SAMPLE
    no_schema = {"type": "json_schema", "json_schema": {"name": "anything"}}
    _, answer = await chat_post(ep, {**body, "response_format": no_schema})
    assert orjson.loads(answer["choices"][0]["message"]["content"]) == {}


async def test_streamed_json_joins_to_the_same_json(ep: MockEndpoint) -> None:
    body = {
        "messages": [{"role": "user", "content": JOKE_PROMPT}],
        "response_format": {"type": "json_object"},
        "stream": True,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(ep.url + "/v1/chat/completions", data=orjson.dumps(body)) as resp,
    ):
        raw = await resp.read()
    events = [line.removeprefix(b"data: ") for line in raw.split(b"\n") if line.startswith(b"data: {")]
    pieces = [orjson.loads(event)["choices"][0]["delta"].get("content", "") for event in events]
    assert len([p for p in pieces if p]) > 2
    assert set(orjson.loads("".join(pieces))) == {"setup", "punchline"}


@pytest.mark.parametrize(
    ("response_format", "needle"),
    [
        ("json", "response_format must be an object"),
        ({"type": "xml"}, "response_format.type must be one of 'text', 'json_object', 'json_schema', got 'xml'"),
        ({}, "response_format.type must be one of"),
        ({"type": "json_schema"}, "response_format.json_schema must be an object"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "json_schema.name must be a non-empty string"),
        ({"type": "json_schema", "json_schema": {"name": "n", "schema": []}}, "json_schema.schema must be an object"),
    ],
)
async def test_bad_response_formats_are_400(ep: MockEndpoint, response_format: Any, needle: str) -> None:
    body = {"messages": [{"role": "user", "content": "json"}], "response_format": response_format}
    status, answer = await chat_post(ep, body)
    assert status == 400
    assert needle in answer["error"]["message"]


async def test_tool_calls_still_win_over_response_format(ep: MockEndpoint) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": JOKE_SCHEMA}}
    body = {"messages": [{"role": "user", "content": "json"}], "tools": [tool], "response_format": json_schema_format()}
    _, answer = await chat_post(ep, body)
    [call] = answer["choices"][0]["message"]["tool_calls"]
    assert orjson.loads(call["function"]["arguments"]) == JOKE_SAMPLE


# --- az.ChatModel ----------------------------------------------------------------------------------------------


async def test_chat_model_with_response_format(ep: MockEndpoint, chat: az.ChatModel) -> None:
    result = await chat.ainvoke(JOKE_PROMPT, response_format={"type": "json_object"})
    assert set(orjson.loads(result.content or "")) == {"setup", "punchline"}
    assert result.finish_reason == "stop"
    result = await chat.ainvoke("a joke", response_format=json_schema_format(), max_tokens=1)
    assert orjson.loads(result.content or "") == JOKE_SAMPLE
    assert ep.requests[-1].json["response_format"] == json_schema_format()
    pieces = [chunk.content async for chunk in chat.astream("a joke", response_format=json_schema_format())]
    assert orjson.loads("".join(pieces)) == JOKE_SAMPLE


# --- the LangChain adapter ------------------------------------------------------------------------------------


async def test_langchain_with_structured_output_json_schema_and_json_mode(ep: MockEndpoint) -> None:
    pytest.importorskip("langchain_core")
    from pydantic import BaseModel, Field

    from azml_client.langchain import AzureMLChatOnlineEndpoint

    class Author(BaseModel):
        name: str
        born: int = Field(ge=1900)

    class Joke(BaseModel):
        """A joke to tell."""

        setup: str
        punchline: str
        rating: int = Field(ge=1, le=5)
        authors: list[Author]
        nsfw: bool = False

    chat = AzureMLChatOnlineEndpoint(
        endpoint_url=ep.url + "/v1/chat/completions", endpoint_api_type="serverless", endpoint_api_key="k"
    )
    try:
        joke = await chat.with_structured_output(Joke, method="json_schema").ainvoke("Tell me a joke")
        assert joke == Joke(setup="x", punchline="x", rating=3, authors=[Author(name="x", born=1900)])
        sent = ep.requests[-1].json["response_format"]
        assert (sent["type"], sent["json_schema"]["name"]) == ("json_schema", "Joke")
        as_dict = await chat.with_structured_output(Joke.model_json_schema(), method="json_schema").ainvoke("joke")
        assert as_dict == joke.model_dump(exclude={"nsfw"})
        streamed = [part async for part in chat.with_structured_output(Joke, method="json_schema").astream("joke")]
        assert streamed[-1] == joke

        joke = await chat.with_structured_output(Joke, method="json_mode", include_raw=True).ainvoke(JOKE_PROMPT)
        # json_mode sends no schema: the emulator answers the quoted names only, so the model does not validate.
        assert joke["parsed"] is None
        assert joke["parsing_error"] is not None
        plain = await chat.with_structured_output(method="json_mode").ainvoke(JOKE_PROMPT)
        assert plain == {"setup": "echo: " + JOKE_PROMPT, "punchline": "echo: " + JOKE_PROMPT}
        assert ep.requests[-1].json["response_format"] == {"type": "json_object"}

        class Pair(BaseModel):
            setup: str
            punchline: str

        pair = await chat.with_structured_output(Pair, method="json_mode").ainvoke(JOKE_PROMPT)
        assert pair == Pair(setup="echo: " + JOKE_PROMPT, punchline="echo: " + JOKE_PROMPT)
    finally:
        await chat.aclose()
