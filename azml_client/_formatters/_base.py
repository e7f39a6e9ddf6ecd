"""The formatter base classes: how a prompt or a conversation becomes a request body, and an answer a result.

A formatter is a pure strategy object: bytes and values in, bytes and values out, no I/O. The SDK calls
``build_request`` / ``parse_response`` / ``parse_stream_event`` (and their chat twins); a formatter written for
the seed (LangChain's ``azureml_endpoint``) overrides ``format_request_payload`` / ``format_response_payload``
instead, and the default ``build_request`` / ``parse_response`` adapt it.
"""

from __future__ import annotations

import enum
import inspect
import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, Literal

import orjson

from azml_client import _json
from azml_client._config import ApiType
from azml_client._exceptions import AzureMLError, ConfigurationError, ResponseFormatError
from azml_client._formatters import _openai
from azml_client._formatters._registry import name_formatter_class, registered_name
from azml_client._formatters._shapes import MISSING, sniff
from azml_client._types import (
    ChatChoice,
    ChatChunk,
    ChatResult,
    Completion,
    CompletionChoice,
    CompletionChunk,
    Message,
    MessagesInput,
    content_text,
    to_messages,
)

__all__ = [
    "ChatContentFormatterBase",
    "ContentFormatterBase",
    "DeprecatedFormatterAlias",
    "as_messages",
    "is_user_method",
]

_PACKAGE: Final = "azml_client._formatters."

#: The exceptions a seed-style ``format_response_payload`` raises on a body it cannot read (RecursionError:
#: its own ``json.loads`` on an answer nested deeper than the interpreter's stack).
_USER_PARSE_ERRORS: Final = (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError)

#: The exceptions a seed-style request builder raises on a request it cannot encode: ``json.dumps`` of a value
#: that is not JSON (TypeError, ValueError) or nested too deeply (RecursionError), ``str.encode`` of a lone
#: surrogate (UnicodeEncodeError, a ValueError).
_USER_BUILD_ERRORS: Final = (TypeError, ValueError, RecursionError)

_SURROGATE_PROBLEM: Final = (
    "it holds a lone surrogate (a code point in U+D800..U+DFFF without its pair, often from text decoded with "
    "errors='surrogateescape'), which UTF-8 cannot encode"
)
_JSON_VALUES: Final = (
    "model_kwargs values must be JSON values (str, number, bool, None, list, dict with str keys); "
    "convert others (a datetime, a set, bytes) before passing them"
)

#: orjson encodes datetimes and dataclasses by itself, which json.dumps (the seed, ``legacy_escaping``) refuses:
#: pass them to ``default``, which refuses them too, so that both encodings accept the same values.
_ORJSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

#: Marks a class whose seed-style methods are azml-client's own, though defined outside this package.
_VARIANT_MARK: Final = "_azml_variant_of"

#: The seed's hand-made escaping (``escape_special_characters``), as one translation table.
_LEGACY_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
)


class _ApiTypeArg(enum.Enum):
    """How a seed-style method wants the api type: not at all, as the next positional, or as a keyword."""

    none = 0
    positional = 1
    keyword = 2


def _api_type_arg(cls: type, method: str, leading: int) -> _ApiTypeArg:
    """Inspect ``cls.method`` once: does it take ``api_type`` after its ``leading`` positional parameters?"""
    static = inspect.getattr_static(cls, method, None)
    func = getattr(cls, method, None)
    if func is None:
        return _ApiTypeArg.none
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable without a signature: pass it as the seed did
        return _ApiTypeArg.positional
    if not isinstance(static, (staticmethod, classmethod)):
        leading += 1  # ``self``
    kinds = inspect.Parameter
    positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    if len(positional) > leading or any(p.kind is kinds.VAR_POSITIONAL for p in params):
        return _ApiTypeArg.positional
    if any(p.kind is kinds.VAR_KEYWORD or (p.name == "api_type" and p.kind is kinds.KEYWORD_ONLY) for p in params):
        return _ApiTypeArg.keyword
    return _ApiTypeArg.none


def _user_defined(cls: type, method: str) -> bool:
    """Whether ``cls.method`` comes from a user's class: not this package's, nor a declared variant's."""
    for klass in cls.__mro__:
        if method in vars(klass):
            return not (klass.__module__.startswith(_PACKAGE) or _VARIANT_MARK in vars(klass))
    return False


def is_user_method(formatter: ContentFormatterBase | type[ContentFormatterBase], method: str) -> bool:
    """Whether the formatter's ``method`` (a seed-style one, such as ``format_messages_request_payload``) is a
    user's: defined by a class outside azml-client, rather than by a built-in or a declared ``variant_of`` one.
    """
    return _user_defined(formatter if isinstance(formatter, type) else type(formatter), method)


def _call(method: Callable[..., Any], how: _ApiTypeArg, args: tuple[Any, ...], api_type: ApiType) -> Any:
    if how is _ApiTypeArg.positional:
        return method(*args, api_type)
    if how is _ApiTypeArg.keyword:
        return method(*args, api_type=api_type)
    return method(*args)


def _coerce_api_type(api_type: ApiType | str) -> ApiType:
    """Accept the seed's api type enum or a name; ``"realtime"`` maps to dedicated (with its warning)."""
    if isinstance(api_type, ApiType):
        return api_type
    value = getattr(api_type, "value", api_type)
    return ApiType.parse(value if isinstance(value, str) else str(value))


def _quiet_api_type(value: Any) -> ApiType | None:
    """Read an entry of ``supported_api_types`` (the seed's enum, a name, or an ApiType) without warnings."""
    name = getattr(value, "value", value)
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    if name == "realtime":  # the seed's deprecated name of dedicated
        return ApiType.dedicated
    try:
        return ApiType(name)
    except ValueError:
        return None


def _not_json(value: Any) -> Any:
    """orjson's ``default``: a float subclass (numpy's float64) is a number; nothing else is a JSON value."""
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _legacy_default(value: Any) -> Any:
    """json.dumps's ``default`` for the values orjson encodes by itself (and so lets through): enums, UUIDs."""
    if isinstance(value, enum.Enum):
        return value.value
    import uuid  # only a request holding a UUID gets here

    if isinstance(value, uuid.UUID):
        return str(value)
    return _not_json(value)


def _check_text(text: Any, what: str, formatter: str) -> None:
    """Refuse a str that UTF-8 cannot encode (a lone surrogate) before any formatter builds a request of it."""
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(f"formatter {formatter!r} cannot send {what}: {_SURROGATE_PROBLEM}") from exc


def _payload_bytes(payload: Any, formatter: str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigurationError(
                f"formatter {formatter!r} built a request payload (a str) that cannot be sent: {_SURROGATE_PROBLEM}"
            ) from exc
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    read = getattr(payload, "read", None)
    if callable(read):  # the seed allowed "a seekable file like object"
        data = read()
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            return _payload_bytes(data, formatter)
    raise ConfigurationError(
        f"formatter {formatter!r} built a request payload of type {type(payload).__name__}; "
        "format_request_payload must return bytes or str"
    )


def _text_of(output: Any) -> str | None:
    """The text of what a seed-style ``format_response_payload`` returned (str, Generation, ChatGeneration)."""
    if isinstance(output, str):
        return output
    message = getattr(output, "message", None)
    content = getattr(message, "content", None)
    if isinstance(content, str):
        return content
    text = getattr(output, "text", None)
    return text if isinstance(text, str) else None


def _generation_info(output: Any) -> Mapping[str, Any]:
    info = getattr(output, "generation_info", None)
    return info if isinstance(info, Mapping) else {}


class ContentFormatterBase:
    """Turns a prompt into a request body and an answer body into a :class:`Completion`.

    Subclass it to support a model whose schema no built-in formatter speaks. The seed's way still works:
    set ``content_type`` / ``accepts`` and define ``format_request_payload(self, prompt, model_kwargs)``
    returning bytes (or str) and ``format_response_payload(self, output)`` returning the text (each may also
    take an ``api_type`` parameter). Register it with :func:`register_formatter` to use it by name.

    Args:
        legacy_escaping: reproduce the seed's exact request bytes (its hand-made escaping, the literal
            quotes around dedicated prompts, ``json.dumps`` separators) for scoring scripts that expect them.
            Only the built-in formatters read it; it changes the bytes, never what may be sent.

    Class keyword:
        variant_of: for a subclass that reads and writes the same bytes as the registered formatter of that
            name and adds an API on top (the LangChain adapter's chat formatters): the class is saved under that
            name, and the seed-style methods it defines count as built-in, so the built-in fast paths stay.
            A user's subclass of it is a user's formatter again.

    Class attributes:
        content_type: the ``Content-Type`` of the request body.
        accepts: the ``Accept`` header of the request.
        kind: ``"completion"`` (a prompt in, a text out) or ``"chat"`` (messages in, a message out).
        supported_api_types: the endpoint kinds the formatter speaks.
    """

    content_type: str = "application/json"
    accepts: str = "application/json"
    kind: ClassVar[Literal["completion", "chat"]] = "completion"
    supported_api_types: ClassVar[frozenset[ApiType]] = frozenset({ApiType.dedicated})
    legacy_escaping: bool = False

    # How the seed-style methods of this class take ``api_type``; computed once per class.
    _request_api_type: ClassVar[_ApiTypeArg] = _ApiTypeArg.positional
    _response_api_type: ClassVar[_ApiTypeArg] = _ApiTypeArg.positional
    _messages_api_type: ClassVar[_ApiTypeArg] = _ApiTypeArg.positional
    # Whether a user subclass of a built-in overrides a seed-style method, which then takes precedence over
    # the built-in's fast path.
    _overrides_request: ClassVar[bool] = False
    _overrides_response: ClassVar[bool] = False
    _overrides_messages: ClassVar[bool] = False

    def __init_subclass__(cls, *, variant_of: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if variant_of is not None:
            setattr(cls, _VARIANT_MARK, variant_of)  # before the flags below are computed
            name_formatter_class(cls, variant_of)
        cls._request_api_type = _api_type_arg(cls, "format_request_payload", 2)
        cls._response_api_type = _api_type_arg(cls, "format_response_payload", 1)
        cls._messages_api_type = _api_type_arg(cls, "format_messages_request_payload", 2)
        cls._overrides_request = _user_defined(cls, "format_request_payload")
        cls._overrides_response = _user_defined(cls, "format_response_payload")
        cls._overrides_messages = _user_defined(cls, "format_messages_request_payload")

    def __init__(self, *, legacy_escaping: bool = False) -> None:
        self.legacy_escaping = legacy_escaping

    def __repr__(self) -> str:
        args = "legacy_escaping=True" if self.legacy_escaping else ""
        return f"{type(self).__name__}({args})"

    @property
    def name(self) -> str:
        """The name the formatter's class is registered under, else the class name."""
        return registered_name(self) or type(self).__name__

    def check_api_type(self, api_type: ApiType | str) -> None:
        """Raise :class:`ConfigurationError` unless this formatter speaks ``api_type``."""
        if api_type in self.supported_api_types:
            return
        wanted = _coerce_api_type(api_type)
        supported = {_quiet_api_type(item) for item in self.supported_api_types} - {None}
        if wanted in supported:
            return
        names = ", ".join(sorted(str(item) for item in supported)) or "none"
        advice = ""
        if wanted is ApiType.serverless:
            advice = (
                "; a serverless endpoint speaks the OpenAI schema: use formatter 'openai' (completion) "
                "or 'openai-chat' (chat)"
            )
        raise ConfigurationError(
            f"formatter {self.name!r} does not support api_type {wanted.value!r}; it supports: {names}{advice}"
        )

    # -- the seed's API --------------------------------------------------------------------------------------

    @staticmethod
    def escape_special_characters(prompt: str) -> str:
        """Escape backslashes, double quotes and the control characters ``\\b \\f \\n \\r \\t`` by hand.

        The seed did this before JSON-encoding the prompt (which escapes them a second time); it is kept for
        ``legacy_escaping`` and for user formatters that call it.
        """
        return prompt.translate(_LEGACY_ESCAPES)

    def format_request_payload(
        self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for ``prompt`` (the seed's API; a user formatter overrides it).

        Raises:
            NotImplementedError: the subclass defines neither this nor ``build_request``.
        """
        raise NotImplementedError(
            f"formatter {type(self).__name__} must define format_request_payload(prompt, model_kwargs)"
        )

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
        """Return the generated text of the answer body ``output`` (the seed's API; a user formatter overrides it).

        Raises:
            NotImplementedError: the subclass defines neither this nor ``parse_response``.
        """
        raise NotImplementedError(f"formatter {type(self).__name__} must define format_response_payload(output)")

    # -- what the SDK calls ----------------------------------------------------------------------------------

    def build_request(
        self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, *, stream: bool = False
    ) -> bytes:
        """Return the request body for one prompt.

        The default calls ``format_request_payload`` with a fresh copy of ``model_kwargs`` (plus
        ``"stream": True`` for a serverless stream) and encodes a str result as UTF-8.

        Raises:
            ConfigurationError: the prompt holds a lone surrogate (UTF-8 cannot encode it), a stream was asked of
                a dedicated endpoint, the method could not encode the request, or the payload is not bytes/str.
        """
        _check_text(prompt, "the prompt", self.name)
        kwargs = dict(model_kwargs)
        if stream:
            self.check_can_stream(api_type)
            kwargs["stream"] = True
        return self.call_format_request_payload(prompt, kwargs, api_type)

    def call_format_request_payload(self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType) -> bytes:
        """Call this formatter's ``format_request_payload`` as the SDK does, and return the body as bytes.

        ``api_type`` is passed the way the method's signature takes it (positionally, by keyword, or not at
        all); a str payload is encoded as UTF-8. For wrappers of seed-style formatters (the LangChain adapter).

        Raises:
            ConfigurationError: the method failed to encode the request (a value that is not JSON, a lone
                surrogate, nesting too deep: chained to its error), or returned something that is not bytes/str.
        """
        try:
            payload = _call(self.format_request_payload, self._request_api_type, (prompt, model_kwargs), api_type)
        except AzureMLError:
            raise
        except _USER_BUILD_ERRORS as exc:
            raise self._build_error("format_request_payload", exc) from exc
        return _payload_bytes(payload, self.name)

    def call_format_messages_request_payload(
        self, messages: list[Any], model_kwargs: dict[str, Any], api_type: ApiType
    ) -> bytes:
        """Call this formatter's ``format_messages_request_payload`` as the SDK does; return the body as bytes.

        As :meth:`call_format_request_payload`, for a conversation (``messages`` as the method expects them).

        Raises:
            ConfigurationError: the method failed to encode the request, or returned something that is not
                bytes/str.
            NotImplementedError: the formatter has no such method.
        """
        method = getattr(self, "format_messages_request_payload", None)
        if method is None:
            raise NotImplementedError(
                f"formatter {type(self).__name__} must define "
                "format_messages_request_payload(messages, model_kwargs, api_type)"
            )
        try:
            payload = _call(method, self._messages_api_type, (messages, model_kwargs), api_type)
        except AzureMLError:
            raise
        except _USER_BUILD_ERRORS as exc:
            raise self._build_error("format_messages_request_payload", exc) from exc
        return _payload_bytes(payload, self.name)

    def call_format_response_payload(self, body: bytes, api_type: ApiType, *, status: int = 200) -> Any:
        """Call this formatter's ``format_response_payload`` as the SDK does, and return what it returns.

        ``api_type`` is passed the way the method's signature takes it. For wrappers of seed-style formatters.

        Raises:
            ResponseFormatError: the method failed on the body (KeyError, IndexError, TypeError, AttributeError,
                ValueError, RecursionError: chained to its error).
        """
        try:
            return _call(self.format_response_payload, self._response_api_type, (body,), api_type)
        except AzureMLError:
            raise
        except _USER_PARSE_ERRORS as exc:
            raise self._response_error(
                f"format_response_payload of formatter {self.name!r} failed: {type(exc).__name__}: {exc}",
                body,
                status,
                api_type=api_type,
            ) from exc

    def _build_error(self, method: str, exc: Exception) -> ConfigurationError:
        if isinstance(exc, UnicodeEncodeError):
            return ConfigurationError(
                f"{method} of formatter {self.name!r} cannot encode the request: {_SURROGATE_PROBLEM}"
            )
        return ConfigurationError(
            f"{method} of formatter {self.name!r} could not build the request: {type(exc).__name__}: {exc}; "
            f"{_JSON_VALUES}"
        )

    def _user_text(self, body: bytes, api_type: ApiType, status: int, what: str) -> tuple[Any, str]:
        """Call the user's ``format_response_payload``; return its output and the text in it."""
        output = self.call_format_response_payload(body, api_type, status=status)
        text = _text_of(output)
        if text is None:
            raise self._response_error(
                f"format_response_payload returned {type(output).__name__}, not {what} (a str)",
                body,
                status,
                api_type=api_type,
            )
        return output, text

    def parse_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> Completion:
        """Return the :class:`Completion` in an answer body.

        The default calls ``format_response_payload`` and wraps the str (or an object with a ``.text`` str,
        such as LangChain's ``Generation``) it returns.

        Raises:
            ResponseFormatError: the body does not fit the formatter.
        """
        output, text = self._user_text(body, api_type, status, "the generated text")
        info = _generation_info(output)
        finish_reason = info.get("finish_reason")
        finish_reason = finish_reason if isinstance(finish_reason, str) else None
        logprobs = info.get("logprobs")
        return Completion(
            text=text,
            finish_reason=finish_reason,
            raw=output,
            choices=(CompletionChoice(text, finish_reason, 0, logprobs),),
            logprobs=logprobs,
        )

    def parse_stream_event(self, data: str, api_type: ApiType) -> CompletionChunk | None:
        """Return the chunk in one server-sent event's ``data`` (never ``"[DONE]"``); ``None`` when it has none.

        The default reads OpenAI completion chunks ``{"choices": [{"text": ..., "finish_reason": ...}]}``.

        Raises:
            ConfigurationError: the api type does not stream (dedicated).
            ResponseFormatError: the event data is not a completion chunk.
        """
        self.check_can_stream(api_type)
        try:
            return _openai.parse_completion_chunk(data)
        except _openai.MalformedAnswer as exc:
            raise self._malformed(exc, data, None, ApiType.serverless) from exc.__cause__

    def check_can_stream(self, api_type: ApiType | str) -> None:
        """Raise :class:`ConfigurationError` unless ``api_type`` streams (only serverless endpoints do)."""
        if api_type != ApiType.serverless:
            raise ConfigurationError(
                f"formatter {self.name!r} cannot stream from a {_coerce_api_type(api_type).value} endpoint: "
                "only serverless endpoints stream"
            )

    # -- helpers for subclasses ------------------------------------------------------------------------------

    def _malformed(
        self, exc: _openai.MalformedAnswer, body: bytes | str, status: int | None, api_type: ApiType
    ) -> ResponseFormatError:
        """The ResponseFormatError for what an answer reader found wrong with ``body``."""
        return self._response_error(exc.problem, body, status, data=exc.data, api_type=api_type)

    def _response_error(
        self,
        problem: str,
        body: bytes | str,
        status: int | None,
        *,
        data: Any = MISSING,
        api_type: ApiType | None = None,
    ) -> ResponseFormatError:
        """Build the ResponseFormatError for ``body``, with a hint from what the body looks like."""
        shape = sniff(body, data)
        name = self.name
        if not shape.formatters:
            hint = (
                f"{shape.description}; check the endpoint URL, the api type, and that the deployment serves "
                "the model this formatter is made for"
            )
        elif name in shape.formatters:
            if shape.api_type is not None and api_type is not None and shape.api_type != api_type:
                hint = f"{shape.description}, the answer of a {shape.api_type.value} endpoint: set api_type "
                hint += f"{shape.api_type.value!r}"
            else:
                hint = f"{shape.description}, which this formatter reads, but the answer is malformed or incomplete"
        else:
            names = " or ".join(repr(item) for item in shape.formatters)
            hint = f"{shape.description}; use formatter {names}"
            if shape.api_type is not None and api_type is not None and shape.api_type != api_type:
                hint += f" with api_type {shape.api_type.value!r}"
        raw = body.encode("utf-8", "replace") if isinstance(body, str) else bytes(body)
        return ResponseFormatError(problem, formatter=name, status=status, body=raw, hint=hint)

    def _loads(self, body: bytes | str, status: int | None, api_type: ApiType) -> Any:
        """Decode JSON (``NaN`` and ``Infinity`` included), turning a decode failure into a ResponseFormatError."""
        try:
            return _json.loads(body)
        except _json.JSONDecodeError as exc:
            what = "the answer is empty" if not body.strip() else f"the answer is not valid JSON ({exc})"
            raise self._response_error(what, body, status, api_type=api_type) from exc

    def _dumps(self, payload: Any) -> bytes:
        """Encode a request body compactly, or in the seed's ``json.dumps`` style under ``legacy_escaping``.

        Both encodings accept the same values: the JSON values (and enums and UUIDs, as their values), never a
        datetime or another object, never a str with a lone surrogate, never more than 255 levels deep.
        """
        try:
            if not self.legacy_escaping:
                return orjson.dumps(payload, default=_not_json, option=_ORJSON_OPTIONS)
            orjson.dumps(payload, default=_not_json, option=_ORJSON_OPTIONS)  # the same refusals as above
            return json.dumps(payload, default=_legacy_default).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            if "surrogates" in str(exc):
                problem = f"a string in the request (the prompt, a message or model_kwargs) {_SURROGATE_PROBLEM}"
            else:
                problem = f"{exc}; {_JSON_VALUES}"
            raise ConfigurationError(
                f"formatter {self.name!r} could not encode the request as JSON: {problem}"
            ) from exc

    def _legacy_prompt(self, prompt: str) -> str:
        """The seed's dedicated prompt: escaped by hand and wrapped in literal double quotes."""
        return f'"{self.escape_special_characters(prompt)}"'

    def _check_prompt(self, prompt: Any) -> None:
        if not isinstance(prompt, str):
            raise ConfigurationError(f"a prompt must be a str, got {type(prompt).__name__}")


def as_messages(messages: MessagesInput | Iterable[Message]) -> list[Message]:
    """Return ``messages`` as a non-empty list of :class:`Message` (fast when they already are)."""
    if type(messages) is list and messages:
        for item in messages:
            if type(item) is not Message:
                break
        else:
            return messages
    return to_messages(messages)  # type: ignore[arg-type]


class ChatContentFormatterBase(ContentFormatterBase):
    """Turns a conversation into a request body and an answer body into a :class:`ChatResult`.

    A chat formatter written for the seed defines ``format_messages_request_payload(messages, model_kwargs,
    api_type)`` (``messages`` as a list of ``{"role", "content"}`` dicts) and ``format_response_payload(output)``
    returning the answer's text (a str, or an object with ``.text`` or ``.message.content``).

    A chat formatter also answers the completion calls: the prompt becomes one user message.
    """

    kind: ClassVar[Literal["completion", "chat"]] = "chat"

    # -- the seed's API --------------------------------------------------------------------------------------

    def format_messages_request_payload(
        self, messages: list[dict[str, Any]], model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for a conversation (the seed's API; a user chat formatter overrides it).

        Raises:
            NotImplementedError: the subclass defines neither this nor ``build_chat_request``.
        """
        raise NotImplementedError(
            f"chat formatter {type(self).__name__} must define "
            "format_messages_request_payload(messages, model_kwargs, api_type)"
        )

    def format_request_payload(
        self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for ``prompt`` sent as one user message."""
        return self.build_chat_request([Message("user", prompt)], model_kwargs, _coerce_api_type(api_type))

    # -- what the SDK calls ----------------------------------------------------------------------------------

    def build_chat_request(
        self,
        messages: Sequence[Message],
        model_kwargs: Mapping[str, Any],
        api_type: ApiType,
        *,
        stream: bool = False,
    ) -> bytes:
        """Return the request body for a conversation.

        The default calls ``format_messages_request_payload`` with the messages as dicts and a fresh copy of
        ``model_kwargs`` (plus ``"stream": True`` for a serverless stream).

        Raises:
            ConfigurationError: an empty conversation, a message that holds a lone surrogate, a stream asked of
                a dedicated endpoint, a method that could not encode the request, or a payload that is not
                bytes/str.
        """
        conversation = as_messages(messages)
        for position, message in enumerate(conversation):
            _check_text(content_text(message.content), f"message {position}", self.name)
        kwargs = dict(model_kwargs)
        if stream:
            self.check_can_stream(api_type)
            kwargs["stream"] = True
        return self.call_format_messages_request_payload(self.seed_messages(conversation), kwargs, api_type)

    def seed_messages(self, messages: Sequence[Message]) -> list[Any]:
        """The conversation as ``format_messages_request_payload`` gets it: a list of ``{"role", "content"}``
        dicts (OpenAI wire form). A wrapper that hands a seed-style formatter other objects overrides it."""
        return [message.to_dict() for message in messages]

    def parse_chat_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> ChatResult:
        """Return the :class:`ChatResult` in an answer body.

        The default calls ``format_response_payload`` and wraps the text it returns in an assistant message.

        Raises:
            ResponseFormatError: the body does not fit the formatter.
        """
        output, text = self._user_text(body, api_type, status, "the answer's text")
        finish_reason = _generation_info(output).get("finish_reason")
        finish_reason = finish_reason if isinstance(finish_reason, str) else None
        message = Message("assistant", text)
        return ChatResult(
            message=message,
            finish_reason=finish_reason,
            choices=(ChatChoice(message, finish_reason),),
            raw=output,
        )

    def parse_chat_stream_event(self, data: str, api_type: ApiType) -> ChatChunk | None:
        """Return the chunk in one server-sent event's ``data`` (never ``"[DONE]"``); ``None`` when it has none.

        The default reads OpenAI chat chunks ``{"choices": [{"delta": {...}, "finish_reason": ...}]}``.

        Raises:
            ConfigurationError: the api type does not stream (dedicated).
            ResponseFormatError: the event data is not a chat chunk.
        """
        self.check_can_stream(api_type)
        try:
            return _openai.parse_chat_chunk(data)
        except _openai.MalformedAnswer as exc:
            raise self._malformed(exc, data, None, ApiType.serverless) from exc.__cause__

    # -- the completion calls, answered through the chat ones --------------------------------------------------

    def build_request(
        self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, *, stream: bool = False
    ) -> bytes:
        """Return the chat request body for ``prompt`` sent as one user message."""
        self._check_prompt(prompt)
        return self.build_chat_request([Message("user", prompt)], model_kwargs, api_type, stream=stream)

    def parse_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> Completion:
        """Return the chat answer in ``body`` as a :class:`Completion` (its text content)."""
        result = self.parse_chat_response(body, api_type, status=status)
        choices = tuple(
            CompletionChoice(content_text(choice.message.content), choice.finish_reason, choice.index, choice.logprobs)
            for choice in result.choices
        )
        return Completion(
            text=result.content,
            finish_reason=result.finish_reason,
            usage=result.usage,
            raw=result.raw,
            choices=choices,
        )

    def parse_stream_event(self, data: str, api_type: ApiType) -> CompletionChunk | None:
        """Return the chat chunk in ``data`` as a :class:`CompletionChunk` (its text delta)."""
        chunk = self.parse_chat_stream_event(data, api_type)
        if chunk is None:
            return None
        return CompletionChunk(chunk.content, chunk.finish_reason, chunk.usage, chunk.raw, chunk.index)


class DeprecatedFormatterAlias(ContentFormatterBase):
    """Base of the seed's deprecated formatter class names: making one warns, and it saves as ``canonical``.

    Put it first among the bases and name the formatter it stands for::

        class OSSContentFormatter(DeprecatedFormatterAlias, GPT2ContentFormatter, canonical="gpt2"): ...

    A subclass of such a class inherits its canonical name and its warning.
    """

    _canonical: str
    _replacement: str

    def __init_subclass__(cls, *, canonical: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if canonical is not None:
            cls._canonical = canonical
            cls._replacement = next(
                base.__name__ for base in cls.__bases__ if not issubclass(base, DeprecatedFormatterAlias)
            )
        if not hasattr(cls, "_canonical"):
            raise TypeError(f"{cls.__name__} needs canonical='<formatter name>'")
        name_formatter_class(cls, cls._canonical)

    def __init__(self, *, legacy_escaping: bool = False) -> None:
        warnings.warn(
            f"{type(self).__name__} is deprecated; use {self._replacement} (formatter {self._canonical!r})",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(legacy_escaping=legacy_escaping)
