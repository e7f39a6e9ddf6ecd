"""Value objects that cross the layers: messages, tool calls, usage, completions and chat results."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs

from azml_client import _json
from azml_client._exceptions import ConfigurationError

__all__ = [
    "ROLES",
    "CallInfo",
    "ChatChoice",
    "ChatChunk",
    "ChatResult",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "Message",
    "MessageLike",
    "MessagesInput",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "content_text",
    "to_messages",
]

#: The roles a chat message may have.
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

Role = Literal["system", "user", "assistant", "tool"]


@attrs.frozen(slots=True)
class Usage:
    """Token counts an endpoint reported for one call; a field is ``None`` where the endpoint gave none."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Usage | None:
        """Build from an OpenAI-style ``usage`` object; ``None`` when ``data`` is not a mapping."""
        if not isinstance(data, Mapping):
            return None
        # An int, not a bool: ``type(...) is int`` (read inline, as every chat and completion answer comes here).
        prompt = data.get("prompt_tokens")
        completion = data.get("completion_tokens")
        total = data.get("total_tokens")
        prompt = prompt if type(prompt) is int else None
        completion = completion if type(completion) is int else None
        total = total if type(total) is int else None
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return cls(prompt, completion, total)

    def to_dict(self) -> dict[str, int | None]:
        """Return the OpenAI wire form ``{"prompt_tokens", "completion_tokens", "total_tokens"}``.

        A count the endpoint did not report stays ``None`` (JSON ``null``); :meth:`from_dict` reads it back.
        """
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@attrs.frozen(slots=True)
class ToolCall:
    """A function call the model asked for: ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        """Return the OpenAI wire form of this tool call."""
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "a tool call") -> ToolCall:
        """Read the OpenAI wire form ``{"id", "type", "function": {"name", "arguments"}}``.

        The one reading of a tool call, for answers and for messages given as dicts alike: ``function`` must be an
        object with a ``name`` string; ``arguments`` missing or ``null`` is ``"{}"``, and arguments sent as a JSON
        object (some servers do) become its compact JSON text; an ``id`` missing or ``null`` is ``""`` and an
        integer id becomes its text; a ``type`` that is not a string is ``"function"``.

        Raises:
            ConfigurationError: ``data`` does not have that form; the message starts with ``where``.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where} must be an object, got {type(data).__name__}")
        function = data.get("function")
        if not isinstance(function, Mapping):
            raise ConfigurationError(f"{where} has no 'function' object")
        name = function.get("name")
        if not isinstance(name, str):
            raise ConfigurationError(f"{where} function has no 'name' string")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            import orjson  # kept out of ``import azml_client._types``: only this rare form needs it

            try:
                arguments = orjson.dumps(arguments).decode()
            except TypeError:  # orjson.JSONEncodeError: not a JSON value, or nested too deeply
                raise ConfigurationError(f"{where} arguments cannot be encoded as JSON") from None
        call_id = data.get("id")
        if call_id is None:
            call_id = ""
        elif isinstance(call_id, int) and not isinstance(call_id, bool):
            call_id = str(call_id)
        elif not isinstance(call_id, str):
            raise ConfigurationError(f"{where} 'id' must be a string, got {type(call_id).__name__}")
        call_type = data.get("type")
        return cls(
            id=call_id,
            name=name,
            arguments=arguments,
            type=call_type if isinstance(call_type, str) else "function",
        )


def _tool_call_tuple(calls: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(calls)


@attrs.frozen(slots=True)
class Message:
    """One chat message.

    ``content`` is a str, or a list of content parts (multimodal) passed through to serverless endpoints,
    or ``None`` for an assistant message that only carries ``tool_calls`` (or an answer that was cut or
    filtered before any text). A ``tool`` message names the call it answers with ``tool_call_id``.
    ``refusal`` is the text of an assistant's refusal, when the endpoint sent one (OpenAI's ``refusal``).
    """

    role: str
    content: str | list[Any] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_call_tuple)
    refusal: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigurationError(f"unknown message role {self.role!r}; allowed roles: {', '.join(ROLES)}")
        if self.content is not None and not isinstance(self.content, (str, list)):
            raise ConfigurationError(
                f"message content must be a str, a list of content parts or None, not {type(self.content).__name__}"
            )
        if self.role == "tool" and not self.tool_call_id:
            raise ConfigurationError("a 'tool' message needs the tool_call_id of the call it answers")

    def to_dict(self) -> dict[str, Any]:
        """Return the OpenAI wire form of this message (only the fields that are set)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.refusal is not None:
            out["refusal"] = self.refusal
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build from an OpenAI-style message dict (tool calls read by :meth:`ToolCall.from_dict`).

        Raises:
            ConfigurationError: no role, an unknown role, content of another type, or a malformed tool call.
        """
        if "role" not in data:
            raise ConfigurationError(f"a message dict needs a 'role' key; got keys {sorted(data)}")
        raw_calls = data.get("tool_calls") or ()
        if not isinstance(raw_calls, (list, tuple)):
            raise ConfigurationError(f"a message's 'tool_calls' must be a list, got {type(raw_calls).__name__}")
        refusal = data.get("refusal")
        return cls(
            role=data["role"],
            content=data.get("content"),
            name=data.get("name"),
            tool_call_id=data.get("tool_call_id"),
            tool_calls=tuple(ToolCall.from_dict(raw, where=f"tool call {i}") for i, raw in enumerate(raw_calls)),
            refusal=refusal if isinstance(refusal, str) else None,
        )


def content_text(content: str | Sequence[Any] | None) -> str:
    """The text of a message content: the str itself, or the text of a list of content parts joined.

    The one reading of content text. In a list, a str item is text, and so is the ``"text"`` string of a part
    whose ``"type"`` is ``"text"`` or absent; other parts (images, ``tool_use``, ``thinking``, ``reasoning``,
    ``refusal``) carry no answer text, and a ``{"text": null}`` part carries none either. ``None`` (an answer
    with only tool calls, or cut before any text) is ``""``.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        return ""
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and part.get("type", "text") in ("text", None):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts)


MessageLike = Message | tuple[str, Any] | Mapping[str, Any]
MessagesInput = str | Message | Sequence[MessageLike]


def to_messages(messages: MessagesInput) -> list[Message]:
    """Normalise the accepted message forms into a list of :class:`Message`.

    Accepted: a str (one user message), a single Message, or a sequence of Message objects,
    ``(role, content)`` tuples and ``{"role": ..., "content": ...}`` dicts.

    Raises:
        ConfigurationError: an empty conversation, an unknown role or an item of another type.
    """
    if isinstance(messages, str):
        return [new_message("user", messages)]
    if isinstance(messages, Message):
        return [messages]
    if isinstance(messages, (bytes, Mapping)) or not isinstance(messages, Iterable):
        raise ConfigurationError(
            "messages must be a str, a Message, or a list of Message, (role, content) tuples or dicts; "
            f"got {type(messages).__name__}"
        )
    out: list[Message] = []
    for index, item in enumerate(messages):
        if isinstance(item, Message):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append(Message(item[0], item[1]))
        elif isinstance(item, Mapping):
            out.append(Message.from_dict(item))
        else:
            raise ConfigurationError(
                f"message {index} must be a Message, a (role, content) tuple or a dict, got {item!r:.80}"
            )
    if not out:
        raise ConfigurationError("a conversation needs at least one message")
    return out


@attrs.frozen(slots=True)
class CallInfo:
    """What the HTTP call behind a result did: set by the model layer on ``result.call``.

    Attributes:
        status: the answer's HTTP status.
        attempts: how many attempts the call took (1 when it was not retried).
        request_id: the endpoint's request id, when the answer carried one.
        deployment: the deployment that answered (``azureml-model-deployment``), when the endpoint said.
        elapsed: seconds from the first attempt to the end of the answer (to its headers, for a stream).
        headers: the answer's headers (a case-insensitive mapping).
    """

    status: int
    attempts: int = 1
    request_id: str | None = None
    deployment: str | None = None
    elapsed: float = 0.0
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True)
class CompletionChoice:
    """One of the ``n`` texts a completion call returned."""

    text: str
    finish_reason: str | None = None
    index: int = 0
    logprobs: Any = None


class _DeferredRaw:
    """The slot in which a result keeps its answer's body until ``raw`` is first read (see :func:`defer_raw`)."""

    __slots__ = ("_raw_body",)


@attrs.frozen(slots=True)
class Completion(_DeferredRaw):
    """The result of a completion call: the (first) text, why it ended, token usage, and the decoded body.

    ``raw`` is the decoded answer; a result read from an answer by a built-in formatter decodes it again on first
    access (and keeps it), so that a batch's results do not each hold a tree of dicts nobody reads.
    """

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)
    choices: tuple[CompletionChoice, ...] = ()
    logprobs: Any = attrs.field(default=None, repr=False)
    #: The HTTP call behind this result (set by the model layer; ``None`` from a formatter alone).
    call: CallInfo | None = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen(slots=True)
class CompletionChunk:
    """One piece of a streamed completion."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)
    #: Which of the ``n`` choices this piece belongs to.
    index: int = 0
    #: The HTTP call behind the stream, on its first chunk (``None`` on the others).
    call: CallInfo | None = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen(slots=True)
class ChatChoice:
    """One of the ``n`` answers of a chat call."""

    message: Message
    finish_reason: str | None = None
    index: int = 0
    logprobs: Any = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class ChatResult(_DeferredRaw):
    """The result of a chat call.

    ``message`` is the first choice's assistant message; ``choices`` holds all ``n`` of them. ``raw`` is the
    decoded answer, decoded again on first access when a built-in formatter read it (as :class:`Completion`'s).
    """

    message: Message
    finish_reason: str | None = None
    usage: Usage | None = None
    choices: tuple[ChatChoice, ...] = ()
    raw: Any = attrs.field(default=None, repr=False, eq=False)
    model: str | None = None
    #: The HTTP call behind this result (set by the model layer; ``None`` from a formatter alone).
    call: CallInfo | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def content(self) -> str:
        """The first answer's text (``""`` when the model answered only with tool calls, or with no text).

        See :func:`content_text` for how a list of content parts is read.
        """
        return content_text(self.message.content)

    @property
    def refusal(self) -> str | None:
        """The first answer's refusal text, when the endpoint sent one."""
        return self.message.refusal

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls of the first answer."""
        return self.message.tool_calls


@attrs.frozen(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; fragments with the same ``index`` are joined in order."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@attrs.frozen(slots=True)
class ChatChunk:
    """One piece of a streamed chat answer: a text delta, plus finish_reason / usage when known."""

    content: str = ""
    role: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    raw: Any = attrs.field(default=None, repr=False, eq=False)
    #: Which of the ``n`` choices this piece belongs to.
    index: int = 0
    #: A piece of the answer's refusal text (OpenAI's ``delta.refusal``), joined like ``content``.
    refusal: str = ""
    #: The HTTP call behind the stream, on its first chunk (``None`` on the others).
    call: CallInfo | None = attrs.field(default=None, repr=False, eq=False)


_T = TypeVar("_T")
_UNSET: Any = object()


def trusted_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen, slotted attrs class ``cls`` for values the caller has already checked.

    It takes the fields in order (positionally or by name, with the class's defaults) and sets each slot
    directly: no converter, validator or ``__attrs_post_init__`` runs, and it costs about half of the class's own
    ``__init__``. The answer readers use it for the results they build per call, after checking every value; it
    is generated from ``attrs.fields(cls)``, so a field added to the class is never left unset.
    """
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_UNSET": _UNSET}
    params: list[str] = []
    body = ["    obj = _new(_cls)"]
    for position, field in enumerate(fields):
        namespace[f"_set{position}"] = cls.__dict__[field.name].__set__
        default = field.default
        if default is attrs.NOTHING:
            params.append(field.name)
        elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            namespace[f"_factory{position}"] = default.factory
            params.append(f"{field.name}=_UNSET")
            body.append(f"    if {field.name} is _UNSET: {field.name} = _factory{position}()")
        else:
            namespace[f"_default{position}"] = default
            params.append(f"{field.name}=_default{position}")
        body.append(f"    _set{position}(obj, {field.name})")
    body.append("    return obj")
    source = f"def new_{cls.__name__}({', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(compile(source, f"<trusted constructor of {cls.__qualname__}>", "exec"), namespace)
    built: Callable[..., _T] = namespace[f"new_{cls.__name__}"]
    return built


#: Trusted constructors (see :func:`trusted_constructor`) of the results an answer reader builds per call.
new_message: Callable[..., Message] = trusted_constructor(Message)
new_usage: Callable[..., Usage] = trusted_constructor(Usage)
new_call_info: Callable[..., CallInfo] = trusted_constructor(CallInfo)
new_chat_choice: Callable[..., ChatChoice] = trusted_constructor(ChatChoice)
new_chat_result: Callable[..., ChatResult] = trusted_constructor(ChatResult)


# -- fields a result builds on first access ----------------------------------------------------------------------
#
# A batch keeps every result, and each container a result holds is one more object the garbage collector walks
# while requests are in flight. A decoded answer is a tree of dicts and lists few callers read, and the one choice
# of a plain answer repeats its message; such results keep the answer's body (one bytes object) and build those
# fields when first read.

#: What a deferred slot holds until it is first read (one object shared by every result).
_DEFERRED: Any = object()
_RAW_BODY: Any = _DeferredRaw.__dict__["_raw_body"]


def _defer_field(cls: type[Any], name: str, build: Callable[[Any], Any], doc: str) -> Any:
    """Put a property over ``cls``'s slot ``name`` that builds a deferred value on first read; return the slot."""
    slot: Any = cls.__dict__[name]

    def read(result: Any) -> Any:
        value = slot.__get__(result, cls)
        if value is _DEFERRED:
            value = build(result)
            slot.__set__(result, value)  # two threads may both build: each gets an equal value, one is kept
        return value

    def write(result: Any, value: Any) -> None:  # attrs' __init__ (users meet FrozenInstanceError first)
        slot.__set__(result, value)

    setattr(cls, name, property(read, write, doc=doc))
    return slot


def _decoded_body(result: _DeferredRaw) -> Any:
    value = _json.loads(_RAW_BODY.__get__(result, _DeferredRaw))
    _RAW_BODY.__set__(result, None)
    return value


def _single_choice(result: ChatResult) -> tuple[ChatChoice, ...]:
    return (new_chat_choice(result.message, result.finish_reason, 0, None),)


_RAW_DOC = "The decoded answer (decoded from the kept body on first access, when a built-in reader deferred it)."
_RAW_SLOTS: dict[type[Any], Any] = {
    cls: _defer_field(cls, "raw", _decoded_body, _RAW_DOC) for cls in (Completion, ChatResult)
}
_CHOICES_SLOT: Any = _defer_field(
    ChatResult, "choices", _single_choice, "Every choice of the answer (the first one is ``message``)."
)

_Result = TypeVar("_Result", Completion, ChatResult)


def defer_raw(result: _Result, body: bytes | str) -> _Result:
    """Keep ``body`` in place of ``result.raw`` (which must be ``body`` decoded) until somebody reads ``raw``."""
    _RAW_BODY.__set__(result, body)
    _RAW_SLOTS[type(result)].__set__(result, _DEFERRED)
    return result


def defer_single_choice(result: ChatResult) -> ChatResult:
    """Drop ``result.choices`` when it is the one plain choice its message and finish reason rebuild on first read.

    Plain: index 0 and no logprobs. Any other answer keeps its choices as read.
    """
    choices = _CHOICES_SLOT.__get__(result, ChatResult)
    if type(choices) is tuple and len(choices) == 1:
        (choice,) = choices
        if (
            choice.index == 0
            and choice.logprobs is None
            and choice.message is result.message
            and choice.finish_reason == result.finish_reason
        ):
            _CHOICES_SLOT.__set__(result, _DEFERRED)
    return result
