"""The built-in completion formatters: gpt2, hf, dolly (dedicated) and openai (dedicated and serverless).

See ``wire-formats.md`` for the bytes each one sends and reads. With ``legacy_escaping=True`` they send the
seed's exact bytes instead: the prompt escaped by hand, wrapped in literal quotes on dedicated endpoints, and
encoded by ``json.dumps`` with its default separators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import _openai
from azml_client._formatters._base import ContentFormatterBase, DeprecatedFormatterAlias, _coerce_api_type
from azml_client._formatters._lookup import register_formatter
from azml_client._types import Completion, CompletionChoice, CompletionChunk, defer_raw

__all__ = [
    "CustomOpenAIContentFormatter",
    "DollyContentFormatter",
    "GPT2ContentFormatter",
    "HFContentFormatter",
    "LlamaContentFormatter",
    "OSSContentFormatter",
]

_DEDICATED_ONLY: frozenset[ApiType] = frozenset({ApiType.dedicated})
_BOTH: frozenset[ApiType] = frozenset({ApiType.dedicated, ApiType.serverless})


def _as_dict(model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs as a dict orjson can encode (never mutated: no copy needed when it already is one)."""
    return model_kwargs if type(model_kwargs) is dict else dict(model_kwargs)


def _single(text: str, data: Any) -> Completion:
    return Completion(text=text, raw=data, choices=(CompletionChoice(text),))


def _gpt2_text(data: Any) -> str | None:
    """``[{"0": text}]`` -> text."""
    if isinstance(data, list) and data:
        first = data[0]
        if isinstance(first, dict):
            text = first.get("0")
            if isinstance(text, str):
                return text
    return None


class _BuiltinCompletionFormatter(ContentFormatterBase):
    """A built-in: a fast ``_build`` / ``_parse`` pair, with the seed's API on top of it.

    A user subclass that overrides ``format_request_payload`` or ``format_response_payload`` gets its
    override called, as the seed did.
    """

    def _build(self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool) -> bytes:
        raise NotImplementedError

    def _parse(self, body: bytes, api_type: ApiType, status: int) -> Completion:
        raise NotImplementedError

    def build_request(
        self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, *, stream: bool = False
    ) -> bytes:
        """Return the request body for one prompt (see the class docstring for its bytes).

        Raises:
            ConfigurationError: an api type the formatter does not speak, a stream asked of a dedicated
                endpoint, a prompt that is not a str, or model_kwargs that are not JSON values.
        """
        if self._overrides_request:
            return super().build_request(prompt, model_kwargs, api_type, stream=stream)
        return self._build(prompt, model_kwargs, api_type, stream)

    def parse_response(self, body: bytes, api_type: ApiType, *, status: int = 200) -> Completion:
        """Return the :class:`Completion` in an answer body.

        Raises:
            ResponseFormatError: the body does not fit the formatter; the hint says what it looks like.
        """
        if self._overrides_response:
            return super().parse_response(body, api_type, status=status)
        return self._parse(body, api_type, status)

    def format_request_payload(
        self, prompt: str, model_kwargs: dict[str, Any], api_type: ApiType = ApiType.dedicated
    ) -> bytes:
        """Return the request body for ``prompt`` (the seed's API; same bytes as :meth:`build_request`)."""
        return self._build(prompt, model_kwargs, _coerce_api_type(api_type), False)

    def format_response_payload(self, output: bytes, api_type: ApiType = ApiType.dedicated) -> str:
        """Return the generated text of the answer ``output`` (the seed's API)."""
        return self._parse(output, _coerce_api_type(api_type), 200).text

    def _check_dedicated(self, api_type: ApiType, stream: bool = False) -> None:
        if api_type != ApiType.dedicated:
            self.check_api_type(api_type)
        if stream:
            raise ConfigurationError(f"formatter {self.name!r} cannot stream: dedicated endpoints answer in one piece")

    def parse_stream_event(self, data: str, api_type: ApiType) -> CompletionChunk | None:
        """Raise ConfigurationError: a dedicated endpoint does not stream (serverless: an OpenAI chunk)."""
        self.check_api_type(api_type)
        return super().parse_stream_event(data, api_type)

    def _parse_zero_key(self, body: bytes, api_type: ApiType, status: int, kind: str) -> Completion:
        """Read the dedicated ``[{"0": text}]`` answer that gpt2 and openai (dedicated) share."""
        self._check_dedicated(api_type)
        data = self._loads(body, status, api_type)
        text = _gpt2_text(data)
        if text is None:
            raise self._response_error(
                f'expected the {kind} answer `[{{"0": text}}]`', body, status, data=data, api_type=api_type
            )
        return _single(text, data)


@register_formatter("gpt2", deprecated_aliases=("oss",))
class GPT2ContentFormatter(_BuiltinCompletionFormatter):
    """GPT-2 and other catalog models on a dedicated endpoint.

    Sends ``{"inputs": {"input_string": [prompt]}, "parameters": {model_kwargs}}`` and reads ``[{"0": text}]``.
    """

    supported_api_types: ClassVar[frozenset[ApiType]] = _DEDICATED_ONLY

    def _build(self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool) -> bytes:
        """Return ``{"inputs": {"input_string": [prompt]}, "parameters": {model_kwargs}}``."""
        self._check_dedicated(api_type, stream)
        self._check_prompt(prompt)
        if self.legacy_escaping:
            prompt = self._legacy_prompt(prompt)
        return self._dumps({"inputs": {"input_string": [prompt]}, "parameters": _as_dict(model_kwargs)})

    def _parse(self, body: bytes, api_type: ApiType, status: int) -> Completion:
        """Read ``[{"0": text}]``."""
        return self._parse_zero_key(body, api_type, status, "gpt2")


class OSSContentFormatter(DeprecatedFormatterAlias, GPT2ContentFormatter, canonical="gpt2"):
    """Deprecated alias of :class:`GPT2ContentFormatter` (formatter name ``oss``); emits a DeprecationWarning."""


@register_formatter("hf")
class HFContentFormatter(_BuiltinCompletionFormatter):
    """Hugging Face text-generation models on a dedicated endpoint.

    Sends ``{"inputs": [prompt], "parameters": {model_kwargs}}`` and reads
    ``[{"0": {"generated_text": text}}]`` or ``[{"generated_text": text}]``.
    Under ``legacy_escaping`` the prompt is wrapped in literal quotes but, as in the seed, not escaped.
    """

    supported_api_types: ClassVar[frozenset[ApiType]] = _DEDICATED_ONLY

    def _build(self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool) -> bytes:
        """Return ``{"inputs": [prompt], "parameters": {model_kwargs}}``."""
        self._check_dedicated(api_type, stream)
        self._check_prompt(prompt)
        if self.legacy_escaping:
            prompt = f'"{prompt}"'  # the seed threw its escaping result away
        return self._dumps({"inputs": [prompt], "parameters": _as_dict(model_kwargs)})

    def _parse(self, body: bytes, api_type: ApiType, status: int) -> Completion:
        """Read ``[{"0": {"generated_text": text}}]`` or ``[{"generated_text": text}]``."""
        self._check_dedicated(api_type)
        data = self._loads(body, status, api_type)
        if isinstance(data, list) and data and isinstance(data[0], dict):
            first = data[0]
            inner = first.get("0")
            text = inner.get("generated_text") if isinstance(inner, dict) else first.get("generated_text")
            if isinstance(text, str):
                return _single(text, data)
        raise self._response_error(
            'expected the hf answer `[{"0": {"generated_text": text}}]` or `[{"generated_text": text}]`',
            body,
            status,
            data=data,
            api_type=api_type,
        )


@register_formatter("dolly")
class DollyContentFormatter(_BuiltinCompletionFormatter):
    """Dolly-v2 on a dedicated endpoint.

    Sends ``{"input_data": {"input_string": [prompt]}, "parameters": {model_kwargs}}`` (parameters beside
    ``input_data``) and reads ``["text"]``.
    """

    supported_api_types: ClassVar[frozenset[ApiType]] = _DEDICATED_ONLY

    def _build(self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool) -> bytes:
        """Return ``{"input_data": {"input_string": [prompt]}, "parameters": {model_kwargs}}``."""
        self._check_dedicated(api_type, stream)
        self._check_prompt(prompt)
        if self.legacy_escaping:
            prompt = self._legacy_prompt(prompt)
        return self._dumps({"input_data": {"input_string": [prompt]}, "parameters": _as_dict(model_kwargs)})

    def _parse(self, body: bytes, api_type: ApiType, status: int) -> Completion:
        """Read ``["text"]``."""
        self._check_dedicated(api_type)
        data = self._loads(body, status, api_type)
        if isinstance(data, list) and data and isinstance(data[0], str):
            return _single(data[0], data)
        raise self._response_error('expected the dolly answer `["text"]`', body, status, data=data, api_type=api_type)


@register_formatter("openai", deprecated_aliases=("llama",))
class CustomOpenAIContentFormatter(_BuiltinCompletionFormatter):
    """Completion models with the OpenAI-style schema, on dedicated and serverless endpoints.

    Dedicated: sends ``{"input_data": {"input_string": [prompt], "parameters": {model_kwargs}}}`` and reads
    ``[{"0": text}]``. Serverless: sends ``{"prompt": prompt, **model_kwargs}`` (plus ``"stream": true`` for a
    stream) and reads the OpenAI completion answer, keeping every choice, the usage and the logprobs.
    """

    supported_api_types: ClassVar[frozenset[ApiType]] = _BOTH

    def _build(self, prompt: str, model_kwargs: Mapping[str, Any], api_type: ApiType, stream: bool) -> bytes:
        """Return the dedicated or the serverless request body for ``prompt``."""
        self._check_prompt(prompt)
        if api_type == ApiType.serverless:
            if "prompt" in model_kwargs:
                raise ConfigurationError("model_kwargs must not contain 'prompt': the prompt is the call's input")
            if self.legacy_escaping:
                prompt = self.escape_special_characters(prompt)
            body: dict[str, Any] = {"prompt": prompt}
            body.update(model_kwargs)
            if stream:
                body["stream"] = True
            return self._dumps(body)
        self._check_dedicated(api_type, stream)
        if self.legacy_escaping:
            prompt = self._legacy_prompt(prompt)
        return self._dumps({"input_data": {"input_string": [prompt], "parameters": _as_dict(model_kwargs)}})

    def _parse(self, body: bytes, api_type: ApiType, status: int) -> Completion:
        """Read ``[{"0": text}]`` (dedicated) or an OpenAI completion answer (serverless)."""
        if api_type == ApiType.serverless:
            data = self._loads(body, status, api_type)
            try:
                completion = _openai.parse_completion_body(data)
            except _openai.MalformedAnswer as exc:
                raise self._malformed(exc, body, status, api_type) from None
            return defer_raw(completion, body)
        return self._parse_zero_key(body, api_type, status, "dedicated")


class LlamaContentFormatter(DeprecatedFormatterAlias, CustomOpenAIContentFormatter, canonical="openai"):
    """Deprecated alias of :class:`CustomOpenAIContentFormatter` (formatter name ``llama``)."""
