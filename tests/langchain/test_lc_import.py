"""``import azml_client`` never imports LangChain; ``azml_client.langchain`` says how to get it when missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_azml_client_does_not_import_langchain() -> None:
    result = run_python(
        """
        import sys
        import azml_client
        import azml_client.testing
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("langchain_core", "langchain"))
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_langchain_core_gives_an_install_hint() -> None:
    result = run_python(
        """
        import sys
        sys.modules["langchain_core"] = None  # as if it were not installed
        try:
            import azml_client.langchain
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'azml-client[langchain]'" in result.stdout


def test_public_names() -> None:
    import azml_client
    import azml_client.langchain as lc
    from azml_client._formatters import registered_name

    for name in lc.__all__:
        assert getattr(lc, name).__doc__, f"{name} has no docstring"
    for name in (
        "ContentFormatterBase",
        "GPT2ContentFormatter",
        "OSSContentFormatter",
        "HFContentFormatter",
        "DollyContentFormatter",
        "CustomOpenAIContentFormatter",
        "LlamaContentFormatter",
    ):
        assert getattr(lc, name) is getattr(azml_client, name)
    # The chat formatters add the seed's LangChain API (``_convert_message_to_dict``...) to the core's.
    for name, registered in (
        ("CustomOpenAIChatContentFormatter", "openai-chat"),
        ("LlamaChatContentFormatter", "openai-chat"),
        ("MistralChatContentFormatter", "mistral-chat"),
    ):
        adapter_class, core_class = getattr(lc, name), getattr(azml_client, name)
        assert adapter_class is not core_class
        assert issubclass(adapter_class, core_class)
        assert adapter_class.__name__ == name
        assert callable(adapter_class._convert_message_to_dict)
        assert not hasattr(core_class, "_convert_message_to_dict")
        assert registered_name(adapter_class) == registered
    assert [member.value for member in lc.AzureMLEndpointApiType] == ["dedicated", "realtime", "serverless"]
