"""``legacy_escaping=True`` reproduces the seed's exact request bytes.

The expected bytes below were worked out by hand from the seed's source: the prompt escaped by hand
(``\\`` ``"`` and the control characters), wrapped in literal quotes on dedicated endpoints (the HF formatter
drops its escaping result), then ``json.dumps`` with its default ``", "`` / ``": "`` separators and ASCII output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from azml_client._config import ApiType
from azml_client._formatters import ChatContentFormatterBase, ContentFormatterBase, get_formatter
from azml_client._types import Message

from .strategies import prompt_text

D, S = ApiType.dedicated, ApiType.serverless
#: A prompt with quotes, a backslash, a newline and a tab.
P = 'Say "hi"\\\n\tend'
MK = {"temperature": 0.5}

LEGACY_COMPLETION = [
    (
        "gpt2",
        D,
        rb'{"inputs": {"input_string": ["\"Say \\\"hi\\\"\\\\\\n\\tend\""]}, "parameters": {"temperature": 0.5}}',
    ),
    ("hf", D, rb'{"inputs": ["\"Say \"hi\"\\\n\tend\""], "parameters": {"temperature": 0.5}}'),
    (
        "dolly",
        D,
        rb'{"input_data": {"input_string": ["\"Say \\\"hi\\\"\\\\\\n\\tend\""]}, "parameters": {"temperature": 0.5}}',
    ),
    (
        "openai",
        D,
        rb'{"input_data": {"input_string": ["\"Say \\\"hi\\\"\\\\\\n\\tend\""], "parameters": {"temperature": 0.5}}}',
    ),
    ("openai", S, rb'{"prompt": "Say \\\"hi\\\"\\\\\\n\\tend", "temperature": 0.5}'),
]


@pytest.mark.parametrize(("name", "api_type", "expected"), LEGACY_COMPLETION)
def test_legacy_completion_bytes(name: str, api_type: ApiType, expected: bytes) -> None:
    formatter = get_formatter(name, legacy_escaping=True)
    assert formatter.build_request(P, MK, api_type) == expected
    assert formatter.format_request_payload(P, dict(MK), api_type) == expected


LEGACY_CHAT = [
    (
        "openai-chat",
        D,
        rb'{"input_data": {"input_string": [{"role": "system", "content": "Be \\\"terse\\\""}, '
        rb'{"role": "user", "content": "Say \\\"hi\\\"\\\\\\n\\tend"}], "parameters": {"temperature": 0.5}}}',
    ),
    (
        "openai-chat",
        S,
        rb'{"messages": [{"role": "system", "content": "Be \\\"terse\\\""}, '
        rb'{"role": "user", "content": "Say \\\"hi\\\"\\\\\\n\\tend"}], "temperature": 0.5}',
    ),
    (
        "mistral-chat",
        D,
        rb'{"input_data": {"input_string": [{"role": "user", '
        rb'"content": "Be \\\"terse\\\"\n\nSay \\\"hi\\\"\\\\\\n\\tend"}], "parameters": {"temperature": 0.5}}}',
    ),
    (
        "mistral-chat",
        S,
        rb'{"messages": [{"role": "user", "content": "Be \\\"terse\\\"\n\nSay \\\"hi\\\"\\\\\\n\\tend"}], '
        rb'"temperature": 0.5}',
    ),
]


@pytest.mark.parametrize(("name", "api_type", "expected"), LEGACY_CHAT)
def test_legacy_chat_bytes(name: str, api_type: ApiType, expected: bytes) -> None:
    formatter = get_formatter(name, legacy_escaping=True)
    assert isinstance(formatter, ChatContentFormatterBase)
    messages = [Message("system", 'Be "terse"'), Message("user", P)]
    assert formatter.build_chat_request(messages, MK, api_type) == expected


def test_legacy_output_is_ascii_like_json_dumps() -> None:
    body = get_formatter("gpt2", legacy_escaping=True).build_request("café", {}, D)
    assert body == rb'{"inputs": {"input_string": ["\"caf\u00e9\""]}, "parameters": {}}'
    assert (
        get_formatter("gpt2").build_request("café", {}, D)
        == '{"inputs":{"input_string":["café"]},"parameters":{}}'.encode()
    )


def test_escape_special_characters_matches_the_seed() -> None:
    assert ContentFormatterBase.escape_special_characters('a"b\\c\bd\fe\nf\rg\th') == 'a\\"b\\\\c\\bd\\fe\\nf\\rg\\th'


def _seed_escape(prompt: str) -> str:
    """The seed's sequential replacements, written out again to cross-check the translation table."""
    for char, escaped in (
        ("\\", "\\\\"),
        ('"', '\\"'),
        ("\b", "\\b"),
        ("\f", "\\f"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
    ):
        prompt = prompt.replace(char, escaped)
    return prompt


def _seed_body(name: str, api_type: ApiType, prompt: str, mk: dict[str, Any]) -> bytes:
    quoted = f'"{_seed_escape(prompt)}"'
    payload: dict[str, Any]
    if name == "gpt2":
        payload = {"inputs": {"input_string": [quoted]}, "parameters": mk}
    elif name == "hf":
        payload = {"inputs": [f'"{prompt}"'], "parameters": mk}
    elif name == "dolly":
        payload = {"input_data": {"input_string": [quoted]}, "parameters": mk}
    elif api_type is D:
        payload = {"input_data": {"input_string": [quoted], "parameters": mk}}
    else:
        payload = {"prompt": _seed_escape(prompt), **mk}
    return json.dumps(payload).encode()


@given(prompt=prompt_text, case=st.sampled_from([(n, a) for n, a, _ in LEGACY_COMPLETION]))
def test_legacy_bytes_match_the_seed_for_any_prompt(prompt: str, case: tuple[str, ApiType]) -> None:
    name, api_type = case
    formatter = get_formatter(name, legacy_escaping=True)
    assert formatter.build_request(prompt, {"max_new_tokens": 3}, api_type) == _seed_body(
        name, api_type, prompt, {"max_new_tokens": 3}
    )


@given(prompt=prompt_text)
def test_plain_bytes_round_trip_the_prompt(prompt: str) -> None:
    body = get_formatter("gpt2").build_request(prompt, {}, D)
    assert json.loads(body)["inputs"]["input_string"] == [prompt]
