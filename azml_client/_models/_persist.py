"""Saving a model's configuration to JSON or YAML and loading it back; keys and tokens are never written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
import orjson
from cattrs.v import format_exception

from azml_client._config import ApiType, RetryPolicy, Timeout
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import registered_name

if TYPE_CHECKING:
    from azml_client._models._base import ModelBase
    from azml_client._models._chat import ChatModel
    from azml_client._models._llm import LLM

__all__ = ["CONFIG_VERSION", "ModelConfig", "load", "save_model"]

#: The version of the saved-config format.
CONFIG_VERSION = 1


@attrs.frozen(slots=True)
class ModelConfig:
    """Everything needed to rebuild a model, and nothing secret."""

    kind: Literal["llm", "chat"]
    endpoint_url: str
    api_type: ApiType = ApiType.dedicated
    deployment_name: str | None = None
    formatter: str = "gpt2"
    legacy_escaping: bool = False
    model_kwargs: dict[str, Any] = attrs.Factory(dict)
    timeout: Timeout | None = None
    retry: RetryPolicy | None = None
    max_connections: int | None = None
    max_concurrency: int | None = None
    azml_client_config: int = CONFIG_VERSION


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_unstructure_hook(ApiType, lambda value: value.value)
    converter.register_structure_hook(ApiType, lambda value, _: ApiType.parse(value))
    converter.register_unstructure_hook_func(
        lambda cls: cls is frozenset or getattr(cls, "__origin__", None) is frozenset, sorted
    )
    converter.register_structure_hook_func(
        lambda cls: cls == dict[str, Any], lambda value, _: _expect_mapping(value, "model_kwargs")
    )
    return converter


def _expect_mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{what} must be a mapping, got {type(value).__name__}")
    return dict(value)


_CONVERTER = _converter()


def config_of(model: ModelBase[Any, Any]) -> ModelConfig:
    """Describe ``model`` as a :class:`ModelConfig`."""
    from azml_client._models._chat import ChatModel

    name = registered_name(model.formatter)
    if name is None:
        raise ConfigurationError(
            f"formatter {type(model.formatter).__name__} is not registered, so a saved config could not name it: "
            "register it with @azml_client.register_formatter('name') (or an 'azml_client.formatters' entry point)"
        )
    client = model.client
    return ModelConfig(
        kind="chat" if isinstance(model, ChatModel) else "llm",
        endpoint_url=client.endpoint_url,
        api_type=client.api_type,
        deployment_name=client.deployment_name,
        formatter=name,
        legacy_escaping=bool(getattr(model.formatter, "legacy_escaping", False)),
        model_kwargs=dict(model.model_kwargs),
        timeout=client.timeout,
        retry=client.retry,
        max_connections=client.max_connections,
        max_concurrency=client.max_concurrency,
    )


def save_model(model: ModelBase[Any, Any], path: Path) -> None:
    """Write ``model``'s config to ``path`` (``.json``, or ``.yaml`` / ``.yml`` with PyYAML)."""
    data = _CONVERTER.unstructure(config_of(model))
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        yaml = _yaml()
        text = yaml.safe_dump(data, sort_keys=False).encode()
    elif suffix == ".json":
        try:
            text = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
        except TypeError as exc:
            raise ConfigurationError(f"model_kwargs cannot be saved as JSON: {exc}") from None
    else:
        raise ConfigurationError(f"save to a .json or .yaml file, not {path.name!r}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text)
    tmp.replace(path)


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigurationError("YAML configs need PyYAML: pip install 'azml-client[yaml]'") from None
    return yaml


def read_config(path: str | Path) -> ModelConfig:
    """Read and validate a saved config.

    Raises:
        ConfigurationError: the file is missing, not JSON/YAML, or does not describe a model.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = _yaml()
            data = yaml.safe_load(raw)
        else:
            data = orjson.loads(raw)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"config {str(path)!r} is not valid {path.suffix or 'JSON'}: {exc}") from None
    return config_from_dict(data, source=str(path))


def config_from_dict(data: Any, source: str = "config") -> ModelConfig:
    """Validate a decoded config; any problem is a ConfigurationError naming what is wrong."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source} must hold a mapping, got {type(data).__name__}")
    if "api_key" in data:
        raise ConfigurationError(f"{source} holds an api_key; keys are never read from config files")
    _check_keys(data, source)
    try:
        return _CONVERTER.structure(dict(data), ModelConfig)
    except ConfigurationError:
        raise
    except Exception as exc:
        messages = (
            cattrs.transform_error(exc, path="config", format_exception=_describe)
            if isinstance(exc, cattrs.BaseValidationError)
            else [str(exc)]
        )
        raise ConfigurationError(f"{source} is not a valid azml-client config: {'; '.join(messages)}") from None


def _check_keys(data: Any, source: str) -> None:
    """Refuse mappings with keys that are not str anywhere in ``data`` (YAML allows ``{1: x}`` or ``{null: x}``),
    and containers that hold themselves (YAML anchors can build those).

    JSON cannot encode either, and cattrs cannot even describe a non-str key in an error, so they are named
    here. The walk is iterative (no nesting depth overflows the stack) and visits a container shared through
    YAML aliases once (no "billion laughs" blow-up).
    """
    stack: list[tuple[Any, str, bool]] = [(data, source, False)]
    on_path: set[int] = set()
    checked: set[int] = set()
    while stack:
        value, where, leaving = stack.pop()
        if leaving:
            on_path.discard(id(value))
            checked.add(id(value))
            continue
        if not isinstance(value, (Mapping, list)) or id(value) in checked:
            continue
        if id(value) in on_path:
            raise ConfigurationError(f"{where} holds itself (a YAML anchor loop)")
        on_path.add(id(value))
        stack.append((value, where, True))
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ConfigurationError(f"{where} has a key that is not a string: {key!r}")
                stack.append((item, f"{where}.{key}", False))
        else:
            stack.extend((item, f"{where}[{index}]", False) for index, item in enumerate(value))


def _describe(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ConfigurationError):
        return str(exc)
    return format_exception(exc, type_)


def load(path: str | Path, api_key: str | None = None, **overrides: Any) -> LLM | ChatModel:
    """Rebuild the LLM or ChatModel that :meth:`save` wrote.

    ``api_key`` (or env ``AZUREML_ENDPOINT_API_KEY``, or ``credential=``) supplies the secret the file never
    holds; ``overrides`` replace saved settings (any LLM / ChatModel / EndpointClient keyword).
    """
    from azml_client._formatters import get_formatter
    from azml_client._models._chat import ChatModel
    from azml_client._models._llm import LLM

    config = read_config(path)
    options: dict[str, Any] = {
        "endpoint_url": config.endpoint_url,
        "api_type": config.api_type,
        "deployment_name": config.deployment_name,
        "model_kwargs": config.model_kwargs,
        "timeout": config.timeout,
        "retry": config.retry,
    }
    if config.max_connections is not None:
        options["max_connections"] = config.max_connections
    if config.max_concurrency is not None:
        options["max_concurrency"] = config.max_concurrency
    if "formatter" not in overrides:
        extra = {"legacy_escaping": True} if config.legacy_escaping else {}
        options["formatter"] = get_formatter(config.formatter, **extra)
    options.update(overrides)
    cls = ChatModel if config.kind == "chat" else LLM
    return cls(api_key=api_key, **options)
