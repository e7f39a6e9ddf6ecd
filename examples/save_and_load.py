"""Saving a model's configuration and loading it back.

Port of the seed notebook's "Serializing an LLM". ``save()`` writes everything needed to rebuild the
model: URL, api type, deployment, formatter (by its registered name), model kwargs, timeout and retry
policy, but never the key. ``az.load()`` rebuilds it; the key comes from ``api_key=`` or
``AZUREML_ENDPOINT_API_KEY``. (The seed saved only the deployment name and model kwargs, and its loaded
model had no formatter.) A ``.yaml`` path works too where PyYAML is installed.

    python examples/save_and_load.py
"""

import asyncio
import tempfile
from pathlib import Path

from _support import example_endpoint

import azml_client as az


async def main() -> None:
    # With your endpoint, AZUREML_DEPLOYMENT_NAME (say, "databricks-dolly-v2-12b-4") names the deployment.
    async with example_endpoint("dedicated", deployment="dolly") as endpoint:
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder, "azureml.json")

            async with az.LLM(
                **endpoint,
                formatter="dolly",
                model_kwargs={
                    "temperature": 0.2,
                    "max_tokens": 150,
                    "top_p": 0.8,
                    "frequency_penalty": 0.32,
                    "presence_penalty": 72e-3,
                },
                timeout=az.Timeout(total=120, connect=10),
                retry=az.RetryPolicy(max_retries=4),
            ) as llm:
                llm.save(config)

            saved = config.read_text()  # noqa: ASYNC240 - one small local file; fine in a script
            print(saved)
            key = endpoint["api_key"]
            print("key in the file:", bool(key) and key in saved)

            async with az.load(config, api_key=key) as loaded:
                print(loaded)
                print("formatter:", loaded.formatter.name, "| model_kwargs:", dict(loaded.model_kwargs))
                print(await loaded.ainvoke("Tell me about sparkling water."))


if __name__ == "__main__":
    asyncio.run(main())
