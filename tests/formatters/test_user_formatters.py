"""Formatters written for the seed work unchanged through ``build_request`` / ``parse_response``."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError, ResponseFormatError
from azml_client._formatters import (
    ChatContentFormatterBase,
    ContentFormatterBase,
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    GPT2ContentFormatter,
    _registry,
    get_formatter,
    register_formatter,
)
from azml_client._types import ChatResult, Completion, CompletionChoice, Message

D, S = ApiType.dedicated, ApiType.serverless


# The custom formatter of the seed's notebook (BART summarization), as a user wrote it for the seed.
class CustomFormatter(ContentFormatterBase):
    content_type: str = "application/json"
    accepts: str = "application/json"

    def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
        input_str = json.dumps(
            {
                "inputs": [prompt],
                "parameters": model_kwargs,
                "options": {"use_cache": False, "wait_for_model": True},
            }
        )
        return str.encode(input_str)

    def format_response_payload(self, output: bytes) -> str:  # type: ignore[override]
        response_json = json.loads(output)
        return response_json[0]["summary_text"]  # type: ignore[no-any-return]


def test_seed_notebook_formatter_builds_its_request() -> None:
    formatter = CustomFormatter()
    body = formatter.build_request("Summarize: a long text", {"max_length": 20}, D)
    assert body == (
        b'{"inputs": ["Summarize: a long text"], "parameters": {"max_length": 20}, '
        b'"options": {"use_cache": false, "wait_for_model": true}}'
    )
    assert formatter.content_type == "application/json"
    assert formatter.accepts == "application/json"
    assert formatter.kind == "completion"


def test_seed_notebook_formatter_parses_its_answer() -> None:
    completion = CustomFormatter().parse_response(b'[{"summary_text": "Short."}]', D)
    assert completion == Completion(text="Short.", choices=(CompletionChoice("Short."),))


def test_seed_notebook_formatter_key_error_becomes_response_format_error() -> None:
    formatter = CustomFormatter()
    with pytest.raises(ResponseFormatError) as info:
        formatter.parse_response(b'[{"generated_text": "x"}]', D, status=200)
    error = info.value
    assert isinstance(error.__cause__, KeyError)
    assert error.formatter == "CustomFormatter"
    assert error.status == 200
    assert error.body == b'[{"generated_text": "x"}]'
    assert "use formatter 'hf'" in error.hint
    assert "format_response_payload of formatter 'CustomFormatter' failed: KeyError" in str(error)


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"not json", json.JSONDecodeError),
        (b"[]", IndexError),
        (b'{"a": 1}', KeyError),
        (b'["x"]', TypeError),
    ],
)
def test_seed_style_parse_errors_are_wrapped(body: bytes, cause: type[Exception]) -> None:
    with pytest.raises(ResponseFormatError) as info:
        CustomFormatter().parse_response(body, D, status=424)
    assert isinstance(info.value.__cause__, cause)
    assert info.value.status == 424


def test_model_kwargs_reach_the_user_formatter_as_a_fresh_dict() -> None:
    seen: list[dict[str, Any]] = []

    class Mutating(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
            seen.append(model_kwargs)
            model_kwargs["leak"] = True
            return b"{}"

    kwargs = {"a": 1}
    Mutating().build_request("p", kwargs, D)
    assert kwargs == {"a": 1}
    assert seen == [{"a": 1, "leak": True}]
    assert seen[0] is not kwargs


def test_api_type_is_passed_when_the_method_takes_it() -> None:
    calls: list[tuple[str, Any]] = []

    class Positional(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType) -> str:  # type: ignore[override]
            calls.append(("request", api_type))
            return json.dumps({"p": prompt, "api": str(api_type)})

        def format_response_payload(self, output: bytes, api_type: ApiType) -> str:  # type: ignore[override]
            calls.append(("response", api_type))
            return output.decode()

    class Keyword(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any], *, api_type: ApiType) -> bytes:  # type: ignore[override]
            calls.append(("kw-request", api_type))
            return b"{}"

        def format_response_payload(self, output: bytes, **kwargs: Any) -> str:  # type: ignore[override]
            calls.append(("kw-response", kwargs["api_type"]))
            return "ok"

    assert Positional().build_request("Hi", {}, S) == b'{"p": "Hi", "api": "serverless"}'  # str encoded as UTF-8
    assert Positional().parse_response(b"text", D).text == "text"
    assert Keyword().build_request("Hi", {}, D) == b"{}"
    assert Keyword().parse_response(b"x", S).text == "ok"
    assert calls == [("request", S), ("response", D), ("kw-request", D), ("kw-response", S)]


def test_payload_types() -> None:
    class Returns(ContentFormatterBase):
        value: Any = None

        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> Any:  # type: ignore[override]
            return self.value

    formatter = Returns()
    for value, expected in [
        (b"x", b"x"),
        ("é", "é".encode()),
        (bytearray(b"y"), b"y"),
        (memoryview(b"z"), b"z"),
        (io.BytesIO(b"file"), b"file"),
    ]:
        formatter.value = value
        assert formatter.build_request("p", {}, D) == expected
    formatter.value = 42
    with pytest.raises(ConfigurationError, match="must return bytes or str"):
        formatter.build_request("p", {}, D)


def test_generation_like_results_are_accepted() -> None:
    class Generation:
        def __init__(self, text: str, generation_info: dict[str, Any] | None = None) -> None:
            self.text = text
            self.generation_info = generation_info

    class ReturnsGeneration(ContentFormatterBase):
        def format_response_payload(self, output: bytes) -> Any:  # type: ignore[override]
            return Generation(output.decode(), {"finish_reason": "stop", "logprobs": [1]})

    completion = ReturnsGeneration().parse_response(b"hello", D)
    assert completion.text == "hello"
    assert completion.finish_reason == "stop"
    assert completion.logprobs == [1]

    class ReturnsNumber(ContentFormatterBase):
        def format_response_payload(self, output: bytes) -> Any:  # type: ignore[override]
            return 5

    with pytest.raises(ResponseFormatError, match="returned int, not the generated text"):
        ReturnsNumber().parse_response(b'[{"0": "x"}]', D)


def test_a_formatter_without_the_methods_says_so() -> None:
    class Empty(ContentFormatterBase):
        pass

    with pytest.raises(NotImplementedError, match="format_request_payload"):
        Empty().build_request("p", {}, D)
    with pytest.raises(NotImplementedError, match="format_response_payload"):
        Empty().parse_response(b"x", D)


def test_user_formatter_stream_requests() -> None:
    class Serverless(ContentFormatterBase):
        supported_api_types = frozenset({S})

        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
            return json.dumps({"prompt": prompt, **model_kwargs}, separators=(",", ":")).encode()

    formatter = Serverless()
    assert formatter.build_request("Hi", {}, S, stream=True) == b'{"prompt":"Hi","stream":true}'
    assert formatter.parse_stream_event('{"choices":[{"text":"a"}]}', S) is not None
    with pytest.raises(ConfigurationError, match="only serverless endpoints stream"):
        formatter.build_request("Hi", {}, D, stream=True)
    with pytest.raises(ConfigurationError, match="does not support api_type 'dedicated'"):
        formatter.check_api_type(D)


def test_seed_style_supported_api_types_property() -> None:
    class SeedStyle(ContentFormatterBase):
        @property
        def supported_api_types(self) -> list[str]:  # type: ignore[override]
            return ["dedicated", "serverless"]

    SeedStyle().check_api_type(S)
    SeedStyle().check_api_type(D)


def test_name_is_the_registered_name_or_the_class_name(isolated_registry: _registry._Registry) -> None:
    assert CustomFormatter().name == "CustomFormatter"

    @register_formatter("bart-summary")
    class Registered(CustomFormatter):
        pass

    assert Registered().name == "bart-summary"
    assert isinstance(get_formatter("bart-summary"), Registered)
    with pytest.raises(ResponseFormatError, match="formatter='bart-summary'"):
        Registered().parse_response(b"[]", D)


# -- chat formatters written for the seed ------------------------------------------------------------------------


class SeedChat(ChatContentFormatterBase):
    def format_messages_request_payload(  # type: ignore[override]
        self, messages: list[dict[str, Any]], model_kwargs: dict[str, Any], api_type: ApiType
    ) -> bytes:
        return json.dumps({"input_data": {"input_string": messages, "parameters": model_kwargs}}).encode()

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
        return json.loads(output)["output"]  # type: ignore[no-any-return]


def test_seed_chat_formatter() -> None:
    formatter = SeedChat()
    assert formatter.kind == "chat"
    body = formatter.build_chat_request([Message("system", "S"), Message("user", "U")], {"t": 1}, D)
    assert body == (
        b'{"input_data": {"input_string": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], '
        b'"parameters": {"t": 1}}}'
    )
    result = formatter.parse_chat_response(b'{"output": "answer"}', D)
    assert result.content == "answer"
    assert result.message == Message("assistant", "answer")
    assert formatter.parse_response(b'{"output": "answer"}', D).text == "answer"
    with pytest.raises(ResponseFormatError) as info:
        formatter.parse_chat_response(b'{"choices": []}', D)
    assert isinstance(info.value.__cause__, KeyError)


def test_seed_chat_formatter_returning_a_chat_generation() -> None:
    class AIMessage:
        def __init__(self, content: str) -> None:
            self.content = content

    class ChatGeneration:
        def __init__(self, content: str) -> None:
            self.message = AIMessage(content)
            self.generation_info = {"finish_reason": "stop"}

    class ReturnsGeneration(SeedChat):
        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> Any:
            return ChatGeneration(json.loads(output)["output"])

    result = ReturnsGeneration().parse_chat_response(b'{"output": "x"}', D)
    assert isinstance(result, ChatResult)
    assert result.content == "x"
    assert result.finish_reason == "stop"


def test_seed_chat_formatter_stream_request_and_default_chunk_parser() -> None:
    class Serverless(SeedChat):
        supported_api_types = frozenset({S})

        def format_messages_request_payload(  # type: ignore[override]
            self, messages: list[dict[str, Any]], model_kwargs: dict[str, Any]
        ) -> bytes:
            return json.dumps({"messages": messages, **model_kwargs}).encode()

    formatter = Serverless()
    body = formatter.build_chat_request([Message("user", "Hi")], {}, S, stream=True)
    assert body == b'{"messages": [{"role": "user", "content": "Hi"}], "stream": true}'
    chunk = formatter.parse_chat_stream_event('{"choices":[{"delta":{"content":"a"}}]}', S)
    assert chunk is not None
    assert chunk.content == "a"


def test_chat_formatter_without_the_method_says_so() -> None:
    class Empty(ChatContentFormatterBase):
        pass

    with pytest.raises(NotImplementedError, match="format_messages_request_payload"):
        Empty().build_chat_request([Message("user", "x")], {}, D)


# -- user subclasses of the built-ins ----------------------------------------------------------------------------


def test_overriding_a_built_ins_seed_methods_is_honoured() -> None:
    class Stripping(GPT2ContentFormatter):
        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
            return super().format_response_payload(output, api_type).strip()

    assert Stripping().parse_response(b'[{"0": "  x  "}]', D).text == "x"
    assert Stripping().build_request("Hi", {}, D) == GPT2ContentFormatter().build_request("Hi", {}, D)
    with pytest.raises(ResponseFormatError, match="formatter='Stripping'"):
        Stripping().parse_response(b"[]", D)

    class Extra(CustomOpenAIContentFormatter):
        def format_request_payload(
            self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
        ) -> bytes:
            model_kwargs["extra"] = 1
            return super().format_request_payload(prompt, model_kwargs, api_type)

    assert Extra().build_request("Hi", {}, S, stream=True) == b'{"prompt":"Hi","stream":true,"extra":1}'
    assert Extra().parse_response(b'{"choices":[{"text":"t"}]}', S).text == "t"


def test_overriding_a_built_in_chat_formatters_seed_methods_is_honoured() -> None:
    class LastOnly(CustomOpenAIChatContentFormatter):
        def format_messages_request_payload(
            self, messages: Any, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
        ) -> bytes:
            return super().format_messages_request_payload(messages[-1:], model_kwargs, api_type)

        def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
            return super().format_response_payload(output, api_type).upper()

    formatter = LastOnly()
    body = formatter.build_chat_request([Message("user", "a"), Message("user", "b")], {}, S)
    assert body == b'{"messages":[{"role":"user","content":"b"}]}'
    assert formatter.parse_chat_response(b'{"output": "yes"}', D).content == "YES"
    assert formatter.parse_response(b'{"output": "yes"}', D).text == "YES"
