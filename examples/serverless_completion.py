"""Text completion on a serverless (models-as-a-service, pay-as-you-go) endpoint.

Port of the seed notebook's completion example on a serverless deployment. Serverless endpoints speak the
OpenAI completions schema (``{"prompt": ..., **parameters}``), which is the ``openai`` formatter with
``api_type="serverless"``. Give the SDK the endpoint's base URL or its full ``.../v1/completions`` URL;
both work. The token limit is ``max_tokens`` here (the seed's notebook passed ``max_new_tokens``, the name
dedicated deployments read). The answer carries the finish reason and the token usage, which ``acomplete`` keeps.

    AZUREML_ENDPOINT_API_TYPE=serverless python examples/serverless_completion.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az


async def main() -> None:
    async with (
        example_endpoint("serverless") as endpoint,
        az.LLM(
            **endpoint,
            formatter="openai",
            model_kwargs={"temperature": 0.8, "max_tokens": 400},
        ) as llm,
    ):
        completion = await llm.acomplete("Write me a song about sparkling water:")
        print(completion.text)
        print("finish_reason:", completion.finish_reason)
        print("usage:", completion.usage)


if __name__ == "__main__":
    asyncio.run(main())
