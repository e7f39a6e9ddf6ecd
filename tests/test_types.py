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
