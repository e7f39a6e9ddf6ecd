"""The adapter passes on what the formatters read, read as the formatter layer reads it."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage

import azml_client.langchain
from azml_client._config import ApiType
from azml_client._types import ChatResult, Message, Usage
from azml_client.langchain._messages import chat_result, to_core_messages

ADAPTER = Path(azml_client.langchain.__file__).parent
S = ApiType.serverless


def test_token_usage_is_the_usage_wire_form() -> None:
    for usage in (Usage(3, 4, 7), Usage(3, None, None)):
        result = chat_result(ChatResult(Message("assistant", "x"), usage=usage), None, None)
        assert result.llm_output is not None
        assert result.llm_output["token_usage"] == usage.to_dict()
    assert "token_usage" not in (chat_result(ChatResult(Message("assistant", "x")), None, None).llm_output or {})


def test_assistant_content_text_is_the_core_reading() -> None:
    thinking = AIMessage([{"type": "thinking", "thinking": "hmm", "text": "no"}, {"type": "text", "text": "Hi."}, "!"])
    assert to_core_messages([thinking])[0].content == "Hi.!"
