"""Chat with a model on a dedicated (managed online) endpoint.

Port of the seed chat notebook's "Chat completions with real-time endpoints". Chat models deployed from
the Azure ML catalog (LLaMa-chat and the like) take
``{"input_data": {"input_string": [{"role": ..., "content": ...}, ...], "parameters": {...}}}``: the
``openai-chat`` formatter (the seed's ``CustomOpenAIChatContentFormatter``), which is ``ChatModel``'s default.
Messages may be a str, ``az.Message`` objects, ``(role, content)`` tuples or dicts.

    python examples/chat_dedicated.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az


async def main() -> None:
    async with (
        example_endpoint("dedicated", deployment="openai-chat") as endpoint,
        az.ChatModel(**endpoint, formatter="openai-chat") as chat,
    ):
        result = await chat.ainvoke(
            [
                az.Message("system", "You are a mathematician who answers in two sentences."),
                az.Message("user", "Will the Collatz conjecture ever be solved?"),
            ]
        )
        print(result.content)
        print("role:", result.message.role)


if __name__ == "__main__":
    asyncio.run(main())
