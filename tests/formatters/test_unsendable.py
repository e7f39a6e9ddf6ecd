"""What cannot be sent is refused before sending, and what cannot be read is a ResponseFormatError: the same for
the default encoding and ``legacy_escaping``, for the built-ins and for formatters written for the seed. No raw
UnicodeEncodeError, RecursionError, TypeError or orjson error escapes a formatter."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError, ResponseFormatError, StreamError
from azml_client._formatters import ChatContentFormatterBase, ContentFormatterBase, get_formatter
from azml_client._types import Message

from .strategies import json_scalars

D, S = ApiType.dedicated, ApiType.serverless
BUILT_INS = [
    ("gpt2", D),
    ("hf", D),
    ("dolly", D),
    ("openai", D),
    ("openai", S),
    ("openai-chat", D),
    ("openai-chat", S),
    ("mistral-chat", D),
    ("mistral-chat", S),
]
LONE = "a\ud800b"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@dataclasses.dataclass
class Point:
    x: int


class Float(float):
    """A float subclass, as numpy's float64 is."""


class Colour(enum.Enum):
    red = "red"


def _build(name: str, api_type: ApiType, legacy: bool, prompt: str, kwargs: dict[Any, Any]) -> bytes:
    formatter = get_formatter(name, legacy_escaping=legacy)
    if isinstance(formatter, ChatContentFormatterBase):
        return formatter.build_chat_request([Message("user", prompt)], kwargs, api_type)
    return formatter.build_request(prompt, kwargs, api_type)


NOT_JSON = [
    pytest.param({"when": datetime.datetime(2024, 1, 2, 3, 4, 5)}, id="datetime"),
    pytest.param({"day": datetime.date(2024, 1, 2)}, id="date"),
    pytest.param({"at": datetime.time(3, 4)}, id="time"),
    pytest.param({"point": Point(1)}, id="dataclass"),
    pytest.param({"tags": {"a"}}, id="set"),
    pytest.param({"raw": b"x"}, id="bytes"),
    pytest.param({"what": object()}, id="object"),
    pytest.param({1: "int key"}, id="int-key"),
    pytest.param({"big": 2**70}, id="big-int"),
    pytest.param({"deep": _nested(300)}, id="deep"),
]


@pytest.mark.parametrize(("name", "api_type"), BUILT_INS)
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("kwargs", NOT_JSON)
def test_values_that_are_not_json_are_refused_by_both_encodings(
    name: str, api_type: ApiType, legacy: bool, kwargs: dict[Any, Any]
) -> None:
    with pytest.raises(ConfigurationError, match="model_kwargs values must be JSON values") as info:
        _build(name, api_type, legacy, "hi", kwargs)
    assert "could not encode the request as JSON" in str(info.value)


@pytest.mark.parametrize(("name", "api_type"), BUILT_INS)
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    ("prompt", "kwargs"),
    [(LONE, {}), ("hi", {"stop": [LONE]}), ("hi", {LONE: 1})],
    ids=["prompt", "value", "key"],
)
def test_a_lone_surrogate_is_refused_by_both_encodings(
    name: str, api_type: ApiType, legacy: bool, prompt: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        _build(name, api_type, legacy, prompt, kwargs)


@pytest.mark.parametrize(("name", "api_type"), BUILT_INS)
@pytest.mark.parametrize("legacy", [False, True])
def test_values_both_encodings_send(name: str, api_type: ApiType, legacy: bool) -> None:
    """Enums and UUIDs go as their values, a float subclass as a number, tuples as lists, NaN as null or NaN."""
    key = uuid.UUID(int=1)
    kwargs = {"id": key, "colour": Colour.red, "t": Float(0.5), "pair": (1, 2), "n": float("nan"), "😀": "é"}
    sent = json.loads(_build(name, api_type, legacy, "hi 😀", kwargs))
    params = sent.get("parameters") or sent.get("input_data", {}).get("parameters") or sent
    assert params["id"] == str(key)
    assert params["colour"] == "red"
    assert params["t"] == 0.5
    assert params["pair"] == [1, 2]
    assert params["😀"] == "é"
    # NaN is not JSON: the default sends null (orjson), legacy the seed's NaN (json.dumps); both send it.
    assert params["n"] is None if not legacy else params["n"] != params["n"]


#: Values some of which are JSON and some not, to compare what the two encodings accept.
mixed_values = st.recursive(
    json_scalars
    | st.sampled_from([datetime.date(2024, 1, 1), b"x", frozenset(), Colour.red, uuid.UUID(int=2), Float(1.5), LONE]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.sampled_from([LONE, 3]), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.parametrize(("name", "api_type"), BUILT_INS)
@settings(max_examples=60, deadline=None)
@given(value=mixed_values)
def test_both_encodings_accept_the_same_values(name: str, api_type: ApiType, value: Any) -> None:
    outcomes = []
    for legacy in (False, True):
        try:
            _build(name, api_type, legacy, "hi", {"v": value})
        except ConfigurationError as error:
            outcomes.append(str(error).split(": ", 1)[0])
        else:
            outcomes.append("sent")
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(("name", "api_type"), [case for case in BUILT_INS if case[0].endswith("-chat")])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_lone_surrogate_in_a_message_is_refused(name: str, api_type: ApiType, legacy: bool) -> None:
    formatter = get_formatter(name, legacy_escaping=legacy)
    assert isinstance(formatter, ChatContentFormatterBase)
    for content in (LONE, [{"type": "text", "text": LONE}]):
        if isinstance(content, list) and api_type is D:
            continue  # dedicated chat takes text content only
        with pytest.raises(ConfigurationError, match="lone surrogate"):
            formatter.build_chat_request([Message("system", "s"), Message("user", content)], {}, api_type)


# -- formatters written for the seed ---------------------------------------------------------------------------


class SeedFormatter(ContentFormatterBase):
    """As the seed's users wrote them: json.dumps out, json.loads in, a str payload."""

    calls = 0

    def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> str:  # type: ignore[override]
        SeedFormatter.calls += 1
        return json.dumps({"inputs": [prompt], "parameters": model_kwargs}, ensure_ascii=False)

    def format_response_payload(self, output: bytes) -> str:  # type: ignore[override]
        return json.loads(output)[0]["summary_text"]  # type: ignore[no-any-return]


class SeedChat(ChatContentFormatterBase):
    calls = 0

    def format_messages_request_payload(  # type: ignore[override]
        self, messages: list[dict[str, Any]], model_kwargs: dict[str, Any], api_type: ApiType
    ) -> bytes:
        SeedChat.calls += 1
        return json.dumps({"input_data": {"input_string": messages, "parameters": model_kwargs}}).encode()

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
        return json.loads(output)["output"]  # type: ignore[no-any-return]


def test_a_seed_formatters_lone_surrogate_is_refused_before_its_method_runs() -> None:
    before = SeedFormatter.calls
    with pytest.raises(ConfigurationError, match="cannot send the prompt: it holds a lone surrogate"):
        SeedFormatter().build_request(LONE, {}, D)
    assert SeedFormatter.calls == before
    before = SeedChat.calls
    with pytest.raises(ConfigurationError, match="cannot send message 1: it holds a lone surrogate"):
        SeedChat().build_chat_request([Message("system", "s"), Message("user", LONE)], {}, D)
    assert SeedChat.calls == before


def test_a_seed_formatters_str_payload_that_utf8_cannot_encode() -> None:
    class Builds(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> str:  # type: ignore[override]
            return prompt + "\udc80"  # as text decoded with errors="surrogateescape" comes out

    with pytest.raises(ConfigurationError, match="payload \\(a str\\) that cannot be sent: it holds a lone surrogate"):
        Builds().build_request("hi", {}, D)


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"when": datetime.date(2024, 1, 1)}, TypeError),
        pytest.param(
            {"deep": _nested(5000)},
            RecursionError,
            marks=pytest.mark.skipif(
                sys.version_info >= (3, 13), reason="3.13 json nests deeper without RecursionError"
            ),
        ),
    ],
)
def test_a_seed_formatters_encoding_errors_are_configuration_errors(kwargs: dict[str, Any], cause: type) -> None:
    with pytest.raises(ConfigurationError) as info:
        SeedFormatter().build_request("hi", kwargs, D)
    assert isinstance(info.value.__cause__, cause)
    assert "format_request_payload of formatter 'SeedFormatter' could not build the request" in str(info.value)
    assert "model_kwargs values must be JSON values" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        SeedChat().build_chat_request([Message("user", "hi")], kwargs, D)
    assert isinstance(info.value.__cause__, cause)
    assert "format_messages_request_payload of formatter 'SeedChat'" in str(info.value)


def test_a_seed_formatters_own_encode_error() -> None:
    class Encodes(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
            return ("x" + chr(0xDC00)).encode()

    with pytest.raises(ConfigurationError, match="cannot encode the request: it holds a lone surrogate") as info:
        Encodes().build_request("hi", {}, D)
    assert isinstance(info.value.__cause__, UnicodeEncodeError)


def test_a_seed_formatters_recursion_on_a_deep_answer_is_a_response_format_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for formatter in (SeedFormatter(), SeedChat()):
        with pytest.raises(ResponseFormatError, match="failed: RecursionError") as info:
            formatter.parse_response(deep, D, status=200)
        assert isinstance(info.value.__cause__, RecursionError)
        assert info.value.body == deep[:4096]


# -- the built-ins on answers nested deeply --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "api_type"), BUILT_INS)
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_answers_are_response_format_errors(name: str, api_type: ApiType, depth: int) -> None:
    formatter = get_formatter(name)
    nested = b"[" * depth + b"]" * depth
    for body in (nested, b'{"error": ' + nested + b"}", b'{"choices": [{"message": ' + nested + b"}]}"):
        with pytest.raises(ResponseFormatError):
            formatter.parse_response(body, api_type)
    if api_type is S:
        with pytest.raises(ResponseFormatError):
            formatter.parse_stream_event(nested.decode(), S)
        with pytest.raises(StreamError):
            formatter.parse_stream_event('{"error": ' + "[" * 1000 + "]" * 1000 + "}", S)
