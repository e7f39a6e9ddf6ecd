"""Summarization with your own content formatter, written the way the seed's notebook wrote it.

Port of the seed notebook's "Custom content formatter" (a BART summarization model from Hugging Face).
A formatter for a model no built-in formatter speaks subclasses ``az.ContentFormatterBase``, sets
``content_type`` / ``accepts`` and defines the seed's two methods, with the seed's two-argument
signatures: a formatter written for langchain_community works unchanged but for its import line.
``@az.register_formatter`` gives it a name, so models can ask for it by name and ``save()`` can record it.

    python examples/bart_custom_formatter.py
"""

import asyncio
import json
from typing import Any

from _support import example_endpoint

import azml_client as az


@az.register_formatter("bart-summary")
class SummaryFormatter(az.ContentFormatterBase):
    """Hugging Face summarization models: ``{"inputs": [text], "parameters": {...}}`` -> ``[{"summary_text": ...}]``."""

    content_type = "application/json"
    accepts = "application/json"

    # (The seed's two-argument signatures narrow the base class's, which also takes an optional api_type:
    # type checkers call that an incompatible override, hence the ignores. The SDK accepts either form.)
    def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
        # "options" are flags of Hugging Face's hosted Inference API, which the seed's notebook sent too.
        options = {"use_cache": False, "wait_for_model": True}
        return json.dumps({"inputs": [prompt], "parameters": model_kwargs, "options": options}).encode()

    def format_response_payload(self, output: bytes) -> str:  # type: ignore[override]
        return str(json.loads(output)[0]["summary_text"])


ARTICLE = """\
The city library reopened on Monday after an eighteen-month renovation that added a rooftop reading garden,
a makerspace with 3D printers and twice as many study rooms. Visitors queued before the doors opened, and
by noon more than two thousand people had come through. The old card catalogue, kept as a display, drew
almost as much attention as the new espresso bar. Staff said the next step is longer opening hours at
weekends, once new librarians are hired in the spring.
"""


async def main() -> None:
    async with (
        # The emulator's "bart" deployment speaks this schema (it echoes: it does not summarise).
        example_endpoint("dedicated", deployment="bart") as endpoint,
        az.LLM(
            **endpoint,
            formatter="bart-summary",  # the registered name; SummaryFormatter() works too
            model_kwargs={"max_new_tokens": 40},
        ) as llm,
    ):
        summary = await llm.ainvoke(ARTICLE)
        print(summary)


if __name__ == "__main__":
    asyncio.run(main())
