"""LangChain adapter: drop-in replacements for LangChain's ``AzureMLOnlineEndpoint`` / ``AzureMLChatOnlineEndpoint``.

Switching from ``langchain_community`` takes one changed import line::

    # from langchain_community.llms.azureml_endpoint import AzureMLOnlineEndpoint, GPT2ContentFormatter
    from azml_client.langchain import AzureMLOnlineEndpoint, GPT2ContentFormatter

The classes take the same fields and environment variables, and run on azml-client's async core:
concurrent batches, retries, SSE streaming with usage, tool calling, structured output and typed errors.
This module needs ``langchain-core`` (``pip install 'azml-client[langchain]'``); ``import azml_client``
alone never imports LangChain.

The chat formatters exported here (``CustomOpenAIChatContentFormatter``, ``LlamaChatContentFormatter``,
``MistralChatContentFormatter``) are subclasses of azml-client's with the seed's LangChain API added
(``_convert_message_to_dict``, LangChain messages in, a ``ChatGeneration`` out), and a chat formatter written
for the seed gets LangChain messages in ``format_messages_request_payload``, as it did there.
"""

try:
    import langchain_core  # noqa: F401  (only to fail early with a helpful message)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "azml_client.langchain needs langchain-core, which is not installed: pip install 'azml-client[langchain]'"
    ) from exc

from azml_client._formatters import (
    ChatContentFormatterBase,
    ContentFormatterBase,
    CustomOpenAIContentFormatter,
    DollyContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    LlamaContentFormatter,
    OSSContentFormatter,
)
from azml_client.langchain._chat import AzureMLChatOnlineEndpoint
from azml_client.langchain._formatters import (
    CustomOpenAIChatContentFormatter,
    LlamaChatContentFormatter,
    MistralChatContentFormatter,
)
from azml_client.langchain._llm import AzureMLOnlineEndpoint
from azml_client.langchain._loading import load_llm
from azml_client.langchain._settings import AzureMLEndpointApiType

__all__ = [
    "AzureMLChatOnlineEndpoint",
    "AzureMLEndpointApiType",
    "AzureMLOnlineEndpoint",
    "ChatContentFormatterBase",
    "ContentFormatterBase",
    "CustomOpenAIChatContentFormatter",
    "CustomOpenAIContentFormatter",
    "DollyContentFormatter",
    "GPT2ContentFormatter",
    "HFContentFormatter",
    "LlamaChatContentFormatter",
    "LlamaContentFormatter",
    "MistralChatContentFormatter",
    "OSSContentFormatter",
    "load_llm",
]
