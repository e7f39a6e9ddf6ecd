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
    from azml_client._models._persist import load as load_config  # cattrs is imported only by those who load

    return load_config(path, api_key, **overrides)
