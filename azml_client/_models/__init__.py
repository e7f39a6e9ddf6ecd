"""The model layer: ``LLM`` and ``ChatModel`` compose a formatter with the transport; save and load."""

from azml_client._models._chat import ChatModel
from azml_client._models._llm import LLM
from azml_client._models._persist import ModelConfig, load

__all__ = ["LLM", "ChatModel", "ModelConfig", "load"]
