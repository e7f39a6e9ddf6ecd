"""The model layer: ``LLM`` and ``ChatModel`` compose a formatter with the transport; save and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azml_client._models._chat import ChatModel
from azml_client._models._llm import LLM

__all__ = ["LLM", "ChatModel", "load"]


def load(path: str | Path, api_key: str | None = None, **overrides: Any) -> LLM | ChatModel:
    """Rebuild the LLM or ChatModel that ``save()`` wrote to ``path`` (JSON, or YAML with PyYAML).

    ``api_key`` (or env ``AZUREML_ENDPOINT_API_KEY``, or ``credential=``) supplies the secret the file never
    holds; ``overrides`` replace saved settings (any LLM / ChatModel / EndpointClient keyword).

    Raises:
        ConfigurationError: the file is missing, unreadable, or not a valid config.
    """
    from azml_client._formatters import get_formatter
    from azml_client._models._persist import read_config  # cattrs is imported only by those who load

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
    cls: type[LLM | ChatModel] = ChatModel if config.kind == "chat" else LLM
    return cls(api_key=api_key, **options)
