"""What the endpoint emulator reads and answers: request validation and deterministic text, with no I/O.

The emulator is not a language model. Every answer is a pure function of the request: the text for a
prompt is ``echo_text(prompt)`` (``"echo: " + prompt``), cut at the first ``stop`` string and then to
``max_tokens`` whitespace-separated words. Token counts are whitespace word counts. A serverless chat
request with a JSON ``response_format`` is answered with JSON text instead (:func:`json_object_answer`, or a
sample of the schema: see :mod:`azml_client.testing._samples`), never cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs
import orjson

from azml_client.testing._samples import sample_instance, sample_object

ECHO_PREFIX: Final = "echo: "
MODEL_NAME: Final = "azml-emulator"
TOOL_RESULT_PREFIX: Final = "tool result: "
MAX_CHOICES: Final = 128

#: Deployment name (``azureml-model-deployment`` header) -> request schema of the dedicated ``/score`` route.
#: One deployment per built-in formatter, plus the formatters' deprecated alias names, plus ``bart``: a
#: Hugging Face summarization model, as in the seed notebook's custom formatter example.
DEPLOYMENTS: Final[Mapping[str, str]] = {
    "gpt2": "gpt2",
    "oss": "gpt2",
    "hf": "hf",
    "bart": "bart",
    "dolly": "dolly",
    "openai": "openai",
    "llama": "openai",
    "openai-chat": "openai-chat",
    "llama-chat": "openai-chat",
    "mistral-chat": "mistral-chat",
}

#: The request each dedicated schema expects, for error messages.
SHAPES: Final[Mapping[str, str]] = {
    "gpt2": '{"inputs": {"input_string": ["<prompt>", ...]}, "parameters": {...}}',
    "hf": '{"inputs": ["<prompt>", ...], "parameters": {...}}',
    "bart": '{"inputs": ["<text>", ...], "parameters": {...}, "options": {...}}',
    "dolly": '{"input_data": {"input_string": ["<prompt>", ...]}, "parameters": {...}}',
    "openai": '{"input_data": {"input_string": ["<prompt>", ...], "parameters": {...}}}',
    "openai-chat": '{"input_data": {"input_string": [{"role": ..., "content": ...}, ...], "parameters": {...}}}',
    "mistral-chat": '{"input_data": {"input_string": [{"role": ..., "content": ...}, ...], "parameters": {...}}}'
    ' (no "system" role)',
}

#: The keys each dedicated schema may leave out, for error messages.
OPTIONAL_KEYS: Final[Mapping[str, str]] = {"bart": "'parameters' and 'options' are optional"}

#: ``default_deployment`` value that picks each request's schema from the body's shape (see :func:`fitting_schemas`).
AUTO: Final = "auto"

#: The schemas in the order ``auto`` tries them: where two read the same body (``hf`` and ``bart`` without
#: ``options``; ``openai`` and ``dolly`` without ``parameters``; the two chat schemas) the first one wins.
AUTO_ORDER: Final = ("gpt2", "hf", "bart", "openai", "dolly", "openai-chat", "mistral-chat")

ROLES: Final = ("system", "user", "assistant", "tool")
_TOOL_CHOICES: Final = ("none", "auto", "required")
_RESPONSE_FORMATS: Final = ("text", "json_object", "json_schema")
_DEDICATED_TOKEN_KEYS: Final = ("max_new_tokens", "max_tokens")
_SERVERLESS_TOKEN_KEYS: Final = ("max_tokens", "max_completion_tokens")

_WORD = re.compile(r"\S+")
_QUOTED_NAME = re.compile(r"(['\"`])([A-Za-z_][A-Za-z0-9_]*)\1")
# Each piece is a word with the whitespace around it, so that "".join(pieces) == text.
_PIECE = re.compile(r"\s*\S+\s*|\s+")

_JSON_KINDS: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class PayloadError(ValueError):
    """The request body does not fit the route's schema; the message says what was expected."""


def echo_text(prompt: str) -> str:
    """The text the emulator generates for ``prompt``: exactly ``"echo: " + prompt`` (deterministic).

    For chat, the prompt is the content of the last ``user`` message; a content given as a list of parts
    is the concatenation (``"".join``) of the parts' ``"text"`` fields. ``max_tokens`` / ``max_new_tokens``
    and ``stop`` then shorten this text (see the module docstring).
    """
    return ECHO_PREFIX + prompt


def count_words(text: str) -> int:
    """The emulator's token count of ``text``: its number of whitespace-separated words."""
    return len(text.split())


def split_pieces(text: str) -> list[str]:
    """Split ``text`` into the pieces a stream sends: one per word, keeping the whitespace around it."""
    return _PIECE.findall(text)


@attrs.frozen
class Limits:
    """The generation limits read from the parameters: word budget and stop strings."""

    max_tokens: int | None = None
    stop: tuple[str, ...] = ()


NO_LIMITS: Final = Limits()


def apply_limits(text: str, limits: Limits) -> tuple[str, str]:
    """Cut ``text`` at the first stop string, then to ``max_tokens`` words; return it and the finish reason."""
    if limits.stop:
        cuts = [at for at in (text.find(s) for s in limits.stop if s) if at >= 0]
        if cuts:
            text = text[: min(cuts)]
    if limits.max_tokens is not None:
        end = 0
        for count, match in enumerate(_WORD.finditer(text)):
            if count == limits.max_tokens:
                return text[:end], "length"
            end = match.end()
    return text, "stop"


def _kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object, got {_kind(value)}")
    return value


def _keys(obj: Mapping[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    for key in required:
        if key not in obj:
            raise PayloadError(f"{where} is missing the key {key!r}")
    extra = [key for key in obj if key not in required and key not in optional]
    if extra:
        raise PayloadError(f"{where} has unexpected key(s) {', '.join(repr(k[:40]) for k in extra)}")


def _prompts(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise PayloadError(f"{where} must be a non-empty array of strings, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PayloadError(f"{where}[{i}] must be a string, got {_kind(item)}")
    return value


def _limits(params: Mapping[str, Any], where: str, token_keys: tuple[str, ...]) -> Limits:
    max_tokens = None
    for key in token_keys:
        value = params.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            raise PayloadError(f"{where}{key} must be a non-negative integer, got {_kind(value)}")
        max_tokens = value
        break
    stop = params.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise PayloadError(f"{where}stop must be a string or an array of strings, got {_kind(stop)}")
    if max_tokens is None and not stops:
        return NO_LIMITS
    return Limits(max_tokens, stops)


def _parameters(container: Mapping[str, Any], where: str) -> Limits:
    if "parameters" not in container:
        return NO_LIMITS
    params = _object(container["parameters"], f"{where}parameters")
    return _limits(params, f"{where}parameters.", _DEDICATED_TOKEN_KEYS)


def content_text(content: object) -> str:
    """The text of a message content: the string itself, or the joined ``"text"`` fields of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def _messages(value: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise PayloadError(f"{where} must be a non-empty array of messages, got {_kind(value)}")
    for i, message in enumerate(value):
        at = f"{where}[{i}]"
        _object(message, at)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            shown = repr(role[:40]) if isinstance(role, str) else _kind(role)
            raise PayloadError(f"{at}.role must be one of {', '.join(map(repr, ROLES))}, got {shown}")
        content = message.get("content")
        if content is None:
            if role != "assistant":
                raise PayloadError(f"{at}.content is required for role {role!r}")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _object(part, f"{at}.content[{j}]")
                if not isinstance(part.get("type"), str):
                    raise PayloadError(f"{at}.content[{j}].type must be a string")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise PayloadError(f"{at}.content[{j}].text must be a string")
        elif not isinstance(content, str):
            raise PayloadError(f"{at}.content must be a string or an array of parts, got {_kind(content)}")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise PayloadError(f"{at} has role 'tool' but no string tool_call_id")
        if "tool_calls" in message and not isinstance(message["tool_calls"], list):
            raise PayloadError(f"{at}.tool_calls must be an array, got {_kind(message['tool_calls'])}")
    return value


def last_user_prompt(messages: list[dict[str, Any]]) -> str:
    """The prompt of a conversation: the content text of its last ``user`` message ("" when there is none)."""
    for message in reversed(messages):
        if message["role"] == "user":
            return content_text(message["content"])
    return ""


# --- dedicated /score --------------------------------------------------------------------------------------


def _answer_gpt2(body: object) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("inputs",), ("parameters",))
    inputs = _object(obj["inputs"], "inputs")
    _keys(inputs, "inputs", ("input_string",))
    prompts = _prompts(inputs["input_string"], "inputs.input_string")
    limits = _parameters(obj, "")
    return [{"0": apply_limits(echo_text(p), limits)[0]} for p in prompts]


def _answer_hf(body: object) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("inputs",), ("parameters",))
    prompts = _prompts(obj["inputs"], "inputs")
    limits = _parameters(obj, "")
    return [{"0": {"generated_text": apply_limits(echo_text(p), limits)[0]}} for p in prompts]


def _answer_bart(body: object) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("inputs",), ("parameters", "options"))
    prompts = _prompts(obj["inputs"], "inputs")
    if "options" in obj:
        _object(obj["options"], "options")
    limits = _parameters(obj, "")
    return [{"summary_text": apply_limits(echo_text(p), limits)[0]} for p in prompts]


def _answer_dolly(body: object) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("input_data",), ("parameters",))
    data = _object(obj["input_data"], "input_data")
    _keys(data, "input_data", ("input_string",))
    prompts = _prompts(data["input_string"], "input_data.input_string")
    limits = _parameters(obj, "")
    return [apply_limits(echo_text(p), limits)[0] for p in prompts]


def _answer_openai(body: object) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("input_data",))
    data = _object(obj["input_data"], "input_data")
    _keys(data, "input_data", ("input_string",), ("parameters",))
    prompts = _prompts(data["input_string"], "input_data.input_string")
    limits = _parameters(data, "input_data.")
    return [{"0": apply_limits(echo_text(p), limits)[0]} for p in prompts]


def _answer_chat(body: object, *, allow_system: bool) -> Any:
    obj = _object(body, "the body")
    _keys(obj, "the body", ("input_data",))
    data = _object(obj["input_data"], "input_data")
    _keys(data, "input_data", ("input_string",), ("parameters",))
    messages = _messages(data["input_string"], "input_data.input_string")
    if not allow_system:
        for i, message in enumerate(messages):
            if message["role"] == "system":
                raise PayloadError(
                    f"input_data.input_string[{i}] has role 'system', which this model rejects: "
                    "fold the system text into the first user message"
                )
    limits = _parameters(data, "input_data.")
    return {"output": apply_limits(echo_text(last_user_prompt(messages)), limits)[0]}


def dedicated_answer(schema: str, body: object) -> Any:
    """The JSON answer of a dedicated deployment with ``schema`` (a value of :data:`DEPLOYMENTS`) to ``body``.

    Raises:
        PayloadError: the body does not fit the schema.
    """
    if schema == "gpt2":
        return _answer_gpt2(body)
    if schema == "hf":
        return _answer_hf(body)
    if schema == "bart":
        return _answer_bart(body)
    if schema == "dolly":
        return _answer_dolly(body)
    if schema == "openai":
        return _answer_openai(body)
    return _answer_chat(body, allow_system=schema != "mistral-chat")


def fitting_schemas(body: object) -> list[str]:
    """The dedicated schemas that read ``body``, in :data:`AUTO_ORDER` (the first is what ``auto`` serves)."""
    fits = []
    for schema in AUTO_ORDER:
        try:
            dedicated_answer(schema, body)
        except PayloadError:
            continue
        fits.append(schema)
    return fits


def resolve_deployment(name: str, extra: Mapping[str, str]) -> str | None:
    """The schema the deployment ``name`` serves, or None when the emulator has no such deployment.

    ``extra`` (the emulator's own names, ``MockEndpoint(deployments=...)``) comes first, then
    :data:`DEPLOYMENTS`; a name that starts with a known deployment and a dash (``llama-blue``,
    ``openai-chat-green``: Azure's blue/green naming) is served by the longest such deployment.
    """
    schema = extra.get(name) or DEPLOYMENTS.get(name)
    if schema is not None:
        return schema
    known = [known for known in DEPLOYMENTS if name.startswith(known + "-")]
    return DEPLOYMENTS[max(known, key=len)] if known else None


# --- serverless (OpenAI-compatible) --------------------------------------------------------------------------


@attrs.frozen
class Choice:
    """One generated choice of a serverless answer; ``text`` is None for a tool call."""

    index: int
    text: str | None
    finish_reason: str
    tool_calls: tuple[dict[str, Any], ...] = ()


@attrs.frozen
class Plan:
    """Everything a serverless answer says, before it is rendered as one JSON body or as SSE chunks."""

    chat: bool
    choices: tuple[Choice, ...]
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    include_usage: bool

    def usage(self) -> dict[str, int]:
        """The ``usage`` object of the answer."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _suffixed(text: str, i: int) -> str:
    return text if i == 0 else f"{text} ({i})"


def _options(body: Mapping[str, Any]) -> tuple[int, bool, bool, Limits]:
    n = body.get("n")
    if n is None:
        n = 1
    elif not _is_int(n) or not 1 <= n <= MAX_CHOICES:
        raise PayloadError(f"n must be an integer between 1 and {MAX_CHOICES}")
    stream = body.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise PayloadError(f"stream must be a boolean, got {_kind(stream)}")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise PayloadError("stream_options is only allowed when stream is true")
        include_usage = _object(options, "stream_options").get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise PayloadError(f"stream_options.include_usage must be a boolean, got {_kind(include_usage)}")
    return n, stream, include_usage, _limits(body, "", _SERVERLESS_TOKEN_KEYS)


def completion_plan(body: object) -> Plan:
    """Validate a ``/v1/completions`` body and decide the answer.

    Raises:
        PayloadError: the body does not fit.
    """
    obj = _object(body, "the body")
    if "prompt" not in obj:
        if "messages" in obj:
            raise PayloadError(
                "this is a completions route, which takes 'prompt'; send 'messages' to /chat/completions"
            )
        raise PayloadError("the body is missing the key 'prompt'")
    prompt = obj["prompt"]
    prompts: list[str] = [prompt] if isinstance(prompt, str) else _prompts(prompt, "prompt")
    n, stream, include_usage, limits = _options(obj)
    choices: list[Choice] = []
    for p, text_prompt in enumerate(prompts):
        text, finish = apply_limits(echo_text(text_prompt), limits)
        choices.extend(Choice(p * n + i, _suffixed(text, i), finish) for i in range(n))
    return Plan(
        chat=False,
        choices=tuple(choices),
        prompt_tokens=sum(count_words(p) for p in prompts),
        completion_tokens=sum(count_words(c.text or "") for c in choices),
        stream=stream,
        include_usage=include_usage,
    )


def _tools(value: object) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, list) or not value:
        raise PayloadError(f"tools must be a non-empty array, got {_kind(value)}")
    tools = []
    for i, tool in enumerate(value):
        at = f"tools[{i}]"
        _object(tool, at)
        if tool.get("type") != "function":
            raise PayloadError(f"{at}.type must be 'function'")
        function = _object(tool.get("function"), f"{at}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise PayloadError(f"{at}.function.name must be a non-empty string")
        parameters = function.get("parameters")
        tools.append((name, {} if parameters is None else _object(parameters, f"{at}.function.parameters")))
    return tools


def _tool_choice(value: object, tools: list[tuple[str, dict[str, Any]]] | None) -> str | None:
    """``None``/"none"/"auto"/"required", or the name of the function the caller forces."""
    if value is None:
        return None
    if tools is None:
        raise PayloadError("tool_choice is only allowed when tools are specified")
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise PayloadError(f"tool_choice must be one of {', '.join(map(repr, _TOOL_CHOICES))} or an object")
        return value
    choice = _object(value, "tool_choice")
    name = _object(choice.get("function"), "tool_choice.function").get("name")
    if choice.get("type") != "function" or not isinstance(name, str):
        raise PayloadError('tool_choice must look like {"type": "function", "function": {"name": ...}}')
    if name not in {tool_name for tool_name, _ in tools}:
        raise PayloadError(f"tool_choice names the function {name[:40]!r}, which is not in tools")
    return f"function:{name}"


def sample_arguments(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments for a tool call: a value for each required property of the tool's JSON schema.

    The value follows the property's schema, as :func:`~azml_client.testing._samples.sample_instance` samples
    it: integer 3, number 3.0, string "x", boolean true, an array without ``items`` [], an object without
    required properties {}; a property with an ``enum`` gets its first value; ``$ref`` is followed.
    """
    return sample_object(dict(parameters))


@attrs.frozen
class ResponseFormat:
    """What a chat request's ``response_format`` asks for: ``kind`` ``"json_object"`` or ``"json_schema"``."""

    kind: str
    schema: dict[str, Any] | None = None


def _response_format(value: object) -> ResponseFormat | None:
    """The JSON answer a ``response_format`` asks for, or None for plain text (absent, null, ``text``)."""
    if value is None:
        return None
    obj = _object(value, "response_format")
    kind = obj.get("type")
    if kind not in _RESPONSE_FORMATS:
        shown = repr(kind[:40]) if isinstance(kind, str) else _kind(kind)
        raise PayloadError(
            f"response_format.type must be one of {', '.join(map(repr, _RESPONSE_FORMATS))}, got {shown}"
        )
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    spec = _object(obj.get("json_schema"), "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PayloadError("response_format.json_schema.name must be a non-empty string")
    schema = spec.get("schema")
    if schema is None:
        return ResponseFormat("json_schema", {})
    return ResponseFormat("json_schema", _object(schema, "response_format.json_schema.schema"))


def asks_for_json(messages: list[dict[str, Any]]) -> bool:
    """Whether a conversation says "JSON" (any case) in some message, as OpenAI's JSON mode requires."""
    return any("json" in content_text(message.get("content")).lower() for message in messages)


def json_object_answer(prompt: str) -> dict[str, str]:
    """The emulator's answer in JSON mode: the names quoted in ``prompt`` as keys, each holding its echo text.

    A name is an identifier in single, double or back quotes (``'setup'``, ``"punchline"``, `` `id` ``), kept
    in order of first appearance; a prompt that quotes none gets ``{"text": echo_text(prompt)}``.
    """
    names = dict.fromkeys(match.group(2) for match in _QUOTED_NAME.finditer(prompt))
    text = echo_text(prompt)
    return dict.fromkeys(names, text) if names else {"text": text}


def _json_content(response_format: ResponseFormat, messages: list[dict[str, Any]]) -> str | None:
    """The JSON text a chat answer holds under ``response_format``; None when it stays plain text."""
    if response_format.kind == "json_schema":
        # No schema (or an empty one) allows any JSON: answer an empty object, as structured outputs' roots are.
        schema = response_format.schema
        return orjson.dumps(sample_instance(schema) if schema else {}).decode()
    if not asks_for_json(messages):
        # Not asked for JSON in the conversation: answer as a model that was not told (OpenAI refuses instead).
        return None
    return orjson.dumps(json_object_answer(last_user_prompt(messages))).decode()


def chat_plan(body: object, call_ids: Iterator[int]) -> Plan:
    """Validate a ``/v1/chat/completions`` body and decide the answer; tool call ids come from ``call_ids``.

    Raises:
        PayloadError: the body does not fit.
    """
    obj = _object(body, "the body")
    if "messages" not in obj:
        if "prompt" in obj:
            raise PayloadError("this is a chat route, which takes 'messages'; send 'prompt' to /completions")
        raise PayloadError("the body is missing the key 'messages'")
    messages = _messages(obj["messages"], "messages")
    tools = _tools(obj["tools"]) if obj.get("tools") is not None else None
    tool_choice = _tool_choice(obj.get("tool_choice"), tools)
    response_format = _response_format(obj.get("response_format"))
    n, stream, include_usage, limits = _options(obj)
    last = messages[-1]
    choices: list[Choice]
    if tools and tool_choice != "none" and last["role"] == "user":
        if tool_choice is not None and tool_choice.startswith("function:"):
            name = tool_choice.removeprefix("function:")
            parameters = next(schema for tool_name, schema in tools if tool_name == name)
        else:
            name, parameters = tools[0]
        arguments = orjson.dumps(sample_arguments(parameters)).decode()
        choices = [
            Choice(
                i,
                None,
                "tool_calls",
                (
                    {
                        "id": f"call_{next(call_ids)}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    },
                ),
            )
            for i in range(n)
        ]
        completion_tokens = n * count_words(arguments)
    else:
        json_text = None if response_format is None else _json_content(response_format, messages)
        if json_text is not None:
            # Never cut by stop or max_tokens, and the same for every choice: a JSON answer always parses.
            choices = [Choice(i, json_text, "stop") for i in range(n)]
        else:
            if last["role"] == "tool":
                text = TOOL_RESULT_PREFIX + content_text(last["content"])
            else:
                text = echo_text(last_user_prompt(messages))
            text, finish = apply_limits(text, limits)
            choices = [Choice(i, _suffixed(text, i), finish) for i in range(n)]
        completion_tokens = sum(count_words(c.text or "") for c in choices)
    return Plan(
        chat=True,
        choices=tuple(choices),
        prompt_tokens=sum(count_words(content_text(m.get("content"))) for m in messages),
        completion_tokens=completion_tokens,
        stream=stream,
        include_usage=include_usage,
    )


def render_answer(plan: Plan, response_id: str, created: int) -> dict[str, Any]:
    """The one-piece JSON answer (``chat.completion`` or ``text_completion``) of a serverless plan."""
    choices: list[dict[str, Any]] = []
    for c in plan.choices:
        if plan.chat:
            message: dict[str, Any] = {"role": "assistant", "content": c.text}
            if c.tool_calls:
                message["tool_calls"] = list(c.tool_calls)
            choices.append({"index": c.index, "message": message, "finish_reason": c.finish_reason})
        else:
            choices.append({"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None})
    return {
        "id": response_id,
        "object": "chat.completion" if plan.chat else "text_completion",
        "created": created,
        "model": MODEL_NAME,
        "choices": choices,
        "usage": plan.usage(),
    }


def render_chunks(plan: Plan, response_id: str, created: int) -> Iterator[dict[str, Any]]:
    """The SSE chunks of a streaming serverless plan, in order (without the final ``[DONE]``).

    Chat: a role delta, one content delta per word (or a tool call: id and name, then the arguments in two
    pieces), then an empty delta with the finish reason, for each choice in turn. Completions: one text
    chunk per word, then an empty text with the finish reason. Then, if asked, a usage chunk with no choices.
    """
    kind = "chat.completion.chunk" if plan.chat else "text_completion"

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": response_id, "object": kind, "created": created, "model": MODEL_NAME, "choices": [choice]}

    for c in plan.choices:
        if not plan.chat:
            for piece in split_pieces(c.text or ""):
                yield chunk({"index": c.index, "text": piece, "finish_reason": None, "logprobs": None})
            yield chunk({"index": c.index, "text": "", "finish_reason": c.finish_reason, "logprobs": None})
            continue
        yield chunk({"index": c.index, "delta": {"role": "assistant"}, "finish_reason": None})
        for k, call in enumerate(c.tool_calls):
            function = call["function"]
            head = {
                "index": k,
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
            yield chunk({"index": c.index, "delta": {"tool_calls": [head]}, "finish_reason": None})
            arguments = function["arguments"]
            half = len(arguments) // 2
            for part in (arguments[:half], arguments[half:]):
                delta = {"tool_calls": [{"index": k, "function": {"arguments": part}}]}
                yield chunk({"index": c.index, "delta": delta, "finish_reason": None})
        for piece in split_pieces(c.text or ""):
            yield chunk({"index": c.index, "delta": {"content": piece}, "finish_reason": None})
        yield chunk({"index": c.index, "delta": {}, "finish_reason": c.finish_reason})
    if plan.include_usage:
        yield {
            "id": response_id,
            "object": kind,
            "created": created,
            "model": MODEL_NAME,
            "choices": [],
            "usage": plan.usage(),
        }
