"""Formatters: the strategy objects that turn prompts and messages into request bodies and answers into results.

Each formatter is registered by name (:func:`get_formatter`, :func:`list_formatters`); user formatters
subclass :class:`ContentFormatterBase` (or :class:`ChatContentFormatterBase`) and may register themselves
with :func:`register_formatter` or through the ``azml_client.formatters`` entry-point group.

The modules, bottom up (no module imports one above it): ``_shapes`` (what an answer looks like) and
``_registry`` (the table of names and classes); ``_openai`` (the OpenAI-style answer readers); ``_base`` (the
base classes); ``_lookup`` (registering and finding formatters); ``_completion`` and ``_chat`` (the built-ins).
"""

from azml_client._formatters._base import (
    ChatContentFormatterBase,
    ContentFormatterBase,
    DeprecatedFormatterAlias,
    as_messages,
    is_user_method,
)
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
from azml_client._formatters._lookup import get_formatter, list_formatters, register_formatter, resolve_formatter
from azml_client._formatters._registry import (
    DEFAULT_CHAT_FORMATTER,
    ENTRY_POINT_GROUP,
    default_formatter_name,
    registered_name,
)

__all__ = [
    "DEFAULT_CHAT_FORMATTER",
    "ENTRY_POINT_GROUP",
    "ChatContentFormatterBase",
    "ContentFormatterBase",
    "CustomOpenAIChatContentFormatter",
    "CustomOpenAIContentFormatter",
    "DeprecatedFormatterAlias",
    "DollyContentFormatter",
    "GPT2ContentFormatter",
    "HFContentFormatter",
    "LlamaChatContentFormatter",
    "LlamaContentFormatter",
    "MistralChatContentFormatter",
    "OSSContentFormatter",
    "as_messages",
    "default_formatter_name",
    "get_formatter",
    "is_user_method",
    "list_formatters",
    "register_formatter",
    "registered_name",
    "resolve_formatter",
]
