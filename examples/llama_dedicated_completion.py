"""Text completion with a LLaMa-style model on a dedicated (managed online) endpoint.

Port of the seed notebook's "LlaMa 2 completions with real-time endpoints". Models of the LLaMa family
deployed from the Azure ML catalog take ``{"input_data": {"input_string": [...], "parameters": {...}}}``,
which is the ``openai`` formatter on a dedicated endpoint (the seed called it ``LlamaContentFormatter``).

    python examples/llama_dedicated_completion.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az


async def main() -> None:
    # Emulator: the "openai" deployment speaks the same dedicated schema as a LLaMa deployment.
    async with (
        example_endpoint("dedicated", deployment="openai") as endpoint,
        az.LLM(
            **endpoint,
            formatter="openai",
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        ) as llm,
    ):
        song = await llm.ainvoke("Write me a song about sparkling water:")
        print(song)


if __name__ == "__main__":
    asyncio.run(main())
