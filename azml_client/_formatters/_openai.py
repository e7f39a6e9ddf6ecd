"""Reading the OpenAI-compatible answers of serverless endpoints: completions, chat answers and stream chunks.

Every function checks each value's type before using it, so a body of the wrong shape becomes a
:class:`MalformedAnswer` (which the formatter turns into its :class:`ResponseFormatError`), never a KeyError or
TypeError. The readers know nothing of formatters: they take decoded values and return results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from azml_client import _json
from azml_client._exceptions import ConfigurationError, StreamError
from azml_client._formatters._shapes import MISSING, error_object, error_text
from azml_client._types import (
    ROLES,
    ChatChoice,
    ChatChunk,
    ChatResult,
    Completion,
    CompletionChoice,
    CompletionChunk,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
    new_chat_choice,
    new_chat_result,
    new_message,
)

__all__ = [
    "MalformedAnswer",
    "decode_chunk",
    "parse_chat_body",
    "parse_chat_chunk",
    "parse_completion_body",
    "parse_completion_chunk",
]

#: The finish reasons with which a chat answer may carry no content at all: cut by the token limit before any
#: text (a reasoning model can spend every token thinking), or withheld by a content filter.
_EMPTY_FINISH_REASONS: Final = frozenset({"content_filter", "length"})


class MalformedAnswer(Exception):
    """What is wrong with an answer or a chunk; the formatter turns it into a ResponseFormatError.

    Attributes:
        problem: what is wrong, as a phrase ("choice 0 has no 'text'").
        data: the decoded value, or ``MISSING`` when the body did not decode.
    """

    def __init__(self, problem: str, data: Any = MISSING) -> None:
        super().__init__(problem)
        self.problem = problem
        self.data = data


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MalformedAnswer(f"{what} must be a string or null, got {type(value).__name__}")


def _index(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _choices(data: Any) -> list[Any]:
    if not isinstance(data, dict):
        raise MalformedAnswer("expected a JSON object with 'choices'")
    error = error_object(data)
    if error is not None:
        raise MalformedAnswer(f"the endpoint answered with an error object: {error_text(error, 300)}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise MalformedAnswer("expected a JSON object with a 'choices' list")
    return choices


# -- complete answers ------------------------------------------------------------------------------------------


def _completion_choice(position: int, choice: Any) -> CompletionChoice:
    if not isinstance(choice, dict):
        raise MalformedAnswer(f"choice {position} must be an object")
    if "text" not in choice:
        if "message" in choice:
            raise MalformedAnswer(f"choice {position} has a chat 'message', not a completion 'text'")
        raise MalformedAnswer(f"choice {position} has no 'text'")
    text = choice["text"]
    if not isinstance(text, str):
        raise MalformedAnswer(f"choice {position} 'text' must be a string, got {type(text).__name__}")
    finish_reason = _opt_str(choice.get("finish_reason"), f"choice {position} 'finish_reason'")
    return CompletionChoice(text, finish_reason, _index(choice.get("index"), position), choice.get("logprobs"))


def parse_completion_body(data: Any) -> Completion:
    """Read a decoded OpenAI completion answer ``{"choices": [{"text", "finish_reason", "logprobs"}], "usage"}``.

    Every choice is kept; the first one gives ``text``, ``finish_reason`` and ``logprobs``.

    Raises:
        MalformedAnswer: the answer does not have that shape (or is an error object).
    """
    parsed, usage = _read_choices(data, _completion_choice)
    if not parsed:
        return Completion(text="", usage=usage, raw=data)
    first = parsed[0]
    return Completion(
        text=first.text,
        finish_reason=first.finish_reason,
        usage=usage,
        raw=data,
        choices=parsed,
        logprobs=first.logprobs,
    )


_Choice = TypeVar("_Choice")


def _read_choices(data: Any, parse_one: Callable[[int, Any], _Choice]) -> tuple[tuple[_Choice, ...], Usage | None]:
    """Every choice of an OpenAI-style answer, and its usage; no choices is an answer only when usage came."""
    try:
        choices = _choices(data)
        usage = Usage.from_dict(data.get("usage"))
        if not choices and usage is None:
            raise MalformedAnswer("the answer has no choices")
        if len(choices) == 1:  # the common answer: no generator for one choice
            return (parse_one(0, choices[0]),), usage
        return tuple(parse_one(position, choice) for position, choice in enumerate(choices)), usage
    except MalformedAnswer as exc:
        exc.data = data
        raise


def _message(position: int, raw: Any, finish_reason: str | None) -> Message:
    """Read the OpenAI message object ``{"role", "content", "tool_calls"?, "refusal"?}`` of choice ``position``.

    Every answer goes through here, so the messages that name the place are only formatted on failure.
    """
    if not isinstance(raw, dict):
        raise MalformedAnswer(f"choice {position} message must be an object")
    role = raw.get("role") or "assistant"
    if role not in ROLES:
        raise MalformedAnswer(f"choice {position} message has an unknown role {role!r:.60}")
    content = raw.get("content")
    if content is not None and not isinstance(content, (str, list)):
        kind = type(content).__name__
        raise MalformedAnswer(f"choice {position} message 'content' must be a string, a list or null, got {kind}")
    raw_calls = raw.get("tool_calls")
    calls: tuple[ToolCall, ...] = ()
    if raw_calls:
        if not isinstance(raw_calls, list):
            raise MalformedAnswer(f"choice {position} message 'tool_calls' must be a list")
        try:
            calls = tuple(
                ToolCall.from_dict(call, where=f"choice {position} message tool call {i}")
                for i, call in enumerate(raw_calls)
            )
        except ConfigurationError as exc:
            raise MalformedAnswer(str(exc)) from None
    elif raw_calls is not None and not isinstance(raw_calls, list):
        raise MalformedAnswer(f"choice {position} message 'tool_calls' must be a list")
    refusal = raw.get("refusal")
    if refusal is not None and not isinstance(refusal, str):
        refusal = _opt_str(refusal, f"choice {position} message 'refusal'")
    if content is None and not calls and refusal is None and finish_reason not in _EMPTY_FINISH_REASONS:
        raise MalformedAnswer(f"choice {position} message has 'content': null and no tool_calls")
    name = raw.get("name")
    tool_call_id = raw.get("tool_call_id")
    if role == "tool" and not isinstance(tool_call_id, str):
        raise MalformedAnswer(f"choice {position} message is a tool message without a tool_call_id")
    # Every value was checked above, as Message's own checks would: the trusted constructor skips them.
    return new_message(
        role,
        content,
        name if isinstance(name, str) else None,
        tool_call_id if isinstance(tool_call_id, str) else None,
        calls,
        refusal,
    )


def _chat_choice(position: int, choice: Any) -> ChatChoice:
    if not isinstance(choice, dict):
        raise MalformedAnswer(f"choice {position} must be an object")
    message = choice.get("message")
    if message is None:
        if "text" in choice:
            raise MalformedAnswer(f"choice {position} has a completion 'text', not a chat 'message'")
        if "delta" in choice:
            raise MalformedAnswer(f"choice {position} has a stream 'delta', not a chat 'message'")
        raise MalformedAnswer(f"choice {position} has no 'message'")
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        finish_reason = _opt_str(finish_reason, f"choice {position} 'finish_reason'")
    index = choice.get("index")
    return new_chat_choice(
        _message(position, message, finish_reason),
        finish_reason,
        index if type(index) is int else _index(index, position),
        choice.get("logprobs"),
    )


def parse_chat_body(data: Any) -> ChatResult:
    """Read a decoded OpenAI chat answer ``{"choices": [{"message", "finish_reason"}], "usage", "model"}``.

    Every choice is kept, with its tool calls and refusal; the first one gives ``message`` and ``finish_reason``.
    A message with ``"content": null`` is an answer when it carries tool calls or a refusal, or when its finish
    reason is ``content_filter`` or ``length`` (its content stays ``None``, as openai-python returns it).

    Raises:
        MalformedAnswer: the answer does not have that shape (or is an error object).
    """
    parsed, usage = _read_choices(data, _chat_choice)
    model = data.get("model")
    model = model if isinstance(model, str) else None
    if not parsed:
        return ChatResult(message=Message("assistant", ""), usage=usage, raw=data, model=model)
    first = parsed[0]
    return new_chat_result(first.message, first.finish_reason, usage, parsed, data, model)


# -- stream chunks ---------------------------------------------------------------------------------------------


def decode_chunk(data: str) -> Any:
    """Decode one event's data.

    Raises:
        MalformedAnswer: the data is empty or not JSON (chained to the decode error).
    """
    try:
        return _json.loads(data)
    except _json.JSONDecodeError as exc:
        what = "the stream event is empty" if not data.strip() else "the stream event data is not valid JSON"
        raise MalformedAnswer(what) from exc


def _stream_error(error: Any, data: str) -> StreamError:
    code = error.get("code") if isinstance(error, dict) else None
    return StreamError(
        f"the server reported an error in the event stream: {error_text(error, 500)}",
        data=data,
        code=None if code is None else str(code)[:200],
    )


def _chunk_start(data: str) -> tuple[Any, dict[str, Any] | None, Usage | None]:
    """Decode a chunk; return (decoded, first choice or None, usage)."""
    decoded = decode_chunk(data)
    if isinstance(decoded, dict):
        error = error_object(decoded)
        if error is not None:
            raise _stream_error(error, data)
    try:
        choices = _choices(decoded)
        usage = Usage.from_dict(decoded.get("usage"))
        if not choices:
            return decoded, None, usage
        first = choices[0]
        if not isinstance(first, dict):
            raise MalformedAnswer("choice 0 of the stream chunk must be an object")
        return decoded, first, usage
    except MalformedAnswer as exc:
        exc.data = decoded
        raise


def parse_completion_chunk(data: str) -> CompletionChunk | None:
    """Read one OpenAI completion stream chunk; ``None`` when it carries no text, finish reason or usage.

    Raises:
        StreamError: the chunk is an error object (``{"error": {...}}``): the server failed mid-stream.
        MalformedAnswer: the chunk is not a completion chunk.
    """
    if data == "[DONE]":
        return None
    decoded, choice, usage = _chunk_start(data)
    if choice is None:
        return CompletionChunk(usage=usage, raw=decoded) if usage is not None else None
    try:
        if "text" not in choice and ("delta" in choice or "message" in choice):
            raise MalformedAnswer("this chunk is a chat chunk, not a completion chunk")
        text = _opt_str(choice.get("text"), "the chunk's 'text'") or ""
        finish_reason = _opt_str(choice.get("finish_reason"), "the chunk's 'finish_reason'")
    except MalformedAnswer as exc:
        exc.data = decoded
        raise
    if not text and finish_reason is None and usage is None:
        return None
    return CompletionChunk(text, finish_reason, usage, decoded, _index(choice.get("index"), 0))


def _tool_call_delta(position: int, raw: Any) -> ToolCallDelta:
    where = f"tool call delta {position}"
    if not isinstance(raw, dict):
        raise MalformedAnswer(f"{where} must be an object")
    function = raw.get("function")
    if function is None:
        function = {}
    if not isinstance(function, dict):
        raise MalformedAnswer(f"{where} 'function' must be an object")
    arguments = _opt_str(function.get("arguments"), f"{where} arguments") or ""
    return ToolCallDelta(
        index=_index(raw.get("index"), position),
        id=_opt_str(raw.get("id"), f"{where} id"),
        name=_opt_str(function.get("name"), f"{where} name"),
        arguments=arguments,
    )


def parse_chat_chunk(data: str) -> ChatChunk | None:
    """Read one OpenAI chat stream chunk; ``None`` when it carries nothing (no text, refusal, role, tool call, end
    or usage).

    Raises:
        StreamError: the chunk is an error object (``{"error": {...}}``): the server failed mid-stream.
        MalformedAnswer: the chunk is not a chat chunk.
    """
    if data == "[DONE]":
        return None
    decoded, choice, usage = _chunk_start(data)
    if choice is None:
        return ChatChunk(usage=usage, raw=decoded) if usage is not None else None
    try:
        delta = choice.get("delta")
        if delta is None:
            if "text" in choice:
                raise MalformedAnswer("this chunk is a completion chunk, not a chat chunk")
            if "message" in choice:
                raise MalformedAnswer("this is a whole chat answer, not a stream chunk")
            delta = {}
        if not isinstance(delta, dict):
            raise MalformedAnswer("the chunk's 'delta' must be an object")
        content = _opt_str(delta.get("content"), "the chunk's delta 'content'") or ""
        refusal = _opt_str(delta.get("refusal"), "the chunk's delta 'refusal'") or ""
        role = _opt_str(delta.get("role"), "the chunk's delta 'role'")
        raw_calls = delta.get("tool_calls")
        if raw_calls is not None and not isinstance(raw_calls, list):
            raise MalformedAnswer("the chunk's delta 'tool_calls' must be a list")
        deltas = tuple(_tool_call_delta(i, call) for i, call in enumerate(raw_calls or ()))
        finish_reason = _opt_str(choice.get("finish_reason"), "the chunk's 'finish_reason'")
    except MalformedAnswer as exc:
        exc.data = decoded
        raise
    if not content and not refusal and role is None and not deltas and finish_reason is None and usage is None:
        return None
    return ChatChunk(
        content=content,
        role=role,
        finish_reason=finish_reason,
        usage=usage,
        tool_call_deltas=deltas,
        raw=decoded,
        index=_index(choice.get("index"), 0),
        refusal=refusal,
    )
