"""The formatter registry: names, aliases, deprecations, duplicates, and entry points."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import (
    ENTRY_POINT_GROUP,
    ContentFormatterBase,
    CustomOpenAIChatContentFormatter,
    CustomOpenAIContentFormatter,
    DollyContentFormatter,
    GPT2ContentFormatter,
    HFContentFormatter,
    LlamaChatContentFormatter,
    LlamaContentFormatter,
    MistralChatContentFormatter,
    OSSContentFormatter,
    _registry,
    get_formatter,
    list_formatters,
    register_formatter,
    registered_name,
    resolve_formatter,
)

BUILT_INS = {
    "dolly": DollyContentFormatter,
    "gpt2": GPT2ContentFormatter,
    "hf": HFContentFormatter,
    "mistral-chat": MistralChatContentFormatter,
    "openai": CustomOpenAIContentFormatter,
    "openai-chat": CustomOpenAIChatContentFormatter,
}


def test_built_in_names(isolated_registry: _registry._Registry) -> None:
    assert list_formatters() == sorted(BUILT_INS)
    for name, cls in BUILT_INS.items():
        formatter = get_formatter(name)
        assert type(formatter) is cls
        assert formatter.name == name
        assert registered_name(formatter) == name
        assert registered_name(cls) == name
        assert get_formatter(name) is not formatter  # a new instance each time


def test_kinds_and_api_types() -> None:
    kinds = {name: cls.kind for name, cls in BUILT_INS.items()}
    assert kinds == {
        "dolly": "completion",
        "gpt2": "completion",
        "hf": "completion",
        "mistral-chat": "chat",
        "openai": "completion",
        "openai-chat": "chat",
    }
    both = frozenset({ApiType.dedicated, ApiType.serverless})
    assert {name: cls.supported_api_types == both for name, cls in BUILT_INS.items()} == {
        "dolly": False,
        "gpt2": False,
        "hf": False,
        "mistral-chat": True,
        "openai": True,
        "openai-chat": True,
    }


def test_kwargs_go_to_the_constructor() -> None:
    assert get_formatter("gpt2", legacy_escaping=True).legacy_escaping is True
    assert get_formatter("gpt2").legacy_escaping is False
    assert repr(get_formatter("hf", legacy_escaping=True)) == "HFContentFormatter(legacy_escaping=True)"
    assert repr(get_formatter("hf")) == "HFContentFormatter()"


def test_names_are_case_insensitive() -> None:
    assert type(get_formatter(" GPT2 ")) is GPT2ContentFormatter


@pytest.mark.parametrize(
    ("alias", "cls", "canonical"),
    [
        ("oss", GPT2ContentFormatter, "gpt2"),
        ("llama", CustomOpenAIContentFormatter, "openai"),
        ("llama-chat", CustomOpenAIChatContentFormatter, "openai-chat"),
    ],
)
def test_deprecated_aliases_warn_and_behave_as_the_canonical_formatter(
    alias: str, cls: type[ContentFormatterBase], canonical: str
) -> None:
    with pytest.warns(DeprecationWarning, match=f"{alias!r} is deprecated; use {canonical!r}"):
        formatter = get_formatter(alias)
    assert type(formatter) is cls
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        assert type(resolve_formatter(alias)) is cls
    assert alias not in list_formatters()


@pytest.mark.parametrize(
    ("cls", "canonical", "parent"),
    [
        (OSSContentFormatter, "gpt2", GPT2ContentFormatter),
        (LlamaContentFormatter, "openai", CustomOpenAIContentFormatter),
        (LlamaChatContentFormatter, "openai-chat", CustomOpenAIChatContentFormatter),
    ],
)
def test_deprecated_classes_warn_and_behave_as_their_parent(
    cls: type[ContentFormatterBase], canonical: str, parent: type[ContentFormatterBase]
) -> None:
    with pytest.warns(DeprecationWarning, match=f"{cls.__name__} is deprecated"):
        formatter = cls()
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        legacy = cls(legacy_escaping=True)
    assert legacy.legacy_escaping
    assert isinstance(formatter, parent)
    assert formatter.name == canonical
    assert registered_name(formatter) == canonical
    if formatter.kind == "completion":
        assert formatter.build_request("Hi", {}, ApiType.dedicated) == parent().build_request(
            "Hi", {}, ApiType.dedicated
        )


def test_mistral_is_not_deprecated() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MistralChatContentFormatter()
        get_formatter("mistral-chat")


def test_unknown_name_lists_the_available_ones(isolated_registry: _registry._Registry) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_formatter("gtp2")
    message = str(info.value)
    assert "unknown formatter 'gtp2'" in message
    assert "did you mean 'gpt2'" in message
    assert "available formatters: dolly, gpt2, hf, mistral-chat, openai, openai-chat" in message
    assert "deprecated aliases: llama, llama-chat, oss" in message
    with pytest.raises(ConfigurationError, match="unknown formatter 'zzz'; available"):
        resolve_formatter("zzz")
    with pytest.raises(ConfigurationError, match="non-empty str"):
        get_formatter("")


def test_register_a_user_formatter(isolated_registry: _registry._Registry) -> None:
    @register_formatter("My-Model", aliases=["mine"])
    class MyFormatter(ContentFormatterBase):
        def format_request_payload(self, prompt: str, model_kwargs: dict[str, Any]) -> bytes:  # type: ignore[override]
            return prompt.encode()

    assert "my-model" in list_formatters()
    assert "mine" not in list_formatters()
    assert type(get_formatter("my-model")) is MyFormatter
    assert type(get_formatter("MINE")) is MyFormatter
    assert registered_name(MyFormatter()) == "my-model"
    assert list_formatters() == sorted(list_formatters())


def test_an_unregistered_subclass_has_no_registered_name() -> None:
    class Sub(GPT2ContentFormatter):
        pass

    assert registered_name(Sub()) is None
    assert Sub().name == "Sub"


def test_duplicate_names_need_replace(isolated_registry: _registry._Registry) -> None:
    class A(ContentFormatterBase):
        pass

    class B(ContentFormatterBase):
        pass

    register_formatter("dup")(A)
    register_formatter("dup")(A)  # the same class again is fine
    with pytest.raises(ConfigurationError, match=r"'dup' is already registered to .*A.*replace=True"):
        register_formatter("dup")(B)
    with pytest.raises(ConfigurationError, match="'gpt2' is already registered"):
        register_formatter("gpt2")(B)
    with pytest.raises(ConfigurationError, match="'oss' is already registered"):
        register_formatter("new", aliases=["oss"])(B)
    assert type(get_formatter("dup")) is A

    register_formatter("dup", replace=True)(B)
    assert type(get_formatter("dup")) is B
    assert registered_name(B) == "dup"
    assert registered_name(A) is None


def test_a_reloaded_class_replaces_its_old_self(isolated_registry: _registry._Registry) -> None:
    def make() -> type[ContentFormatterBase]:
        class Reloaded(ContentFormatterBase):
            pass

        return Reloaded

    first, second = make(), make()
    register_formatter("reloaded")(first)
    register_formatter("reloaded")(second)
    assert type(get_formatter("reloaded")) is second


def test_only_formatter_classes_can_be_registered(isolated_registry: _registry._Registry) -> None:
    with pytest.raises(ConfigurationError, match="ContentFormatterBase subclass"):
        register_formatter("nope")(dict)  # type: ignore[type-var]


def test_resolve_formatter() -> None:
    instance = HFContentFormatter()
    assert resolve_formatter(instance) is instance
    assert type(resolve_formatter(HFContentFormatter)) is HFContentFormatter
    assert type(resolve_formatter("hf")) is HFContentFormatter
    with pytest.raises(ConfigurationError, match="registered name, a ContentFormatterBase"):
        resolve_formatter(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        resolve_formatter(dict)  # type: ignore[arg-type]


# -- entry points ----------------------------------------------------------------------------------------------


class PluginFormatter(ContentFormatterBase):
    """A formatter a third-party package ships."""


class FakeEntryPoint:
    def __init__(self, name: str, load: Any) -> None:
        self.name = name
        self.value = f"plugin:{name}"
        self._load = load

    def load(self) -> Any:
        return self._load()


def _broken() -> Any:
    raise ImportError("No module named 'missing_dependency'")


def test_entry_points_are_loaded_lazily_once(
    isolated_registry: _registry._Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return [
            FakeEntryPoint("plugin-model", lambda: PluginFormatter),
            FakeEntryPoint("broken", _broken),
            FakeEntryPoint("not-a-class", lambda: 42),
            FakeEntryPoint("gpt2", lambda: PluginFormatter),
        ]

    monkeypatch.setattr(_registry, "entry_points", fake_entry_points)
    assert type(get_formatter("gpt2")) is GPT2ContentFormatter  # a known name does not load entry points
    assert groups == []

    with pytest.warns(UserWarning, match="skipping formatter entry point") as record:
        assert type(get_formatter("plugin-model")) is PluginFormatter
    messages = [str(item.message) for item in record]
    assert any("'broken'" in m and "failed to load" in m and "missing_dependency" in m for m in messages)
    assert any("'not-a-class'" in m and "not a ContentFormatterBase subclass" in m for m in messages)
    assert any("'gpt2'" in m and "already registered" in m for m in messages)
    assert groups == [ENTRY_POINT_GROUP]

    assert "plugin-model" in list_formatters()
    assert "broken" not in list_formatters()
    assert registered_name(PluginFormatter()) == "plugin-model"
    assert type(get_formatter("gpt2")) is GPT2ContentFormatter  # a plugin cannot take a built-in name
    with pytest.raises(ConfigurationError, match="unknown formatter 'broken'"):
        get_formatter("broken")
    assert groups == [ENTRY_POINT_GROUP]  # loaded once


def test_list_formatters_loads_entry_points(
    isolated_registry: _registry._Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registry, "entry_points", lambda *, group: [FakeEntryPoint("zeta", lambda: PluginFormatter)])
    assert list_formatters() == [*sorted(BUILT_INS), "zeta"]


def test_an_entry_point_that_registers_itself(
    isolated_registry: _registry._Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def load() -> type[ContentFormatterBase]:
        @register_formatter("self-registered")
        class SelfRegistered(ContentFormatterBase):
            pass

        return SelfRegistered

    monkeypatch.setattr(_registry, "entry_points", lambda *, group: [FakeEntryPoint("self-registered", load)])
    assert get_formatter("self-registered").name == "self-registered"


def test_unreadable_entry_points_warn(isolated_registry: _registry._Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*, group: str) -> list[Any]:
        raise RuntimeError("broken metadata")

    monkeypatch.setattr(_registry, "entry_points", explode)
    with pytest.warns(UserWarning, match="broken metadata"):
        assert list_formatters() == sorted(BUILT_INS)
