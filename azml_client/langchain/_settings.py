"""What both LangChain adapters share: the seed's fields and env vars, the lazily built core model, saving."""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import attrs
from langchain_core.language_models.base import LangSmithParams
from langchain_core.utils import from_env, secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from azml_client._config import ApiType, RetryPolicy, Timeout, TimeoutLike
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import (
    ContentFormatterBase,
    default_formatter_name,
    get_formatter,
    registered_name,
    resolve_formatter,
)
from azml_client._models._base import ModelBase
from azml_client._transport._urls import parse_endpoint_url

__all__ = ["AzureMLEndpointApiType", "EndpointSettings", "PreparedCall"]

#: Guards giving a copied adapter a slot of its own.
_COPY_LOCK: Final = threading.Lock()

#: Named fields that are also model parameters: set, they go into every request body.
_STANDARD_PARAMS: Final = ("temperature", "max_tokens", "stop")

#: Fields with an env var behind them: ``None`` for one of them means "not given".
_ENV_BACKED: Final = frozenset({"endpoint_url", "endpoint_api_key", "api_key", "endpoint_api_type", "deployment_name"})

#: Body keys that belong to the call's input, never to its parameters.
_INPUT_KEYS: Final = ("prompt", "messages")

#: The ``model_kwargs`` keys that limit the answer's length, in the order tracing looks for one.
_TOKEN_KEYS: Final = ("max_tokens", "max_new_tokens", "max_completion_tokens")


class AzureMLEndpointApiType(str, enum.Enum):
    """The kind of Azure ML endpoint, under the seed's name.

    ``dedicated``: a managed online endpoint (``/score``, a model-specific schema). ``serverless``: a
    models-as-a-service endpoint (OpenAI-compatible routes). ``realtime`` is the seed's deprecated name of
    ``dedicated``: it is accepted, warns, and is stored as ``dedicated``.
    """

    dedicated = "dedicated"
    realtime = "realtime"
    serverless = "serverless"

    def __str__(self) -> str:
        return self.value

    @property
    def api_type(self) -> ApiType:
        """The same kind as azml-client's :class:`~azml_client.ApiType` (``realtime`` is dedicated)."""
        return ApiType.serverless if self is AzureMLEndpointApiType.serverless else ApiType.dedicated


def _api_type_from_env() -> AzureMLEndpointApiType:
    raw = from_env("AZUREML_ENDPOINT_API_TYPE", default="dedicated")()
    return AzureMLEndpointApiType(ApiType.parse(raw or "dedicated").value)


class _CoreSlot:
    """Where an adapter keeps its core model, built on first use and rebuilt when the settings change.

    A copy of an adapter (``model_copy``, ``copy.deepcopy``, pickling) starts with an empty slot of its own.
    """

    __slots__ = ("adapted", "core", "formatter", "key", "lock", "owner")

    def __init__(self, owner: int = 0) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.core: ModelBase[Any, Any] | None = None
        self.key: tuple[Any, ...] | None = None
        self.formatter: tuple[Any, ContentFormatterBase] | None = None
        self.adapted: tuple[ContentFormatterBase, ContentFormatterBase] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _CoreSlot:
        return _CoreSlot()

    def __reduce__(self) -> tuple[type[_CoreSlot], tuple[()]]:
        return (_CoreSlot, ())


@attrs.frozen(slots=True)
class PreparedCall:
    """One call's request parameters: the model kwargs of the body and the transport timeout."""

    body: dict[str, Any]
    timeout: TimeoutLike | None = None


class EndpointSettings(BaseModel):
    """The seed's ``AzureMLBaseEndpoint`` fields, plus retries, a concurrency cap and the standard parameters.

    Settings left unset come from the seed's environment variables: ``AZUREML_ENDPOINT_URL``,
    ``AZUREML_ENDPOINT_API_KEY``, ``AZUREML_ENDPOINT_API_TYPE``, ``AZUREML_DEPLOYMENT_NAME`` (and
    ``AZUREML_TIMEOUT`` for the timeout).
    """

    endpoint_url: str = Field(default_factory=from_env("AZUREML_ENDPOINT_URL", default=""))
    """The endpoint URL (env ``AZUREML_ENDPOINT_URL``): ``.../score`` for a dedicated endpoint, a
    ``.../v1/chat/completions``, ``.../v1/completions`` or base URL for a serverless one."""

    endpoint_api_type: AzureMLEndpointApiType = Field(default_factory=_api_type_from_env)
    """``dedicated`` (default), ``serverless``, or the deprecated ``realtime`` (env ``AZUREML_ENDPOINT_API_TYPE``)."""

    endpoint_api_key: SecretStr = Field(
        default_factory=secret_from_env("AZUREML_ENDPOINT_API_KEY", default=""), alias="api_key"
    )
    """The endpoint key (env ``AZUREML_ENDPOINT_API_KEY``); also accepted as ``api_key``. Never saved or shown."""

    deployment_name: str = Field(default_factory=from_env("AZUREML_DEPLOYMENT_NAME", default=""))
    """Pins requests to one deployment with the ``azureml-model-deployment`` header (env
    ``AZUREML_DEPLOYMENT_NAME``); empty follows the endpoint's traffic split."""

    content_formatter: Any = None
    """A formatter instance, a formatter class, or a registered name (``"gpt2"``, ``"openai-chat"``...), or
    the ``{"name": ..., "legacy_escaping": True}`` a saved config holds; ``None`` picks the default for the
    model kind and api type (``gpt2`` dedicated / ``openai`` serverless completion, ``openai-chat`` chat)."""

    model_kwargs: dict[str, Any] | None = None
    """Parameters sent with every request (``temperature``, ``max_new_tokens``, ``top_p``...)."""

    timeout: float | Timeout | None = None
    """Seconds for the whole call (retries included), or an :class:`azml_client.Timeout`; ``None`` uses
    env ``AZUREML_TIMEOUT`` or the SDK default."""

    max_retries: int = Field(default=2, ge=0)
    """Retries after a connection error, a timeout, 408, 429 or 5xx, with backoff and ``Retry-After``."""

    max_concurrency: int | None = Field(default=None, ge=1)
    """The most requests in flight at once through this model (batches included); ``None`` = SDK default."""

    credential: Any = Field(default=None, exclude=True)
    """Entra ID auth instead of a key: an azure-core (async) token credential or a callable returning a token."""

    temperature: float | None = None
    """Sampling temperature sent with every request when set."""

    max_tokens: int | None = None
    """Token limit sent (as ``max_tokens``) with every request when set."""

    stop: list[str] | None = None
    """Stop sequences sent with every request when set (a call's ``stop`` replaces them)."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=(), arbitrary_types_allowed=True)

    _slot: _CoreSlot = PrivateAttr(default_factory=_CoreSlot)

    #: ``"completion"`` or ``"chat"``: which formatters fit and which core model is built.
    _kind: ClassVar[Literal["completion", "chat"]]

    # ------------------------------------------------------------------ validation

    @model_validator(mode="before")
    @classmethod
    def _none_means_unset(cls, data: Any) -> Any:
        """``endpoint_api_key=os.getenv(...)`` may pass None: like the seed, fall back to the env var then."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None or key not in _ENV_BACKED}
        return data

    @field_validator("endpoint_api_type", mode="before")
    @classmethod
    def _parse_api_type(cls, value: Any) -> AzureMLEndpointApiType:
        if isinstance(value, AzureMLEndpointApiType) and value is not AzureMLEndpointApiType.realtime:
            return value
        raw = value.value if isinstance(value, enum.Enum) else value
        return AzureMLEndpointApiType(ApiType.parse(raw).value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return Timeout.parse(value)
        if isinstance(value, str):
            return Timeout.parse(value).total
        return value

    def __init__(self, **data: Any) -> None:
        """Validate the fields, then the endpoint settings (URL, formatter, api type).

        Raises:
            pydantic.ValidationError: a field has the wrong type.
            azml_client.ConfigurationError: no or a bad endpoint URL, a formatter that does not fit the model
                kind or the api type, or a parameter set both as a field and in ``model_kwargs``.
        """
        super().__init__(**data)
        self._slot = _CoreSlot(id(self))
        self._check_settings()

    def _check_settings(self) -> None:
        parse_endpoint_url(self.endpoint_url, self.endpoint_api_type.api_type)
        formatter = self._core_formatter()
        if formatter.kind != self._kind:
            if self._kind == "chat":
                wanted = "a chat formatter (CustomOpenAIChatContentFormatter or MistralChatContentFormatter)"
                other = "AzureMLOnlineEndpoint"
            else:
                wanted, other = "a completion formatter", "AzureMLChatOnlineEndpoint"
            raise ConfigurationError(
                f"{type(self).__name__} needs {wanted}; {formatter.name!r} is a {formatter.kind} formatter, for {other}"
            )
        formatter.check_api_type(self.endpoint_api_type.api_type)
        model_kwargs = self.model_kwargs or {}
        if "timeout" in model_kwargs:
            raise ConfigurationError("timeout is a transport setting: pass timeout=, not model_kwargs={'timeout': ...}")
        for key in _INPUT_KEYS:
            if key in model_kwargs:
                raise ConfigurationError(f"model_kwargs must not contain {key!r}: it is the call's input")
        for name in _STANDARD_PARAMS:
            if getattr(self, name) is not None and name in model_kwargs:
                raise ConfigurationError(f"{name} is set both as a field and in model_kwargs: set it once")

    # ------------------------------------------------------------------ the core model

    def _default_formatter(self) -> str:
        """The registered name used when ``content_formatter`` is None (the formatter layer's rule)."""
        return default_formatter_name(self._kind, self.endpoint_api_type.api_type)

    def _formatter(self) -> ContentFormatterBase:
        """The formatter instance ``content_formatter`` names (resolved once per value)."""
        spec = self.content_formatter
        slot = self._own_slot()
        cached = slot.formatter
        if cached is not None and cached[0] is spec:
            return cached[1]
        if spec is None:
            formatter = resolve_formatter(self._default_formatter())
        elif isinstance(spec, Mapping):
            options = dict(spec)
            name = options.pop("name", None)
            if not isinstance(name, str):
                raise ConfigurationError(f"a content_formatter mapping needs a 'name' string, got {spec!r}")
            formatter = get_formatter(name, **options)
        else:
            formatter = resolve_formatter(spec)
        slot.formatter = (spec, formatter)
        return formatter

    def _core_formatter(self) -> ContentFormatterBase:
        """The formatter the core model gets (and that is checked): ``_formatter()`` unless a subclass adapts it.

        Saving names ``_formatter()``, the user's own.
        """
        return self._formatter()

    def _own_slot(self) -> _CoreSlot:
        slot = self._slot
        if slot.owner != id(self):  # a copy still holding its original's slot
            with _COPY_LOCK:
                slot = self._slot
                if slot.owner != id(self):
                    slot = self._slot = _CoreSlot(id(self))
        return slot

    def _settings_key(self) -> tuple[Any, ...]:
        return (
            self.endpoint_url,
            self.endpoint_api_type,
            self.endpoint_api_key.get_secret_value(),
            self.deployment_name,
            self.timeout,
            self.max_retries,
            self.max_concurrency,
            self.credential,
            self.content_formatter,
        )

    def _build_core(self, formatter: ContentFormatterBase, options: dict[str, Any]) -> ModelBase[Any, Any]:
        """Build the core model (an :class:`azml_client.LLM` or :class:`azml_client.ChatModel`)."""
        raise NotImplementedError

    def _core(self) -> ModelBase[Any, Any]:
        """The core model this adapter delegates to, built on first use (and again after a settings change)."""
        slot = self._own_slot()
        key = self._settings_key()
        core = slot.core
        if core is not None and slot.key == key:
            return core
        with slot.lock:
            if slot.core is None or slot.key != key:
                key_value = self.endpoint_api_key.get_secret_value()
                options: dict[str, Any] = {
                    "endpoint_url": self.endpoint_url,
                    "api_key": key_value or None,
                    "api_type": self.endpoint_api_type.api_type,
                    "deployment_name": self.deployment_name,
                    "timeout": self.timeout,
                    "retry": RetryPolicy(max_retries=self.max_retries),
                    "max_batch_concurrency": self.max_concurrency,
                    "credential": self.credential,
                }
                if self.max_concurrency is not None:
                    options["max_concurrency"] = self.max_concurrency
                slot.core = self._build_core(self._core_formatter(), options)
                slot.key = key
            return slot.core

    # ------------------------------------------------------------------ per call

    def _prepare(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> PreparedCall:
        """Merge the parameters of one call, never mutating the model's own.

        Order: ``model_kwargs``, the standard fields, then the call's kwargs; a call's ``stop`` replaces the
        field. A call-time ``timeout`` is a transport setting and never goes into the body.
        """
        body: dict[str, Any] = dict(self.model_kwargs or {})
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        call = dict(kwargs)
        timeout = call.pop("timeout", None)
        call.pop("stream", None)  # whether to stream is decided before the adapter is called
        body.update(call)
        for key in _INPUT_KEYS:
            if key in body:
                raise ConfigurationError(f"{key!r} is the call's input, not a parameter: remove it from the kwargs")
        stops = stop if stop is not None else self.stop
        if stops:
            body["stop"] = list(stops)
        elif stop is not None:
            body.pop("stop", None)
        return PreparedCall(body, timeout)

    # ------------------------------------------------------------------ configuration

    def _formatter_config(self, *, strict: bool) -> str | dict[str, Any]:
        formatter = self._formatter()
        name = registered_name(formatter)
        if name is None:
            if strict:
                raise ConfigurationError(
                    f"formatter {type(formatter).__name__} is not registered, so a saved config could not name "
                    "it: register it with @azml_client.register_formatter('name') before saving"
                )
            return type(formatter).__name__
        if formatter.legacy_escaping:
            return {"name": name, "legacy_escaping": True}
        return name

    def _config(self, *, strict: bool = False) -> dict[str, Any]:
        """Everything needed to rebuild this model, and nothing secret (no key, no credential)."""
        timeout: Any = self.timeout
        if isinstance(timeout, Timeout):
            timeout = {"total": timeout.total, "connect": timeout.connect, "read": timeout.read}
        config: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "endpoint_api_type": self.endpoint_api_type.value,
            "deployment_name": self.deployment_name,
            "content_formatter": self._formatter_config(strict=strict),
            "model_kwargs": dict(self.model_kwargs or {}),
            "timeout": timeout,
            "max_retries": self.max_retries,
            "max_concurrency": self.max_concurrency,
        }
        for name in _STANDARD_PARAMS:
            value = getattr(self, name)
            if value is not None:
                config[name] = value
        return config

    def save(self, file_path: str | Path) -> None:
        """Write this model's full configuration (never the key) to a ``.json`` or ``.yaml`` file.

        :func:`azml_client.langchain.load_llm` rebuilds the model from it; the key comes from
        ``AZUREML_ENDPOINT_API_KEY`` or ``load_llm(path, endpoint_api_key=...)``.

        Raises:
            azml_client.ConfigurationError: another file suffix, an unregistered formatter, or model_kwargs
                that are not JSON values.
        """
        path = Path(file_path)
        data = {**self._config(strict=True), "_type": self._llm_type_name()}
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                text = json.dumps(data, indent=4) + "\n"
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"the config cannot be saved as JSON: {exc}") from None
        elif suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            raise ConfigurationError(f"save to a .json or .yaml file, not {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def _llm_type_name(self) -> str:
        raise NotImplementedError

    def _ls_params(
        self, kind: Literal["chat", "llm"], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> LangSmithParams:
        """LangChain's standard tracing parameters, from a call's kwargs, the fields and ``model_kwargs``."""
        params = LangSmithParams(ls_provider="azureml", ls_model_name=self._model_name(kwargs), ls_model_type=kind)
        model_kwargs = self.model_kwargs or {}
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is None:
            temperature = model_kwargs.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            params["ls_temperature"] = float(temperature)
        for value in (kwargs.get("max_tokens"), self.max_tokens, *(model_kwargs.get(k) for k in _TOKEN_KEYS)):
            if isinstance(value, int) and not isinstance(value, bool):
                params["ls_max_tokens"] = value
                break
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    def _model_name(self, kwargs: Mapping[str, Any]) -> str:
        """The model name for tracing: a call's ``model``, ``model_kwargs['model']``, the deployment, or a default."""
        for candidate in (kwargs.get("model"), (self.model_kwargs or {}).get("model"), self.deployment_name):
            if isinstance(candidate, str) and candidate:
                return candidate
        return "azureml-endpoint"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the connections and the worker thread of the core model (it is rebuilt if used again)."""
        slot = self._own_slot()
        with slot.lock:
            core, slot.core, slot.key = slot.core, None, None
        if core is not None:
            core.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        slot = self._own_slot()
        with slot.lock:
            core, slot.core, slot.key = slot.core, None, None
        if core is not None:
            await core.aclose()
