"""The exact request bytes of every built-in formatter, for every api type it speaks."""

from __future__ import annotations

import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import (
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    DollyContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    MistralChatContentFormatter,
    get_formatter,
)
from azml_client._types import Message

D, S = ApiType.dedicated, ApiType.serverless
MK = {"temperature": 0.5, "max_new_tokens": 20}
STOP = {"temperature": 0.5, "stop": ["\n", "User:"]}

COMPLETION_CASES = [
    ("gpt2", D, {}, b'{"inputs":{"input_string":["Hi"]},"parameters":{}}'),
    ("gpt2", D, MK, b'{"inputs":{"input_string":["Hi"]},"parameters":{"temperature":0.5,"max_new_tokens":20}}'),
    ("gpt2", D, STOP, b'{"inputs":{"input_string":["Hi"]},"parameters":{"temperature":0.5,"stop":["\\n","User:"]}}'),
    ("hf", D, {}, b'{"inputs":["Hi"],"parameters":{}}'),
    ("hf", D, MK, b'{"inputs":["Hi"],"parameters":{"temperature":0.5,"max_new_tokens":20}}'),
    ("hf", D, STOP, b'{"inputs":["Hi"],"parameters":{"temperature":0.5,"stop":["\\n","User:"]}}'),
    ("dolly", D, {}, b'{"input_data":{"input_string":["Hi"]},"parameters":{}}'),
    ("dolly", D, MK, b'{"input_data":{"input_string":["Hi"]},"parameters":{"temperature":0.5,"max_new_tokens":20}}'),
    (
        "dolly",
        D,
        STOP,
        b'{"input_data":{"input_string":["Hi"]},"parameters":{"temperature":0.5,"stop":["\\n","User:"]}}',
    ),
    ("openai", D, {}, b'{"input_data":{"input_string":["Hi"],"parameters":{}}}'),
    (
        "openai",
        D,
        MK,
        b'{"input_data":{"input_string":["Hi"],"parameters":{"temperature":0.5,"max_new_tokens":20}}}',
    ),
    (
        "openai",
        D,
        STOP,
        b'{"input_data":{"input_string":["Hi"],"parameters":{"temperature":0.5,"stop":["\\n","User:"]}}}',
    ),
    ("openai", S, {}, b'{"prompt":"Hi"}'),
    ("openai", S, MK, b'{"prompt":"Hi","temperature":0.5,"max_new_tokens":20}'),
    ("openai", S, STOP, b'{"prompt":"Hi","temperature":0.5,"stop":["\\n","User:"]}'),
]


@pytest.mark.parametrize(("name", "api_type", "model_kwargs", "expected"), COMPLETION_CASES)
def test_completion_request_bytes(
    name: str, api_type: ApiType, model_kwargs: dict[str, object], expected: bytes
) -> None:
    formatter = get_formatter(name)
    assert formatter.build_request("Hi", model_kwargs, api_type) == expected
    # the seed's API gives the same bytes
    assert formatter.format_request_payload("Hi", dict(model_kwargs), api_type) == expected


def test_prompt_goes_out_as_a_plain_json_string() -> None:
    body = GPT2ContentFormatter().build_request('say "hi"\\\n\tcafé', {}, D)
    assert body == '{"inputs":{"input_string":["say \\"hi\\"\\\\\\n\\tcafé"]},"parameters":{}}'.encode()


def test_serverless_stream_adds_stream_true_and_never_stream_options() -> None:
    formatter = CustomOpenAIContentFormatter()
    assert formatter.build_request("Hi", {}, S, stream=True) == b'{"prompt":"Hi","stream":true}'
    assert formatter.build_request("Hi", {"max_tokens": 5}, S, stream=True) == (
        b'{"prompt":"Hi","max_tokens":5,"stream":true}'
    )
    asked = {"stream_options": {"include_usage": True}}
    assert formatter.build_request("Hi", asked, S, stream=True) == (
        b'{"prompt":"Hi","stream_options":{"include_usage":true},"stream":true}'
    )


@pytest.mark.parametrize("name", ["gpt2", "hf", "dolly", "openai", "openai-chat", "mistral-chat"])
def test_dedicated_formatters_refuse_to_build_a_stream(name: str) -> None:
    formatter = get_formatter(name)
    with pytest.raises(ConfigurationError, match="stream"):
        formatter.build_request("Hi", {}, D, stream=True)


@pytest.mark.parametrize("cls", [GPT2ContentFormatter, HFContentFormatter, DollyContentFormatter])
def test_dedicated_only_formatters_reject_serverless(cls: type[GPT2ContentFormatter]) -> None:
    formatter = cls()
    with pytest.raises(ConfigurationError) as info:
        formatter.build_request("Hi", {}, S)
    message = str(info.value)
    assert repr(formatter.name) in message
    assert "'serverless'" in message
    assert "dedicated" in message
    with pytest.raises(ConfigurationError):
        formatter.parse_response(b'[{"0": "x"}]', S)
    with pytest.raises(ConfigurationError):
        formatter.parse_stream_event('{"choices": []}', S)
    with pytest.raises(ConfigurationError):
        formatter.parse_stream_event('{"choices": []}', D)


def test_check_api_type() -> None:
    CustomOpenAIContentFormatter().check_api_type(S)
    CustomOpenAIContentFormatter().check_api_type("dedicated")
    GPT2ContentFormatter().check_api_type(D)
    with pytest.raises(ConfigurationError, match=r"'gpt2' does not support api_type 'serverless'.*'openai'"):
        GPT2ContentFormatter().check_api_type(S)


def test_model_kwargs_are_not_mutated() -> None:
    kwargs = {"temperature": 0.5, "stop": ["x"]}
    for name in ("gpt2", "hf", "dolly", "openai"):
        get_formatter(name).build_request("Hi", kwargs, D)
    get_formatter("openai").build_request("Hi", kwargs, S, stream=True)
    CustomOpenAIChatContentFormatter().build_chat_request([Message("user", "Hi")], kwargs, S, stream=True)
    assert kwargs == {"temperature": 0.5, "stop": ["x"]}


def test_mapping_model_kwargs_are_accepted() -> None:
    from types import MappingProxyType

    body = GPT2ContentFormatter().build_request("Hi", MappingProxyType({"a": 1}), D)
    assert body == b'{"inputs":{"input_string":["Hi"]},"parameters":{"a":1}}'


def test_unencodable_model_kwargs_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="could not encode the request"):
        GPT2ContentFormatter().build_request("Hi", {"when": object()}, D)
    with pytest.raises(ConfigurationError, match="could not encode the request"):
        CustomOpenAIContentFormatter().build_request("Hi", {1: 2}, S)  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="could not encode the request"):
        GPT2ContentFormatter().build_request("\ud800", {}, D)


def test_a_prompt_must_be_a_str() -> None:
    with pytest.raises(ConfigurationError, match="prompt must be a str"):
        GPT2ContentFormatter().build_request(42, {}, D)  # type: ignore[arg-type]


def test_input_keys_in_model_kwargs_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="'prompt'"):
        CustomOpenAIContentFormatter().build_request("Hi", {"prompt": "other"}, S)
    with pytest.raises(ConfigurationError, match="'messages'"):
        CustomOpenAIChatContentFormatter().build_chat_request([Message("user", "Hi")], {"messages": []}, S)


# -- chat ------------------------------------------------------------------------------------------------------

CONVERSATION = [Message("system", "Be brief."), Message("user", "Hi")]


@pytest.mark.parametrize(
    ("api_type", "model_kwargs", "stream", "expected"),
    [
        (S, {}, False, b'{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}'),
        (
            S,
            MK,
            False,
            b'{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],'
            b'"temperature":0.5,"max_new_tokens":20}',
        ),
        (
            S,
            STOP,
            True,
            b'{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],'
            b'"temperature":0.5,"stop":["\\n","User:"],"stream":true}',
        ),
        (
            D,
            {},
            False,
            b'{"input_data":{"input_string":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],'
            b'"parameters":{}}}',
        ),
        (
            D,
            STOP,
            False,
            b'{"input_data":{"input_string":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],'
            b'"parameters":{"temperature":0.5,"stop":["\\n","User:"]}}}',
        ),
    ],
)
def test_openai_chat_request_bytes(
    api_type: ApiType, model_kwargs: dict[str, object], stream: bool, expected: bytes
) -> None:
    formatter = CustomOpenAIChatContentFormatter()
    assert formatter.build_chat_request(CONVERSATION, model_kwargs, api_type, stream=stream) == expected
    if not stream:
        dicts = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        assert formatter.format_messages_request_payload(dicts, dict(model_kwargs), api_type) == expected


@pytest.mark.parametrize(
    ("api_type", "expected"),
    [
        (S, b'{"messages":[{"role":"user","content":"Be brief.\\n\\nHi"}],"temperature":0.5,"max_new_tokens":20}'),
        (
            D,
            b'{"input_data":{"input_string":[{"role":"user","content":"Be brief.\\n\\nHi"}],'
            b'"parameters":{"temperature":0.5,"max_new_tokens":20}}}',
        ),
    ],
)
def test_mistral_folds_the_system_message_into_the_first_user_message(api_type: ApiType, expected: bytes) -> None:
    assert MistralChatContentFormatter().build_chat_request(CONVERSATION, MK, api_type) == expected


def test_mistral_lone_system_message_becomes_a_user_message() -> None:
    formatter = MistralChatContentFormatter()
    assert formatter.build_chat_request([Message("system", "Only this.")], {}, S) == (
        b'{"messages":[{"role":"user","content":"Only this."}]}'
    )
    # a system message followed by no user message (only an assistant one) is sent as a user message too
    body = formatter.build_chat_request([Message("system", "S"), Message("assistant", "A")], {}, S)
    assert body == b'{"messages":[{"role":"user","content":"S"},{"role":"assistant","content":"A"}]}'


def test_mistral_folds_into_the_first_user_message_even_after_an_assistant_turn() -> None:
    messages = [Message("system", "S"), Message("assistant", "A"), Message("user", "U"), Message("user", "V")]
    body = MistralChatContentFormatter().build_chat_request(messages, {}, S)
    assert body == (
        b'{"messages":[{"role":"assistant","content":"A"},{"role":"user","content":"S\\n\\nU"},'
        b'{"role":"user","content":"V"}]}'
    )


def test_mistral_without_system_message_is_openai_chat() -> None:
    messages = [Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye")]
    for api_type in (S, D):
        assert MistralChatContentFormatter().build_chat_request(messages, {}, api_type) == (
            CustomOpenAIChatContentFormatter().build_chat_request(messages, {}, api_type)
        )


def test_mistral_folds_into_multimodal_content() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    body = MistralChatContentFormatter().build_chat_request([Message("system", "S"), Message("user", parts)], {}, S)
    assert body == (
        b'{"messages":[{"role":"user","content":[{"type":"text","text":"S\\n\\n"},'
        b'{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}'
    )


def test_tool_calls_and_tool_messages_go_out() -> None:
    from azml_client._types import ToolCall

    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    messages = [
        Message("user", "Weather in Paris?"),
        Message("assistant", None, tool_calls=[ToolCall("call_1", "weather", '{"city":"Paris"}')]),
        Message("tool", "18C", tool_call_id="call_1"),
    ]
    body = CustomOpenAIChatContentFormatter().build_chat_request(messages, {"tools": tools, "tool_choice": "auto"}, S)
    assert body == (
        b'{"messages":[{"role":"user","content":"Weather in Paris?"},'
        b'{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",'
        b'"function":{"name":"weather","arguments":"{\\"city\\":\\"Paris\\"}"}}]},'
        b'{"role":"tool","content":"18C","tool_call_id":"call_1"}],'
        b'"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}],'
        b'"tool_choice":"auto"}'
    )


def test_multimodal_content_passes_through_on_serverless_only() -> None:
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    formatter = CustomOpenAIChatContentFormatter()
    assert formatter.build_chat_request([Message("user", parts)], {}, S) == (
        b'{"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},'
        b'{"type":"image_url","image_url":{"url":"data:,"}}]}]}'
    )
    with pytest.raises(ConfigurationError, match="dedicated chat needs text content"):
        formatter.build_chat_request([Message("user", parts)], {}, D)


def test_a_message_without_content_is_rejected() -> None:
    formatter = CustomOpenAIChatContentFormatter()
    with pytest.raises(ConfigurationError, match=r"message 0 \(user\) has no content"):
        formatter.build_chat_request([Message("user", None)], {}, S)
    with pytest.raises(ConfigurationError, match="no content"):
        formatter.build_chat_request([Message("user", "Hi"), Message("assistant", None)], {}, S)


def test_empty_conversation_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="at least one message"):
        CustomOpenAIChatContentFormatter().build_chat_request([], {}, S)


def test_message_forms_are_accepted() -> None:
    formatter = CustomOpenAIChatContentFormatter()
    expected = formatter.build_chat_request([Message("user", "Hi")], {}, S)
    assert formatter.build_chat_request([("user", "Hi")], {}, S) == expected  # type: ignore[list-item]
    assert formatter.build_chat_request([{"role": "user", "content": "Hi"}], {}, S) == expected  # type: ignore[list-item]
    assert formatter.build_chat_request("Hi", {}, S) == expected  # type: ignore[arg-type]


def test_chat_formatter_answers_completion_calls() -> None:
    formatter = CustomOpenAIChatContentFormatter()
    assert formatter.build_request("Hi", {}, S) == b'{"messages":[{"role":"user","content":"Hi"}]}'
    assert formatter.format_request_payload("Hi", {}, S) == b'{"messages":[{"role":"user","content":"Hi"}]}'
    body = b'{"choices":[{"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]}'
    completion = formatter.parse_response(body, S)
    assert completion.text == "Hello"
    assert completion.finish_reason == "stop"
    assert completion.choices[0].text == "Hello"


def test_seed_enum_and_realtime_api_types_are_accepted_by_the_seed_api() -> None:
    import enum

    class AzureMLEndpointApiType(str, enum.Enum):
        dedicated = "dedicated"
        realtime = "realtime"
        serverless = "serverless"

    formatter = CustomOpenAIContentFormatter()
    assert formatter.format_request_payload("Hi", {}, AzureMLEndpointApiType.serverless) == b'{"prompt":"Hi"}'  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="realtime"):
        body = formatter.format_request_payload("Hi", {}, AzureMLEndpointApiType.realtime)  # type: ignore[arg-type]
    assert body == b'{"input_data":{"input_string":["Hi"],"parameters":{}}}'
