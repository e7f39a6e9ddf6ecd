"""Saving a model's configuration to JSON or YAML and loading it back; keys and tokens are never written."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
import orjson
from cattrs.v import format_exception

from azml_client._config import ApiType, RetryPolicy, Timeout
from azml_client._exceptions import ConfigurationError

__all__ = ["CONFIG_VERSION", "ModelConfig", "config_from_dict", "read_config", "write_config"]

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
    azml_client_config: int = attrs.field(default=CONFIG_VERSION)

    @azml_client_config.validator
    def _check_version(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value != CONFIG_VERSION:
            newer = " (written by a newer azml-client: upgrade to read it)" if value > CONFIG_VERSION else ""
            raise ConfigurationError(
                f"azml_client_config is version {value}; this azml-client reads {CONFIG_VERSION}{newer}"
            )


def _exactly(kind: type, name: str) -> Any:
    """A structure hook that takes a value of ``kind`` as it is and refuses anything else.

    cattrs' defaults convert: ``bool("false")`` is True, ``int(10.9)`` is 10. A hand-edited config must mean
    what it says, so nothing is converted (but an int is a fine float).
    """

    def structure(value: Any, _: Any) -> Any:
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(value, accepted) and (kind is bool or not isinstance(value, bool)):
            return float(value) if kind is float else value  # type: ignore[arg-type]  # checked just above
        raise ConfigurationError(f"expected {name}, got {value!r}")

    return structure


def _status_set(value: Any, _: Any) -> frozenset[int]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError(f"expected a list of HTTP statuses, got {value!r}")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigurationError(f"expected HTTP statuses (ints 100-599), got {status!r}")
    return frozenset(value)


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind, name in ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "a string")):
        converter.register_structure_hook(kind, _exactly(kind, name))
    converter.register_structure_hook_func(lambda cls: cls == frozenset[int], _status_set)
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


def write_config(config: ModelConfig, path: Path) -> None:
    """Write ``config`` to ``path`` (``.json``, or ``.yaml`` / ``.yml`` with PyYAML), atomically."""
    data = _CONVERTER.unstructure(config)
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
