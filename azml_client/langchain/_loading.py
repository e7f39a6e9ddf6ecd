"""Loading what :meth:`AzureMLOnlineEndpoint.save` (or the chat model's) wrote: the seed's ``load_llm``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azml_client._exceptions import ConfigurationError
from azml_client.langchain._chat import AzureMLChatOnlineEndpoint
from azml_client.langchain._llm import AzureMLOnlineEndpoint

__all__ = ["load_llm"]

_CLASSES: dict[str, type[AzureMLOnlineEndpoint] | type[AzureMLChatOnlineEndpoint]] = {
    "azureml_endpoint": AzureMLOnlineEndpoint,
    "azureml_chat_endpoint": AzureMLChatOnlineEndpoint,
}

_SECRET_KEYS = ("endpoint_api_key", "api_key", "credential")


def load_llm(
    path: str | Path | None = None, *, file: str | Path | None = None, **overrides: Any
) -> AzureMLOnlineEndpoint | AzureMLChatOnlineEndpoint:
    """Rebuild the model a ``save()`` wrote to ``path`` (``.json``, or ``.yaml`` / ``.yml``).

    ``file=`` is accepted as the seed's name for ``path``.

    The file never holds the key: it comes from ``AZUREML_ENDPOINT_API_KEY`` or from
    ``overrides`` (``endpoint_api_key=...``), which replace any saved setting. A config saved by the seed
    (``deployment_name`` and ``model_kwargs`` only) loads too, the rest coming from the environment.

    Raises:
        azml_client.ConfigurationError: the file is missing or unreadable, holds a key, or describes no
            Azure ML endpoint model.
    """
    source = path if path is not None else file
    if source is None or (path is not None and file is not None):
        raise ConfigurationError("load_llm needs the config's path once (positionally, as path= or as file=)")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigurationError(f"config {str(path)!r} is not valid {path.suffix or 'JSON'}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"config {str(path)!r} must hold a mapping, got {type(data).__name__}")
    config = dict(data)
    kind = config.pop("_type", "azureml_endpoint")
    cls = _CLASSES.get(kind)
    if cls is None:
        raise ConfigurationError(
            f"config {str(path)!r} describes a {kind!r} model; load_llm rebuilds {', '.join(sorted(_CLASSES))}"
        )
    secrets = [key for key in _SECRET_KEYS if key in config]
    if secrets:
        raise ConfigurationError(f"config {str(path)!r} holds {secrets[0]}; keys are never read from config files")
    config.update(overrides)
    return cls(**config)
