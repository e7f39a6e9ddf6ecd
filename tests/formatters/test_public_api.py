"""The formatter layer's public API for the floors above it: the default formatter rule, variants, seed calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

import azml_client._formatters as formatters
from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError, ResponseFormatError
from azml_client._formatters import (
    ContentFormatterBase,
    CustomOpenAIChatContentFormatter,
    GPT2ContentFormatter,
    _registry,
    default_formatter_name,
    get_formatter,
    is_user_method,
    registered_name,
)
from azml_client._types import Message

D, S = ApiType.dedicated, ApiType.serverless


@pytest.mark.parametrize(
    ("kind", "api_type", "name"),
    [
        ("completion", D, "gpt2"),
        ("completion", S, "openai"),
        ("completion", "serverless", "openai"),
        ("completion", "Dedicated", "gpt2"),
        ("chat", D, "openai-chat"),
        ("chat", S, "openai-chat"),
    ],
)
def test_default_formatter_name(kind: Any, api_type: Any, name: str) -> None:
    assert default_formatter_name(kind, api_type) == name
    formatter = get_formatter(name)
    assert formatter.kind == kind
    formatter.check_api_type(api_type)  # the default speaks the api type it is the default for


def test_default_formatter_name_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ConfigurationError, match="unknown api_type"):
        default_formatter_name("completion", "batch")
    with pytest.raises(ConfigurationError, match="'completion' or 'chat'"):
        default_formatter_name("embedding", D)  # type: ignore[arg-type]


def test_the_cli_uses_the_formatter_layers_rule() -> None:
    from azml_client.cli import _endpoint

    for api_type in ApiType:
        assert _endpoint.default_completion_formatter(api_type) == default_formatter_name("completion", api_type)
    assert default_formatter_name("chat", D) == _endpoint.DEFAULT_CHAT_FORMATTER


def test_the_public_names_are_exported_and_documented() -> None:
    for name in formatters.__all__:
        value = getattr(formatters, name)
        assert not name.startswith("_")
        if callable(value):
            assert value.__doc__, name
    for method in (
        "call_format_request_payload",
        "call_format_response_payload",
        "call_format_messages_request_payload",
        "check_can_stream",
    ):
        assert getattr(ContentFormatterBase, method).__doc__
    assert CustomOpenAIChatContentFormatter.read_chat_answer.__doc__


# -- variants ------------------------------------------------------------------------------------------------------


def test_a_variant_saves_as_its_formatter_and_keeps_the_fast_path(isolated_registry: _registry._Registry) -> None:
    calls: list[bytes] = []

    class Variant(GPT2ContentFormatter, variant_of="gpt2"):
        """A variant that adds an API on top of gpt2, as the LangChain adapter does for chat."""

        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
            calls.append(output)
            return super().format_response_payload(output, api_type)

    assert registered_name(Variant) == "gpt2"
    assert Variant().name == "gpt2"
    assert not is_user_method(Variant, "format_response_payload")
    assert Variant().parse_response(b'[{"0": "x"}]', D).text == "x"
    assert calls == []  # the built-in fast path, not the variant's seed method

    class Users(Variant):
        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
            return super().format_response_payload(output, api_type).upper()

    assert registered_name(Users) is None  # a user's subclass is a user's formatter again
    assert is_user_method(Users(), "format_response_payload")
    assert not is_user_method(Users, "format_request_payload")
    assert Users().parse_response(b'[{"0": "x"}]', D).text == "X"  # its override is honoured
    assert calls == [b'[{"0": "x"}]']


def test_is_user_method() -> None:
    class Seed(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
            return b"{}"

    assert is_user_method(Seed, "format_request_payload")
    assert not is_user_method(Seed, "format_response_payload")
    assert not is_user_method(GPT2ContentFormatter(), "format_request_payload")
    assert not is_user_method(Seed, "no_such_method")


# -- calling seed-style methods ----------------------------------------------------------------------------------


class Positional(ContentFormatterBase):
    def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType) -> str:  # type: ignore[override]
        return json.dumps({"p": prompt, "k": model_kwargs, "api": str(api_type)})

    def format_messages_request_payload(self, messages: list[Any], model_kwargs: dict[str, Any]) -> bytes:
        return json.dumps({"m": messages}).encode()

    def format_response_payload(self, output: bytes, *, api_type: ApiType) -> str:
        return json.loads(output)[str(api_type)]  # type: ignore[no-any-return]


def test_call_format_methods_pass_the_api_type_as_the_signature_takes_it() -> None:
    formatter = Positional()
    assert (
        formatter.call_format_request_payload("hi", {"t": 1}, S) == b'{"p": "hi", "k": {"t": 1}, "api": "serverless"}'
    )
    assert formatter.call_format_messages_request_payload([{"role": "user"}], {}, S) == b'{"m": [{"role": "user"}]}'
    assert formatter.call_format_response_payload(b'{"dedicated": "d"}', D) == "d"
    with pytest.raises(ResponseFormatError, match="failed: KeyError") as info:
        formatter.call_format_response_payload(b'{"dedicated": "d"}', S, status=299)
    assert info.value.status == 299
    assert info.value.formatter == "Positional"


def test_call_format_messages_request_payload_without_the_method() -> None:
    with pytest.raises(NotImplementedError, match="format_messages_request_payload"):
        GPT2ContentFormatter().call_format_messages_request_payload([], {}, D)


def test_read_chat_answer_never_calls_an_override() -> None:
    class Shouting(CustomOpenAIChatContentFormatter):
        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
            return self.read_chat_answer(output, api_type).content.upper()

    formatter = Shouting()
    assert formatter.parse_chat_response(b'{"output": "yes"}', D).content == "YES"
    assert formatter.read_chat_answer(b'{"output": "yes"}', "dedicated").message == Message("assistant", "yes")


def test_check_can_stream() -> None:
    GPT2ContentFormatter().check_can_stream(S)
    with pytest.raises(ConfigurationError, match="only serverless endpoints stream"):
        GPT2ContentFormatter().check_can_stream("dedicated")
