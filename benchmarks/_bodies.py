"""The fixed answers the benchmark server sends, and what each client must read out of them."""

from __future__ import annotations

from typing import Final

__all__ = ["API_KEY", "CHAT_BODY", "CHAT_TEXT", "SCORE_BODY", "SCORE_TEXT", "prompts"]

#: The key every client sends (the server does not check it; sending it keeps the auth path in the measurement).
API_KEY: Final = "bench-key"

#: What a gpt2 model on a dedicated endpoint answers: ``[{"0": text}]``.
SCORE_TEXT: Final = "The quick brown fox jumps over the lazy dog."
SCORE_BODY: Final = '[{"0": "The quick brown fox jumps over the lazy dog."}]'

#: What a serverless (OpenAI-compatible) chat completion answers.
CHAT_TEXT: Final = "Hello! How can I help you today?"
CHAT_BODY: Final = (
    '{"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench-model", '
    '"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"}, '
    '"logprobs": null, "finish_reason": "stop"}], '
    '"usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}'
)


def prompts(count: int) -> list[str]:
    """``count`` distinct short prompts."""
    return [f"Prompt {index}: write one sentence about the sea." for index in range(count)]
