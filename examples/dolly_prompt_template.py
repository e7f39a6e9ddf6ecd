"""Dolly with a prompt template.

Port of the seed notebook's "Dolly with LLMChain". The chain there only filled a template and called the
model; without LangChain that is ``str.format`` and one call. (With LangChain, the drop-in
``azml_client.langchain.AzureMLOnlineEndpoint`` still works in chains.) Dolly deployments take
``{"input_data": {"input_string": [...]}, "parameters": {...}}``: the ``dolly`` formatter.

    python examples/dolly_prompt_template.py
"""

import asyncio

from _support import example_endpoint

import azml_client as az

TEMPLATE = "Write a {word_count} word essay about {topic}."


async def main() -> None:
    async with (
        example_endpoint("dedicated", deployment="dolly") as endpoint,
        az.LLM(
            **endpoint,
            formatter="dolly",
            model_kwargs={"temperature": 0.8, "max_tokens": 300},
        ) as llm,
    ):
        prompt = TEMPLATE.format(word_count=100, topic="how to make friends")
        print(await llm.ainvoke(prompt))

        # The same template over several topics: abatch sends them concurrently and keeps their order.
        topics = ["keeping a garden", "learning to cook", "running a first marathon"]
        essays = await llm.abatch([TEMPLATE.format(word_count=50, topic=topic) for topic in topics])
        for topic, essay in zip(topics, essays, strict=True):
            print(f"{topic}: {essay}")


if __name__ == "__main__":
    asyncio.run(main())
