"""Streaming a chat answer from a serverless endpoint, with token usage at the end.

Serverless endpoints stream server-sent events to the same ``.../v1/chat/completions`` route (the seed
sent dedicated streams to a ``/score/chat/completions`` path that does not exist, without the model
kwargs). Each chunk carries a text delta; the last ones carry the finish reason and, when asked with
``stream_options={"include_usage": True}``, the usage. A dedicated endpoint does not stream: there
``astream`` yields the whole answer as one chunk.

    AZUREML_ENDPOINT_API_TYPE=serverless python examples/chat_streaming.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az


async def main() -> None:
    async with (
        example_endpoint("serverless") as endpoint,
        az.ChatModel(**endpoint, model_kwargs={"temperature": 0.8}) as chat,
    ):
        finish_reason: str | None = None
        usage: az.Usage | None = None
        async for chunk in chat.astream(
            [("system", "You answer briefly."), ("user", "Tell me a story about a lighthouse keeper.")],
            max_tokens=200,
            stream_options={"include_usage": True},
        ):
            print(chunk.content, end="", flush=True)
            finish_reason = chunk.finish_reason or finish_reason
            usage = chunk.usage or usage
        print()
        print("finish_reason:", finish_reason)
        print("usage:", usage)


if __name__ == "__main__":
    asyncio.run(main())
