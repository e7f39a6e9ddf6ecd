"""The seed's notebook examples, run against the emulator with only their import lines changed.

Sources: LangChain's ``docs/docs/integrations/llms/azure_ml.ipynb`` and
``docs/docs/integrations/chat/azureml_chat_endpoint.ipynb``. Each test sets up what a notebook reader sets
up outside the code (env vars, the emulator's deployment, the key ``my-api-key``), then runs the cell as
written, except that ``from langchain_community...`` imports become ``from azml_client.langchain ...``, the
placeholder URL ``https://<your-endpoint>.<your_region>.inference.ml.azure.com/...`` is the emulator's, and
the Dolly cell's ``LLMChain`` (gone from LangChain) is ``prompt | llm``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
from lc_emulator import KEY, EmulatorThread

import azml_client
from azml_client.langchain import AzureMLChatOnlineEndpoint, AzureMLOnlineEndpoint
from azml_client.testing import Fault

PROMPT = "Write me a song about sparkling water:"
QUESTION = "Will the Collatz conjecture ever be solved?"


@pytest.fixture
def notebook_ep(ep: EmulatorThread) -> EmulatorThread:
    """The emulator, also accepting the notebooks' key ``my-api-key``."""
    ep.run(lambda: ep.endpoint.accepted_keys.add("my-api-key"))
    return ep


def test_llama_completions_with_a_realtime_endpoint(
    notebook_ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_DEPLOYMENT_NAME", "llama")  # the emulator's deployment that speaks this schema
    url = notebook_ep.score_url

    # notebook cell: "Example: LlaMa 2 completions with real-time endpoints"
    from langchain_core.messages import HumanMessage  # noqa: F401  (as in the notebook)

    from azml_client.langchain import (
        AzureMLEndpointApiType,
        LlamaContentFormatter,
    )

    with pytest.warns(DeprecationWarning, match="deprecated"):  # realtime, LlamaContentFormatter
        llm = AzureMLOnlineEndpoint(
            endpoint_url=url,
            endpoint_api_type=AzureMLEndpointApiType.realtime,
            endpoint_api_key="my-api-key",
            content_formatter=LlamaContentFormatter(),
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        )
    response = llm.invoke("Write me a song about sparkling water:")

    assert response == "echo: " + PROMPT
    sent = notebook_ep.last
    assert sent.path == "/score"
    assert sent.deployment == "llama"
    assert sent.headers["authorization"] == "Bearer my-api-key"
    assert sent.json == {
        "input_data": {"input_string": [PROMPT], "parameters": {"temperature": 0.8, "max_new_tokens": 400}}
    }

    # notebook cell: "Model parameters can also be indicated during invocation"
    response = llm.invoke("Write me a song about sparkling water:", temperature=0.5)

    assert response == "echo: " + PROMPT
    assert notebook_ep.last.json["input_data"]["parameters"] == {"temperature": 0.5, "max_new_tokens": 400}
    assert llm.model_kwargs == {"temperature": 0.8, "max_new_tokens": 400}  # the seed mutated it; never again
    llm.invoke(PROMPT)
    assert notebook_ep.last.json["input_data"]["parameters"]["temperature"] == 0.8
    llm.close()


def test_llama_completions_with_a_serverless_deployment(notebook_ep: EmulatorThread) -> None:
    url = notebook_ep.completions_url

    # notebook cell: "Example: Chat completions with pay-as-you-go deployments (model as a service)"
    from langchain_core.messages import HumanMessage  # noqa: F401  (as in the notebook)

    from azml_client.langchain import (
        AzureMLEndpointApiType,
        LlamaContentFormatter,
    )

    with pytest.warns(DeprecationWarning, match="LlamaContentFormatter"):
        llm = AzureMLOnlineEndpoint(
            endpoint_url=url,
            endpoint_api_type=AzureMLEndpointApiType.serverless,
            endpoint_api_key="my-api-key",
            content_formatter=LlamaContentFormatter(),
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        )
    response = llm.invoke("Write me a song about sparkling water:")

    assert response == "echo: " + PROMPT
    sent = notebook_ep.last
    assert sent.path == "/v1/completions"
    assert sent.json == {"prompt": PROMPT, "temperature": 0.8, "max_new_tokens": 400}
    llm.close()


def test_custom_content_formatter(notebook_ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BART_ENDPOINT_API_KEY", "my-api-key")
    monkeypatch.setenv("BART_ENDPOINT_URL", notebook_ep.score_url)
    # The emulator serves no BART deployment: it answers this one request with a summarization model's body.
    summary = [{"summary_text": "HaSeul sat out two EPs to recover, then Loona returned and debuted in Japan."}]
    notebook_ep.enqueue(Fault.malformed(orjson.dumps(summary), content_type="application/json"))

    # notebook cell: "Example: Custom content formatter"
    import json
    import os
    from typing import Dict  # noqa: UP035  (as in the notebook)

    from azml_client.langchain import (
        AzureMLOnlineEndpoint,
        ContentFormatterBase,
    )

    class CustomFormatter(ContentFormatterBase):
        content_type = "application/json"
        accepts = "application/json"

        def format_request_payload(self, prompt: str, model_kwargs: Dict) -> bytes:  # noqa: UP006
            input_str = json.dumps(
                {
                    "inputs": [prompt],
                    "parameters": model_kwargs,
                    "options": {"use_cache": False, "wait_for_model": True},
                }
            )
            return str.encode(input_str)

        def format_response_payload(self, output: bytes) -> str:
            response_json = json.loads(output)
            return response_json[0]["summary_text"]

    content_formatter = CustomFormatter()

    with pytest.warns(DeprecationWarning, match="realtime"):
        llm = AzureMLOnlineEndpoint(
            endpoint_api_type="realtime",
            endpoint_api_key=os.getenv("BART_ENDPOINT_API_KEY"),
            endpoint_url=os.getenv("BART_ENDPOINT_URL"),
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
            content_formatter=content_formatter,
        )
    large_text = """On January 7, 2020, Blockberry Creative announced that HaSeul would not participate in the promotion for Loona's 
next album because of mental health concerns. She was said to be diagnosed with "intermittent anxiety symptoms" and would be 
taking time to focus on her health.[39] On February 5, 2020, Loona released their second EP titled [#] (read as hash), along 
with the title track "So What".[40] Although HaSeul did not appear in the title track, her vocals are featured on three other 
songs on the album, including "365". Once peaked at number 1 on the daily Gaon Retail Album Chart,[41] the EP then debuted at 
number 2 on the weekly Gaon Album Chart. On March 12, 2020, Loona won their first music show trophy with "So What" on Mnet's 
M Countdown.[42]

On October 19, 2020, Loona released their third EP titled [12:00] (read as midnight),[43] accompanied by its first single 
"Why Not?". HaSeul was again not involved in the album, out of her own decision to focus on the recovery of her health.[44] 
The EP then became their first album to enter the Billboard 200, debuting at number 112.[45] On November 18, Loona released 
the music video for "Star", another song on [12:00].[46] Peaking at number 40, "Star" is Loona's first entry on the Billboard 
Mainstream Top 40, making them the second K-pop girl group to enter the chart.[47]

On June 1, 2021, Loona announced that they would be having a comeback on June 28, with their fourth EP, [&] (read as and).
[48] The following day, on June 2, a teaser was posted to Loona's official social media accounts showing twelve sets of eyes, 
confirming the return of member HaSeul who had been on hiatus since early 2020.[49] On June 12, group members YeoJin, Kim Lip, 
Choerry, and Go Won released the song "Yum-Yum" as a collaboration with Cocomong.[50] On September 8, they released another 
collaboration song named "Yummy-Yummy".[51] On June 27, 2021, Loona announced at the end of their special clip that they are 
making their Japanese debut on September 15 under Universal Music Japan sublabel EMI Records.[52] On August 27, it was announced 
that Loona will release the double A-side single, "Hula Hoop / Star Seed" on September 15, with a physical CD release on October 
20.[53] In December, Chuu filed an injunction to suspend her exclusive contract with Blockberry Creative.[54][55]
"""  # noqa: E501, W291  (the notebook's text, as it is)
    summarized_text = llm.invoke(large_text)
    print(summarized_text)

    assert summarized_text == summary[0]["summary_text"]
    assert notebook_ep.last.json == {
        "inputs": [large_text],
        "parameters": {"temperature": 0.8, "max_new_tokens": 400},
        "options": {"use_cache": False, "wait_for_model": True},
    }
    llm.close()


def test_dolly_with_a_prompt_template(notebook_ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOLLY_ENDPOINT_API_KEY", "my-api-key")
    monkeypatch.setenv("DOLLY_ENDPOINT_URL", notebook_ep.score_url)
    monkeypatch.setenv("AZUREML_DEPLOYMENT_NAME", "dolly")

    # notebook cell: "Example: Dolly with LLMChain" (LLMChain(llm=llm, prompt=prompt) is now prompt | llm)
    from langchain_core.prompts import PromptTemplate

    from azml_client.langchain import DollyContentFormatter

    formatter_template = "Write a {word_count} word essay about {topic}."

    prompt = PromptTemplate(input_variables=["word_count", "topic"], template=formatter_template)

    content_formatter = DollyContentFormatter()

    llm = AzureMLOnlineEndpoint(
        endpoint_api_key=os.getenv("DOLLY_ENDPOINT_API_KEY"),
        endpoint_url=os.getenv("DOLLY_ENDPOINT_URL"),
        model_kwargs={"temperature": 0.8, "max_tokens": 300},
        content_formatter=content_formatter,
    )

    chain = prompt | llm
    answer = chain.invoke({"word_count": 100, "topic": "how to make friends"})
    print(answer)

    assert answer == "echo: Write a 100 word essay about how to make friends."
    sent = notebook_ep.last
    assert sent.deployment == "dolly"
    assert sent.json == {
        "input_data": {"input_string": ["Write a 100 word essay about how to make friends."]},
        "parameters": {"temperature": 0.8, "max_tokens": 300},
    }
    llm.close()


def test_save_and_load(
    notebook_ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", notebook_ep.score_url)
    monkeypatch.setenv("AZUREML_ENDPOINT_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)

    # notebook cell: "Serializing an LLM"
    from azml_client.langchain import load_llm

    save_llm = AzureMLOnlineEndpoint(
        deployment_name="databricks-dolly-v2-12b-4",
        model_kwargs={
            "temperature": 0.2,
            "max_tokens": 150,
            "top_p": 0.8,
            "frequency_penalty": 0.32,
            "presence_penalty": 72e-3,
        },
    )
    save_llm.save("azureml.json")
    loaded_llm = load_llm("azureml.json")

    print(loaded_llm)

    saved = json.loads((tmp_path / "azureml.json").read_text())
    assert saved == {
        "endpoint_url": notebook_ep.score_url,
        "endpoint_api_type": "dedicated",
        "deployment_name": "databricks-dolly-v2-12b-4",
        "content_formatter": "gpt2",
        "model_kwargs": {
            "temperature": 0.2,
            "max_tokens": 150,
            "top_p": 0.8,
            "frequency_penalty": 0.32,
            "presence_penalty": 72e-3,
        },
        "timeout": None,
        "max_retries": 2,
        "max_concurrency": None,
        "_type": "azureml_endpoint",
    }
    assert KEY not in (tmp_path / "azureml.json").read_text()
    assert KEY not in capsys.readouterr().out
    assert isinstance(loaded_llm, AzureMLOnlineEndpoint)
    assert loaded_llm._identifying_params == save_llm._identifying_params
    assert loaded_llm.endpoint_api_key.get_secret_value() == KEY  # from the environment, not the file
    # The emulator has no deployment of that name: the typed error says so, after the header was sent.
    with pytest.raises(azml_client.NotFoundError, match="databricks-dolly-v2-12b-4"):
        loaded_llm.invoke("hello")
    assert notebook_ep.last.deployment == "databricks-dolly-v2-12b-4"
    loaded_llm.close()


def test_chat_completions_with_a_dedicated_endpoint(
    notebook_ep: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_DEPLOYMENT_NAME", "openai-chat")
    url = notebook_ep.score_url

    # notebook cell: "Example: Chat completions with real-time endpoints"
    from langchain_core.messages import HumanMessage

    from azml_client.langchain import (
        AzureMLEndpointApiType,
        CustomOpenAIChatContentFormatter,
    )

    chat = AzureMLChatOnlineEndpoint(
        endpoint_url=url,
        endpoint_api_type=AzureMLEndpointApiType.dedicated,
        endpoint_api_key="my-api-key",
        content_formatter=CustomOpenAIChatContentFormatter(),
    )
    response = chat.invoke([HumanMessage(content="Will the Collatz conjecture ever be solved?")])

    assert response.content == "echo: " + QUESTION
    assert response.response_metadata["deployment"] == "openai-chat"
    assert notebook_ep.last.json == {
        "input_data": {"input_string": [{"role": "user", "content": QUESTION}], "parameters": {}}
    }
    chat.close()


def test_chat_completions_with_a_serverless_deployment(notebook_ep: EmulatorThread) -> None:
    url = notebook_ep.chat_url
    from langchain_core.messages import HumanMessage

    from azml_client.langchain import AzureMLEndpointApiType, CustomOpenAIChatContentFormatter

    # notebook cell: "Example: Chat completions with pay-as-you-go deployments (model as a service)"
    chat = AzureMLChatOnlineEndpoint(
        endpoint_url=url,
        endpoint_api_type=AzureMLEndpointApiType.serverless,
        endpoint_api_key="my-api-key",
        content_formatter=CustomOpenAIChatContentFormatter,
    )
    response = chat.invoke([HumanMessage(content="Will the Collatz conjecture ever be solved?")])

    assert response.content == "echo: " + QUESTION
    assert notebook_ep.last.json == {"messages": [{"role": "user", "content": QUESTION}]}
    chat.close()

    # notebook cell: "If you need to pass additional parameters to the model, use model_kwargs"
    chat = AzureMLChatOnlineEndpoint(
        endpoint_url=url,
        endpoint_api_type=AzureMLEndpointApiType.serverless,
        endpoint_api_key="my-api-key",
        content_formatter=CustomOpenAIChatContentFormatter,
        model_kwargs={"temperature": 0.8},
    )

    # notebook cell: "Parameters can also be passed during invocation"
    response = chat.invoke(
        [HumanMessage(content="Will the Collatz conjecture ever be solved?")],
        max_tokens=512,
    )
    response  # noqa: B018  (the notebook displays it)

    assert response.content == "echo: " + QUESTION
    assert notebook_ep.last.json == {
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0.8,
        "max_tokens": 512,
    }
    assert response.usage_metadata == {"input_tokens": 7, "output_tokens": 8, "total_tokens": 15}
    chat.invoke(QUESTION)
    assert "max_tokens" not in notebook_ep.last.json
    chat.close()
