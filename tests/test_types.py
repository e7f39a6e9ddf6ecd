"""The result types: the trusted constructors the answer readers use build exactly what the classes' own do."""

from __future__ import annotations

import attrs
import pytest

import azml_client as az
from azml_client._transport._response import Response, new_response
from azml_client._types import (
    CallInfo,
    new_call_info,
    new_chat_choice,
    new_chat_result,
    new_message,
    new_usage,
    to_messages,
    trusted_constructor,
)

_MESSAGE = az.Message("assistant", "hi", tool_calls=(az.ToolCall(id="c1", name="f", arguments="{}"),))


@pytest.mark.parametrize(
    ("trusted", "cls", "args"),
    [
        (new_message, az.Message, ("assistant", "hi", None, None, _MESSAGE.tool_calls, "no")),
        (new_usage, az.Usage, (1, 2, 3)),
        (new_call_info, CallInfo, (200, 2, "req-1", "blue", 0.5, {"x-request-id": "req-1"})),
        (new_chat_choice, az.ChatChoice, (_MESSAGE, "stop", 1, {"content": []})),
        (new_chat_result, az.ChatResult, (_MESSAGE, "stop", az.Usage(1, 2, 3), (), {"id": "x"}, "m", None)),
        (new_response, Response, (200, {"a": "b"}, b"{}", "http://h/score", "r", 1, 0.1)),
    ],
)
def test_a_trusted_constructor_builds_what_the_class_builds(trusted: object, cls: type, args: tuple) -> None:
    built = trusted(*args)  # type: ignore[operator]
    expected = cls(*args)
    assert type(built) is cls
    for field in attrs.fields(cls):  # every field is set, to the same value (eq=False fields included)
        assert getattr(built, field.name) == getattr(expected, field.name), field.name
    assert built == expected


def test_defaults_and_names_are_the_classes() -> None:
    assert new_message("user", "hi") == az.Message("user", "hi")
    assert new_message(role="user", content="x", refusal="r") == az.Message("user", "x", refusal="r")
    assert new_call_info(200).headers == {}  # a factory default gives a fresh value each time
    assert new_call_info(200).headers is not new_call_info(200).headers
    with pytest.raises(TypeError):
        new_usage(1, 2, 3, 4)


def test_the_result_stays_frozen_and_hashable() -> None:
    message = new_message("user", "hi")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.content = "changed"  # type: ignore[misc]
    assert hash(message) == hash(az.Message("user", "hi"))


def test_a_field_added_to_a_class_is_never_left_unset() -> None:
    @attrs.frozen(slots=True)
    class Later:
        a: int
        b: str = "b"
        c: list[int] = attrs.field(factory=list)

    new_later = trusted_constructor(Later)
    assert new_later(1) == Later(1)
    assert new_later(1, "x", [2]) == Later(1, "x", [2])


def test_to_messages_of_a_str_is_one_checked_user_message() -> None:
    assert to_messages("hello") == [az.Message("user", "hello")]


# -- raw answers decoded on first access ---------------------------------------------------------------------

_CHAT_ANSWER = (
    b'{"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "message": '
    b'{"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, '
    b'"completion_tokens": 1, "total_tokens": 2}, "score": NaN}'
)
_COMPLETION_ANSWER = b'{"id": "cmpl-1", "choices": [{"text": "Hi", "finish_reason": "stop"}], "model": "m"}'


def _chat_result() -> az.ChatResult:
    return az.get_formatter("openai-chat").parse_chat_response(_CHAT_ANSWER, az.ApiType.serverless)


def test_a_deferred_raw_reads_as_the_decoded_answer_and_stays_the_same_object() -> None:
    import json

    result = _chat_result()
    expected = json.loads(_CHAT_ANSWER)  # NaN included, as the formatter's own decoder reads it
    raw = result.raw
    assert raw.keys() == expected.keys()
    assert raw["choices"] == expected["choices"]
    assert raw["id"] == "chatcmpl-1"
    assert result.raw is raw  # decoded once: a caller's change to it is kept, as before
    completion = az.get_formatter("openai").parse_response(_COMPLETION_ANSWER, az.ApiType.serverless)
    assert completion.raw == json.loads(_COMPLETION_ANSWER)


def test_a_deferred_raw_survives_pickle_copy_evolve_and_asdict() -> None:
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(_chat_result())).raw["id"] == "chatcmpl-1"
    assert copy.deepcopy(_chat_result()).raw["id"] == "chatcmpl-1"
    assert copy.copy(_chat_result()).raw["id"] == "chatcmpl-1"
    assert attrs.evolve(_chat_result(), model="other").raw["id"] == "chatcmpl-1"
    assert attrs.asdict(_chat_result())["raw"]["id"] == "chatcmpl-1"
    assert _chat_result() == _chat_result()  # raw never took part in equality


def test_raw_given_by_hand_is_kept_as_given_and_stays_frozen() -> None:
    mine = {"anything": [1, 2]}
    result = az.ChatResult(az.Message("assistant", "x"), raw=mine)
    assert result.raw is mine
    assert az.Completion("t", raw=b"bytes stay bytes").raw == b"bytes stay bytes"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _chat_result().raw = {}  # type: ignore[misc]


def test_a_kept_result_holds_its_body_not_a_tree_of_dicts() -> None:
    import gc
    import tracemalloc

    def retained(make: object, count: int = 2000) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            kept = [make() for _ in range(count)]  # type: ignore[operator]
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(kept) == count
        return size / count

    def eager() -> az.ChatResult:
        result = _chat_result()
        _ = result.raw  # decoded: what every result held before
        return result

    deferred, decoded = retained(_chat_result), retained(eager)
    assert deferred < 0.75 * decoded, (deferred, decoded)


def test_the_one_plain_choice_is_rebuilt_equal_and_other_answers_keep_theirs() -> None:
    import json

    result = _chat_result()
    (choice,) = result.choices
    assert choice == az.ChatChoice(result.message, "stop", 0)
    assert choice.message is result.message
    assert result.choices is result.choices  # built once
    answer = json.loads(_CHAT_ANSWER)
    answer["choices"][0]["logprobs"] = {"content": [{"token": "Hi", "logprob": -0.1}]}
    answer["choices"].append({"index": 1, "message": {"role": "assistant", "content": "Yo"}, "finish_reason": "length"})
    both = az.get_formatter("openai-chat").parse_chat_response(json.dumps(answer).encode(), az.ApiType.serverless)
    assert [c.message.content for c in both.choices] == ["Hi", "Yo"]
    assert both.choices[0].logprobs == answer["choices"][0]["logprobs"]
    assert both.choices[1].finish_reason == "length"
