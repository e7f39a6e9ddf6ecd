"""The emulator's dedicated deployments: the BART summarisation schema, picking a schema (by name, by the
blue/green naming rule, by ``deployments=``, by the body's shape) and the 400 that says how to pick another.

Driven through a real :class:`MockEndpoint` on loopback, by plain aiohttp and by the SDK with a formatter
written the way the seed notebook wrote its BART one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

import azml_client as az
from azml_client.testing import MockEndpoint, echo_text

ARTICLE = "The library reopened on Monday after a long renovation."
SEED_OPTIONS = {"use_cache": False, "wait_for_model": True}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, deployment: str | None = None
) -> tuple[int, Any, str | None]:
    """POST ``body``; return the status, the parsed answer and the deployment header of the answer."""
    headers = {"azureml-model-deployment": deployment} if deployment else None
    async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers.get("azureml-model-deployment")


class SeedSummaryFormatter(az.ContentFormatterBase):
    """The seed notebook's BART formatter, unchanged but for its import line (``az.ContentFormatterBase``)."""

    content_type = "application/json"
    accepts = "application/json"

    def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
        input_str = json.dumps({"inputs": [prompt], "parameters": model_kwargs, "options": SEED_OPTIONS})
        return str.encode(input_str)

    def format_response_payload(self, output: bytes) -> str:  # type: ignore[override]
        response_json = json.loads(output)
        return str(response_json[0]["summary_text"])


# --- the bart schema -------------------------------------------------------------------------------------------


async def test_bart_answers_summary_text(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint() as ep:
        body = {"inputs": [ARTICLE, "two words"], "parameters": {"max_new_tokens": 3}, "options": SEED_OPTIONS}
        status, answer, deployment = await post(session, ep.score_url, body, "bart")
        assert (status, deployment) == (200, "bart")
        assert answer == [{"summary_text": "echo: The library"}, {"summary_text": "echo: two words"}]
        # parameters and options are optional
        status, answer, _ = await post(session, ep.score_url, {"inputs": ["x"]}, "bart")
        assert (status, answer) == (200, [{"summary_text": echo_text("x")}])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": [ARTICLE], "options": []}, "options must be an object"),
        ({"inputs": ARTICLE}, "inputs must be a non-empty array"),
        ({"inputs": [ARTICLE], "extra": 1}, "unexpected key(s) 'extra'"),
    ],
)
async def test_bart_rejects_what_it_cannot_read(session: aiohttp.ClientSession, body: Any, needle: str) -> None:
    async with MockEndpoint() as ep:
        status, answer, _ = await post(session, ep.score_url, body, "bart")
    assert status == 400
    message = answer["error"]["message"]
    assert needle in message
    assert "'parameters' and 'options' are optional" in message


async def test_the_seed_notebooks_bart_formatter_works_against_the_emulator() -> None:
    async with MockEndpoint(api_key="k") as ep:
        async with az.LLM(
            ep.score_url,
            "k",
            formatter=SeedSummaryFormatter(),
            deployment_name="bart",
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        ) as llm:
            assert await llm.ainvoke(ARTICLE) == echo_text(ARTICLE)
        sent = ep.requests[-1]
    assert sent.deployment == "bart"
    assert sent.json == {
        "inputs": [ARTICLE],
        "parameters": {"temperature": 0.8, "max_new_tokens": 400},
        "options": SEED_OPTIONS,
    }


async def test_seed_style_code_without_a_deployment_is_told_how_to_pick_bart() -> None:
    async with MockEndpoint() as ep, az.LLM(ep.score_url, formatter=SeedSummaryFormatter()) as llm:
        with pytest.raises(az.BadRequestError) as info:
            await llm.ainvoke(ARTICLE)
    message = info.value.json()["error"]["message"]
    assert message.startswith("Deployment 'gpt2' (the default: the request names no deployment) cannot read")
    assert "Expected {" in message
    assert "The body fits the bart schema: pass deployment_name='bart'" in message
    assert "--deployment bart" in message
    assert "'auto' picks the schema by the body's shape" in message
    # The hint is in the exception's own text, which shows only the start of the body.
    assert "deployment_name='bart'" in str(info.value)


# --- how the schema is picked -----------------------------------------------------------------------------------


async def test_a_body_for_another_schema_names_the_deployments_that_read_it(session: aiohttp.ClientSession) -> None:
    openai_body = {"input_data": {"input_string": ["hi"], "parameters": {"temperature": 0.1}}}
    async with MockEndpoint() as ep:
        status, answer, _ = await post(session, ep.score_url, openai_body)
        assert status == 400
        message = answer["error"]["message"]
        assert "The body fits the openai schema: pass deployment_name='openai'" in message
        assert "--deployment openai (MockEndpoint(default_deployment='openai')" in message
        # A request that named its deployment is not told about the emulator's default.
        status, answer, _ = await post(session, ep.score_url, openai_body, "dolly")
        assert status == 400
        message = answer["error"]["message"]
        assert message.startswith("Deployment 'dolly' cannot read the request")
        assert "deployment_name='openai'" in message
        assert "--deployment" not in message
        # hf and bart both read a body without options; both are named, hf first.
        status, answer, _ = await post(session, ep.score_url, {"inputs": ["x"]})
        assert "The body fits the hf / bart schema: pass deployment_name='hf'" in answer["error"]["message"]
        # A body no schema reads gets the generic way out.
        status, answer, _ = await post(session, ep.score_url, {"prompt": "x"})
        message = answer["error"]["message"]
        assert "For another schema, pass its deployment_name" in message
        assert "--deployment NAME" in message


SYSTEM_ONLY = {"input_data": {"input_string": [{"role": "system", "content": "s"}]}}
USER_ONLY = {"input_data": {"input_string": [{"role": "user", "content": "p"}]}}


@pytest.mark.parametrize(
    ("deployment", "body", "expected"),
    [
        ("llama-blue", {"input_data": {"input_string": ["p"]}}, [{"0": "echo: p"}]),
        ("dolly-green", {"input_data": {"input_string": ["p"]}}, ["echo: p"]),
        # openai-chat (the longest name it starts with), not openai, and not mistral-chat: the system role is read
        ("openai-chat-blue", SYSTEM_ONLY, {"output": "echo: "}),
        ("bart-summary", {"inputs": ["p"], "options": {}}, [{"summary_text": "echo: p"}]),
        ("mistral-chat-v2", USER_ONLY, {"output": "echo: p"}),
    ],
)
async def test_blue_green_names_are_served_by_the_deployment_they_start_with(
    session: aiohttp.ClientSession, deployment: str, body: Any, expected: Any
) -> None:
    async with MockEndpoint() as ep:
        status, answer, header = await post(session, ep.score_url, body, deployment)
    assert (status, answer, header) == (200, expected, deployment)


@pytest.mark.parametrize("name", ["nope", "gpt2x", "-gpt2", "blue-llama", "auto"])
async def test_other_names_are_not_found(session: aiohttp.ClientSession, name: str) -> None:
    async with MockEndpoint(deployments={"prod": "openai"}) as ep:
        status, answer, header = await post(session, ep.score_url, {"inputs": {"input_string": ["x"]}}, name)
    assert (status, header) == (404, None)
    message = answer["error"]["message"]
    assert repr(name) in message
    assert "llama-blue is openai" in message
    assert message.endswith(", and prod")


async def test_deployments_add_names_of_your_own(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(deployments={"prod-7": "llama", "summarizer": "bart"}, default_deployment="prod-7") as ep:
        body = {"input_data": {"input_string": ["p"]}}
        assert (await post(session, ep.score_url, body, "prod-7"))[:2] == (200, [{"0": "echo: p"}])
        assert (await post(session, ep.score_url, body))[1:] == ([{"0": "echo: p"}], "prod-7")
        status, answer, _ = await post(session, ep.score_url, {"inputs": ["p"]}, "summarizer")
        assert (status, answer) == (200, [{"summary_text": "echo: p"}])


@pytest.mark.parametrize(
    "options",
    [
        {"deployments": {"x": "gpt5"}},
        {"deployments": {"": "gpt2"}},
        {"deployments": {"auto": "gpt2"}},
        {"default_deployment": "prod"},
    ],
)
def test_bad_deployments(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="deployment"):
        MockEndpoint(**options)


@pytest.mark.parametrize(
    ("body", "schema", "expected"),
    [
        ({"inputs": {"input_string": ["p"]}}, "gpt2", [{"0": "echo: p"}]),
        ({"inputs": ["p"], "parameters": {}}, "hf", [{"0": {"generated_text": "echo: p"}}]),
        ({"inputs": ["p"], "parameters": {}, "options": {}}, "bart", [{"summary_text": "echo: p"}]),
        ({"input_data": {"input_string": ["p"]}}, "openai", [{"0": "echo: p"}]),
        ({"input_data": {"input_string": ["p"], "parameters": {}}}, "openai", [{"0": "echo: p"}]),
        ({"input_data": {"input_string": ["p"]}, "parameters": {}}, "dolly", ["echo: p"]),
        (
            {"input_data": {"input_string": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}]}},
            "openai-chat",
            {"output": "echo: p"},
        ),
    ],
)
async def test_auto_picks_the_schema_from_the_shape(
    session: aiohttp.ClientSession, body: Any, schema: str, expected: Any
) -> None:
    async with MockEndpoint(default_deployment="auto") as ep:
        status, answer, header = await post(session, ep.score_url, body)
        assert (status, answer, header) == (200, expected, schema)
        # A request that names its deployment still gets that deployment.
        status, _, header = await post(session, ep.score_url, {"inputs": {"input_string": ["p"]}}, "hf")
        assert (status, header) == (400, "hf")


async def test_auto_without_a_fitting_schema_lists_them_all(session: aiohttp.ClientSession) -> None:
    async with MockEndpoint(default_deployment="auto", schema_error_status=424) as ep:
        status, answer, _ = await post(session, ep.score_url, {"prompt": "x"})
        assert status == 424
        message = answer["error"]["message"]
        assert "No dedicated schema reads this request" in message
        for schema in ("gpt2", "hf", "bart", "dolly", "openai", "openai-chat", "mistral-chat"):
            assert f"{schema}: {{" in message
        async with session.post(ep.score_url, data=b"not json") as resp:
            assert resp.status == 424


async def test_seed_style_code_runs_unchanged_against_auto() -> None:
    """Seed-style dedicated code names no deployment: with ``auto`` each formatter gets its own schema."""
    async with MockEndpoint(default_deployment="auto") as ep:
        for formatter in ("gpt2", "hf", "dolly", "openai"):
            async with az.LLM(ep.score_url, formatter=formatter, model_kwargs={"max_new_tokens": 9}) as llm:
                assert await llm.ainvoke(f"via {formatter}") == f"echo: via {formatter}"
        async with az.LLM(ep.score_url, formatter=SeedSummaryFormatter()) as llm:
            assert await llm.ainvoke(ARTICLE) == echo_text(ARTICLE)
        async with az.ChatModel(ep.score_url, formatter="openai-chat") as chat:
            assert (await chat.ainvoke([("system", "s"), ("user", "hi")])).content == "echo: hi"
        assert [r.headers.get("azureml-model-deployment") for r in ep.requests] == [None] * 6


# --- the command lines ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", ["auto", "bart", "llama-blue"])
def test_both_command_lines_take_the_new_deployments(monkeypatch: pytest.MonkeyPatch, deployment: str) -> None:
    import azml_client.testing
    import azml_client.testing.__main__ as module_main
    from azml_client.cli import main as azml

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(module_main, "run_mock_server", lambda **options: calls.append(options))
    monkeypatch.setattr(azml_client.testing, "run_mock_server", lambda **options: calls.append(options))
    assert module_main.main(["--port", "0", "--deployment", deployment]) == 0
    assert azml(["mock-server", "--port", "0", "--deployment", deployment]) == 0
    assert [options["default_deployment"] for options in calls] == [deployment, deployment]
    MockEndpoint(default_deployment=deployment)  # and the emulator takes them


def test_the_module_command_line_refuses_unknown_deployments(capsys: pytest.CaptureFixture[str]) -> None:
    import azml_client.testing.__main__ as module_main

    with pytest.raises(SystemExit):
        module_main.main(["--deployment", "gpt5"])
    assert "auto" in capsys.readouterr().err
