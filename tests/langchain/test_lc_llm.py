"""``AzureMLOnlineEndpoint``: settings, per-call parameters, batches, retries, errors, streaming, save and load."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake import FakeListLLM
from lc_emulator import KEY, EmulatorThread

import azml_client
from azml_client._models._batch import DEFAULT_BATCH_CONCURRENCY
from azml_client.langchain import (
    AzureMLChatOnlineEndpoint,
    AzureMLEndpointApiType,
    AzureMLOnlineEndpoint,
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    load_llm,
)
from azml_client.testing import Fault

RETRY_SOON = {"retry-after-ms": "1"}


@pytest.fixture
def make_llm(ep: EmulatorThread) -> Iterator[Any]:
    """Build dedicated (gpt2 deployment) LLMs on the emulator; each is closed after the test."""
    made: list[AzureMLOnlineEndpoint] = []

    def make(**options: Any) -> AzureMLOnlineEndpoint:
        settings: dict[str, Any] = {"endpoint_url": ep.score_url, "endpoint_api_key": KEY, **options}
        llm = AzureMLOnlineEndpoint(**settings)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        llm.close()


# ---------------------------------------------------------------------------------------------- settings


def test_env_vars_of_the_seed(ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", ep.completions_url)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_TYPE", "serverless")
    monkeypatch.setenv("AZUREML_DEPLOYMENT_NAME", "blue")
    llm = AzureMLOnlineEndpoint()
    assert llm.endpoint_api_type is AzureMLEndpointApiType.serverless
    assert llm.invoke("hi") == "echo: hi"
    assert ep.last.headers["authorization"] == f"Bearer {KEY}"
    assert ep.last.deployment == "blue"
    assert llm._identifying_params["content_formatter"] == "openai"  # the serverless default
    llm.close()


@pytest.mark.parametrize("formatter", [HFContentFormatter(), HFContentFormatter, "hf"])
def test_content_formatter_as_instance_class_or_name(make_llm: Any, ep: EmulatorThread, formatter: Any) -> None:
    llm = make_llm(content_formatter=formatter, deployment_name="hf")
    assert llm.invoke("hello") == "echo: hello"
    assert ep.last.json == {"inputs": ["hello"], "parameters": {}}


def test_bad_settings_are_configuration_errors(ep: EmulatorThread) -> None:
    with pytest.raises(azml_client.ConfigurationError, match="endpoint URL is required"):
        AzureMLOnlineEndpoint(endpoint_api_key=KEY)
    with pytest.raises(azml_client.ConfigurationError, match="does not support api_type 'serverless'"):
        AzureMLOnlineEndpoint(
            endpoint_url=ep.completions_url, endpoint_api_type="serverless", content_formatter=GPT2ContentFormatter()
        )
    with pytest.raises(azml_client.ConfigurationError, match="needs a completion formatter"):
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url, content_formatter=CustomOpenAIChatContentFormatter())
    with pytest.raises(azml_client.ConfigurationError, match="unknown formatter 'gtp2'"):
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url, content_formatter="gtp2")
    with pytest.raises(azml_client.ConfigurationError, match="transport setting"):
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url, model_kwargs={"timeout": 3})
    with pytest.raises(azml_client.ConfigurationError, match="both as a field and in model_kwargs"):
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url, temperature=0.1, model_kwargs={"temperature": 0.2})
    with pytest.raises(ValueError, match="unknown api_type"):  # pydantic's ValidationError, a ValueError
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url, endpoint_api_type="batch")


def test_none_falls_back_to_the_env_var(ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebooks pass ``os.getenv(...)``, which may be None: the seed then read its own env var."""
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", ep.score_url)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    llm = AzureMLOnlineEndpoint(endpoint_url=None, endpoint_api_key=None, deployment_name=None)
    assert llm.endpoint_url == ep.score_url
    assert llm.invoke("hi") == "echo: hi"
    llm.close()
    monkeypatch.delenv("AZUREML_ENDPOINT_URL")
    with pytest.raises(azml_client.ConfigurationError, match="AZUREML_ENDPOINT_URL"):
        AzureMLOnlineEndpoint(endpoint_url=None)


def test_the_input_is_not_a_parameter(make_llm: Any, ep: EmulatorThread) -> None:
    with pytest.raises(azml_client.ConfigurationError, match="'prompt'"):
        make_llm(model_kwargs={"prompt": "x"})
    llm = make_llm()
    with pytest.raises(azml_client.ConfigurationError, match="'prompt' is the call's input"):
        llm.invoke("hi", prompt="other")
    assert llm.invoke("hi", stream=True) == "echo: hi"
    assert ep.last.json["parameters"] == {}


def test_key_is_never_shown(make_llm: Any) -> None:
    llm = make_llm()
    for text in (repr(llm), str(llm), json.dumps(llm._identifying_params), str(llm.asdict())):
        assert KEY not in text


# ---------------------------------------------------------------------------------------------- calls


def test_stop_and_call_time_kwargs_apply_to_one_call_only(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(model_kwargs={"max_new_tokens": 50, "temperature": 0.8})
    assert llm.invoke("one two three four", stop=["three"]) == "echo: one two "
    assert ep.last.json["parameters"] == {"max_new_tokens": 50, "temperature": 0.8, "stop": ["three"]}
    assert llm.invoke("one two", temperature=0.1, top_p=0.5) == "echo: one two"
    assert ep.last.json["parameters"] == {"max_new_tokens": 50, "temperature": 0.1, "top_p": 0.5}
    llm.invoke("again")
    assert ep.last.json["parameters"] == {"max_new_tokens": 50, "temperature": 0.8}
    assert llm.model_kwargs == {"max_new_tokens": 50, "temperature": 0.8}


def test_standard_fields_join_the_body(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(temperature=0.3, max_tokens=2, stop=["zz"])
    assert llm.invoke("a b c") == "echo: a"
    assert ep.last.json["parameters"] == {"temperature": 0.3, "max_tokens": 2, "stop": ["zz"]}
    llm.invoke("a", stop=["b"])  # a call's stop replaces the field
    assert ep.last.json["parameters"]["stop"] == ["b"]
    params = llm._get_ls_params(stop=["b"])
    assert params["ls_provider"] == "azureml"
    assert params["ls_model_type"] == "llm"
    assert params["ls_temperature"] == 0.3
    assert params["ls_max_tokens"] == 2
    assert params["ls_stop"] == ["b"]


def test_call_time_timeout_is_a_transport_setting(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(max_retries=0)
    assert llm.invoke("hi", timeout=5) == "echo: hi"
    assert "timeout" not in ep.last.json["parameters"]
    ep.enqueue(Fault.hang())
    with pytest.raises(azml_client.APITimeoutError):
        llm.invoke("hi", timeout=0.2)


def test_timeout_field(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(timeout=0.2, max_retries=0)
    ep.enqueue(Fault.hang())
    with pytest.raises(azml_client.APITimeoutError):
        llm.invoke("hi")


def test_max_retries_works(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(max_retries=2)
    ep.enqueue(Fault.status(503, headers=RETRY_SOON), Fault.status(429, headers=RETRY_SOON))
    assert llm.invoke("hi") == "echo: hi"
    assert len(ep.requests) == 3


def test_errors_are_typed_and_reach_langchain_fallbacks(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm(max_retries=0)
    ep.enqueue(Fault.status(503))
    with pytest.raises(azml_client.ServerError) as caught:
        llm.invoke("hi")
    assert caught.value.status_code == 503
    wrong_key = make_llm(endpoint_api_key="wrong")
    with pytest.raises(azml_client.AuthenticationError):
        wrong_key.invoke("hi")
    fallback = wrong_key.with_fallbacks([FakeListLLM(responses=["from the fallback"])])
    assert fallback.invoke("hi") == "from the fallback"
    ep.enqueue(Fault.malformed())
    with pytest.raises(azml_client.ResponseFormatError, match="gpt2"):
        llm.invoke("hi")
    wrong_schema = make_llm(deployment_name="dolly")
    with pytest.raises(azml_client.BadRequestError, match="dolly"):
        wrong_schema.invoke("hi")


async def test_async_calls(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm()
    assert await llm.ainvoke("hi", stop=["i"]) == "echo: h"
    assert ep.last.json["parameters"] == {"stop": ["i"]}
    result = await llm.agenerate(["a", "b"])
    assert [generations[0].text for generations in result.generations] == ["echo: a", "echo: b"]
    await llm.aclose()


def test_generate_reports_usage_and_finish_reason(ep: EmulatorThread) -> None:
    llm = AzureMLOnlineEndpoint(
        endpoint_url=ep.completions_url, endpoint_api_type="serverless", endpoint_api_key=KEY, max_tokens=2
    )
    result = llm.generate(["one two three", "four"])
    assert [g[0].text for g in result.generations] == ["echo: one", "echo: four"]
    assert result.generations[0][0].generation_info == {"finish_reason": "length", "logprobs": None}
    assert result.llm_output == {
        "token_usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8},
        "model_name": "azml-emulator",
    }
    llm.close()


# ---------------------------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[EmulatorThread]:
    """An emulator that takes 50 ms per answer, so concurrency shows in ``max_in_flight``."""
    server = EmulatorThread(api_key=KEY, latency=0.05).start()
    try:
        yield server
    finally:
        server.stop()


def test_batch_is_concurrent(slow_emulator: EmulatorThread) -> None:
    slow_emulator.reset()
    prompts = [f"p{i}" for i in range(12)]
    llm = AzureMLOnlineEndpoint(endpoint_url=slow_emulator.score_url, endpoint_api_key=KEY)
    assert llm.batch(prompts) == [f"echo: p{i}" for i in range(12)]
    # Concurrent in one call: the client's adaptive limit starts at 8 and grows as healthy answers come back.
    assert slow_emulator.max_in_flight == 8
    llm.close()


async def test_abatch_max_concurrency_is_a_sliding_window(slow_emulator: EmulatorThread) -> None:
    slow_emulator.reset()
    prompts = [f"p{i}" for i in range(10)]
    llm = AzureMLOnlineEndpoint(endpoint_url=slow_emulator.score_url, endpoint_api_key=KEY)
    assert await llm.abatch(prompts, config={"max_concurrency": 4}) == [f"echo: {p}" for p in prompts]
    assert slow_emulator.max_in_flight == 4
    slow_emulator.reset()
    capped = AzureMLOnlineEndpoint(endpoint_url=slow_emulator.score_url, endpoint_api_key=KEY, max_concurrency=3)
    assert await capped.abatch(prompts) == [f"echo: {p}" for p in prompts]
    assert slow_emulator.max_in_flight == 3
    await llm.aclose()
    await capped.aclose()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_return_exceptions_gives_each_prompt_its_own_result(
    make_llm: Any, ep: EmulatorThread, asynchronous: bool
) -> None:
    llm = make_llm()
    prompts = [f"p{i}" for i in range(6)]
    ep.enqueue(Fault.status(400))  # one prompt's request gets it (whichever arrives first)
    results = (
        await llm.abatch(prompts, return_exceptions=True)
        if asynchronous
        else llm.batch(prompts, return_exceptions=True)
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1
    assert isinstance(failures[0], azml_client.BadRequestError)
    for prompt, result in zip(prompts, results, strict=True):
        assert result is failures[0] or result == f"echo: {prompt}"
    # Without return_exceptions the failure is raised, as before.
    ep.enqueue(Fault.status(400))
    with pytest.raises(azml_client.BadRequestError):
        await llm.abatch(prompts) if asynchronous else llm.batch(prompts)


def test_default_batch_width_is_the_core_default_everywhere() -> None:
    """batch and abatch of both adapters keep at most 32 (the core ``abatch`` default) in flight."""
    server = EmulatorThread(api_key=KEY, latency=0.15).start()
    llm = AzureMLOnlineEndpoint(endpoint_url=server.score_url, endpoint_api_key=KEY)
    chat = AzureMLChatOnlineEndpoint(endpoint_url=server.chat_url, endpoint_api_key=KEY, endpoint_api_type="serverless")
    prompts = [f"p{i}" for i in range(300)]
    calls = {
        "llm.batch": lambda: llm.batch(prompts),
        "llm.batch(return_exceptions)": lambda: llm.batch(prompts, return_exceptions=True),
        "llm.abatch": lambda: asyncio.run(llm.abatch(prompts)),
        "chat.batch": lambda: chat.batch(prompts),
        "chat.abatch": lambda: asyncio.run(chat.abatch(prompts)),
    }
    try:
        widths = {}
        for name, run in calls.items():
            server.reset()
            assert len(run()) == 300
            widths[name] = server.max_in_flight
        # The adaptive limit starts at 8 and grows on healthy answers; the batch width bounds it.
        assert widths == dict.fromkeys(calls, DEFAULT_BATCH_CONCURRENCY)
    finally:
        llm.close()
        chat.close()
        server.stop()


# ---------------------------------------------------------------------------------------------- streaming


class _Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


def test_stream_from_a_serverless_endpoint(ep: EmulatorThread) -> None:
    llm = AzureMLOnlineEndpoint(
        endpoint_url=ep.completions_url, endpoint_api_type="serverless", endpoint_api_key=KEY, temperature=0.5
    )
    tokens = _Tokens()
    pieces = list(llm.stream("one two three", config={"callbacks": [tokens]}))
    assert pieces == ["echo: ", "one ", "two ", "three"]
    assert tokens.tokens == pieces
    assert ep.last.json == {"prompt": "one two three", "temperature": 0.5, "stream": True}
    llm.close()


async def test_astream_from_a_serverless_endpoint(ep: EmulatorThread) -> None:
    llm = AzureMLOnlineEndpoint(endpoint_url=ep.completions_url, endpoint_api_type="serverless", endpoint_api_key=KEY)
    assert [piece async for piece in llm.astream("a b", stop=["b"])] == ["echo: ", "a "]
    assert ep.last.json["stop"] == ["b"]
    await llm.aclose()


def test_a_dedicated_endpoint_streams_one_piece(make_llm: Any) -> None:
    assert list(make_llm().stream("one two")) == ["echo: one two"]


# ---------------------------------------------------------------------------------------------- save / load


def test_save_writes_a_full_config_without_the_key(ep: EmulatorThread, tmp_path: Path) -> None:
    llm = AzureMLOnlineEndpoint(
        endpoint_url=ep.completions_url,
        endpoint_api_type=AzureMLEndpointApiType.serverless,
        endpoint_api_key=KEY,
        deployment_name="blue",
        content_formatter=CustomOpenAIContentFormatter(legacy_escaping=True),
        model_kwargs={"top_p": 0.9},
        timeout=azml_client.Timeout(total=30, connect=2, read=10),
        max_retries=5,
        max_concurrency=7,
        temperature=0.1,
    )
    for name in ("llm.json", "llm.yaml"):
        llm.save(tmp_path / name)
        text = (tmp_path / name).read_text()
        assert KEY not in text
        saved = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        assert saved == {
            "endpoint_url": ep.completions_url,
            "endpoint_api_type": "serverless",
            "deployment_name": "blue",
            "content_formatter": {"name": "openai", "legacy_escaping": True},
            "model_kwargs": {"top_p": 0.9},
            "timeout": {"total": 30, "connect": 2, "read": 10},
            "max_retries": 5,
            "max_concurrency": 7,
            "temperature": 0.1,
            "_type": "azureml_endpoint",
        }
        loaded = load_llm(tmp_path / name, endpoint_api_key=KEY)
        assert isinstance(loaded, AzureMLOnlineEndpoint)
        assert loaded._identifying_params == llm._identifying_params
        assert loaded.invoke('say "hi"') == 'echo: say \\"hi\\"'  # legacy escaping survived the round trip
        loaded.close()
    llm.close()


def test_save_and_load_errors(ep: EmulatorThread, tmp_path: Path) -> None:
    class Unregistered(GPT2ContentFormatter):
        pass

    llm = AzureMLOnlineEndpoint(endpoint_url=ep.score_url, content_formatter=Unregistered())
    with pytest.raises(azml_client.ConfigurationError, match="not registered"):
        llm.save(tmp_path / "x.json")
    with pytest.raises(azml_client.ConfigurationError, match=r"\.json or \.yaml"):
        AzureMLOnlineEndpoint(endpoint_url=ep.score_url).save(tmp_path / "x.txt")
    (tmp_path / "key.json").write_text(json.dumps({"endpoint_url": ep.score_url, "endpoint_api_key": "k"}))
    with pytest.raises(azml_client.ConfigurationError, match="never read from config files"):
        load_llm(tmp_path / "key.json")
    (tmp_path / "other.json").write_text(json.dumps({"_type": "openai"}))
    with pytest.raises(azml_client.ConfigurationError, match="'openai' model"):
        load_llm(tmp_path / "other.json")
    with pytest.raises(azml_client.ConfigurationError, match="cannot read"):
        load_llm(tmp_path / "missing.json")


def test_load_a_config_the_seed_saved(ep: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", ep.score_url)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    seed_config = {"deployment_name": "gpt2", "model_kwargs": {"temperature": 0.2}, "_type": "azureml_endpoint"}
    (tmp_path / "seed.json").write_text(json.dumps(seed_config))
    llm = load_llm(tmp_path / "seed.json")
    assert llm.invoke("hi") == "echo: hi"
    assert ep.last.json["parameters"] == {"temperature": 0.2}
    llm.close()


def test_copies_get_their_own_core(make_llm: Any, ep: EmulatorThread) -> None:
    llm = make_llm()
    llm.invoke("warm up")
    for other in (copy.deepcopy(llm), llm.model_copy(update={"deployment_name": "hf", "content_formatter": "hf"})):
        assert other._core() is not llm._core()
        assert other.invoke("hi") == "echo: hi"
        other.close()
    assert llm.invoke("still") == "echo: still"


def test_a_formatter_written_for_the_seed(ep: EmulatorThread) -> None:
    """The example in the seed's ``ContentFormatterBase`` docstring, with its api_type parameter and enum."""
    import json
    from typing import Dict  # noqa: UP035  (as the seed wrote it)

    from azml_client.langchain import AzureMLEndpointApiType, ContentFormatterBase

    seen: list[Any] = []

    class ContentFormatter(ContentFormatterBase):
        content_type = "application/json"
        accepts = "application/json"

        @property
        def supported_api_types(self) -> list[AzureMLEndpointApiType]:
            return [AzureMLEndpointApiType.dedicated, AzureMLEndpointApiType.realtime]

        def format_request_payload(
            self,
            prompt: str,
            model_kwargs: Dict,  # noqa: UP006
            api_type: AzureMLEndpointApiType,
        ) -> bytes:
            seen.append(api_type in [AzureMLEndpointApiType.dedicated, AzureMLEndpointApiType.realtime])
            input_str = json.dumps({"inputs": {"input_string": [prompt]}, "parameters": model_kwargs})
            return str.encode(input_str)

        def format_response_payload(self, output: str, api_type: AzureMLEndpointApiType) -> str:
            response_json = json.loads(output)
            return response_json[0]["0"]

    llm = AzureMLOnlineEndpoint(endpoint_url=ep.score_url, endpoint_api_key=KEY, content_formatter=ContentFormatter())
    assert llm.invoke('say "hi"\n', max_new_tokens=9) == 'echo: say "hi"\n'
    assert ep.last.json == {"inputs": {"input_string": ['say "hi"\n']}, "parameters": {"max_new_tokens": 9}}
    assert seen == [True]
    with pytest.raises(azml_client.ConfigurationError, match="does not support api_type 'serverless'"):
        AzureMLOnlineEndpoint(
            endpoint_url=ep.completions_url, endpoint_api_type="serverless", content_formatter=ContentFormatter
        )
    llm.close()


def test_load_llm_takes_path_or_the_seeds_file_keyword(tmp_path: Path) -> None:
    from azml_client.langchain import AzureMLOnlineEndpoint, load_llm

    config = tmp_path / "llm.json"
    AzureMLOnlineEndpoint(endpoint_url="https://x/score", endpoint_api_key="k", content_formatter="dolly").save(config)
    for loaded in (load_llm(config), load_llm(path=config), load_llm(file=config)):
        assert isinstance(loaded, AzureMLOnlineEndpoint)
        assert loaded.endpoint_url == "https://x/score"
    with pytest.raises(azml_client.ConfigurationError, match="path once"):
        load_llm()
    with pytest.raises(azml_client.ConfigurationError, match="path once"):
        load_llm(config, file=config)
