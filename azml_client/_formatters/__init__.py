"""Formatters: the strategy objects that turn prompts and messages into request bodies and answers into results.

Each formatter is registered by name (:func:`get_formatter`, :func:`list_formatters`); user formatters
subclass :class:`ContentFormatterBase` (or :class:`ChatContentFormatterBase`) and may register themselves
with :func:`register_formatter` or through the ``azml_client.formatters`` entry-point group.
"""

from azml_client._formatters._base import ChatContentFormatterBase, ContentFormatterBase
from azml_client._formatters._chat import (
    CustomOpenAIChatContentFormatter,
    LlamaChatContentFormatter,
    MistralChatContentFormatter,
)
from azml_client._formatters._completion import (
    CustomOpenAIContentFormatter,
    DollyContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    LlamaContentFormatter,
    OSSContentFormatter,
)
from azml_client._formatters._registry import (
    ENTRY_POINT_GROUP,
    get_formatter,
    list_formatters,
    register_formatter,
    registered_name,
    resolve_formatter,
)

__all__ = [
    "ENTRY_POINT_GROUP",
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
    "get_formatter",
    "list_formatters",
    "register_formatter",
    "registered_name",
    "resolve_formatter",
]
