"""Chat with a serverless (models-as-a-service) endpoint: model_kwargs, and parameters at call time.

Port of the seed chat notebook's "Chat completions with pay-as-you-go deployments", its ``model_kwargs``
cell and its call-time ``max_tokens`` cell. Serverless endpoints speak the OpenAI chat schema; the
``openai-chat`` formatter with ``api_type="serverless"`` sends it to ``.../v1/chat/completions``.
Construction-time ``model_kwargs`` go with every call; call-time ones override them for that call only.

    AZUREML_ENDPOINT_API_TYPE=serverless python examples/chat_serverless.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az

QUESTION = "Will the Collatz conjecture ever be solved?"


async def main() -> None:
    async with (
        example_endpoint("serverless") as endpoint,
        # model_kwargs: parameters for every call of this model.
        az.ChatModel(**endpoint, formatter="openai-chat", model_kwargs={"temperature": 0.8}) as chat,
    ):
        result = await chat.ainvoke(QUESTION)
        print(result.content)

        # A parameter for this call only: the answer stops after 4 tokens.
        short = await chat.ainvoke(QUESTION, max_tokens=4)
        print(short.content)
        print("finish_reason:", short.finish_reason)
        print("usage:", short.usage)


if __name__ == "__main__":
    asyncio.run(main())
