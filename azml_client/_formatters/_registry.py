"""The formatter registry's table: formatter classes by name, aliases, saved names, and third-party entry points.

This module knows names and classes, not what a formatter is, so the formatter base class can ask it for its own
name without an import circle; :mod:`azml_client._formatters._lookup` checks classes and builds formatters.

Third-party packages register formatters through the entry-point group ``azml_client.formatters``; each
entry point names a formatter class and is registered under the entry point's name. Entry points are loaded
once, lazily: when a name is not found, or when the formatters are listed.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_CHAT_FORMATTER",
    "ENTRY_POINT_GROUP",
    "default_formatter_name",
    "name_formatter_class",
    "registered_name",
]

#: The entry-point group third-party packages register formatter classes in.
ENTRY_POINT_GROUP: Final = "azml_client.formatters"

#: The chat formatter used when none is named, on either api type.
DEFAULT_CHAT_FORMATTER: Final = "openai-chat"

_DEFAULT_COMPLETION: Final = {ApiType.dedicated: "gpt2", ApiType.serverless: "openai"}


def default_formatter_name(kind: Literal["completion", "chat"], api_type: ApiType | str = ApiType.dedicated) -> str:
    """The registered name of the formatter used when none is named.

    Completion: ``"gpt2"`` on a dedicated endpoint, ``"openai"`` on a serverless one (which speaks only the
    OpenAI schema). Chat: ``"openai-chat"`` on both.

    Raises:
        ConfigurationError: an unknown api type or kind.
    """
    if kind == "chat":
        return DEFAULT_CHAT_FORMATTER
    if kind == "completion":
        return _DEFAULT_COMPLETION[ApiType.parse(api_type)]
    raise ConfigurationError(f"a formatter kind is 'completion' or 'chat', got {kind!r}")


def entry_points(*, group: str) -> Iterable[Any]:
    """``importlib.metadata.entry_points(group=...)``, imported on first use: it is slow to import and only
    a lookup of formatters needs it, never ``import azml_client``."""
    from importlib.metadata import entry_points as read_entry_points

    return read_entry_points(group=group)


def normalize(name: str) -> str:
    """A formatter name as the registry keys it: stripped and lower case.

    Raises:
        ConfigurationError: not a non-empty str.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a formatter name must be a non-empty str, got {name!r}")
    return name.strip().lower()


def _same_class(a: type, b: type) -> bool:
    """The same class, or the same class defined again (a module reloaded)."""
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


class _Registry:
    """The registry's state; one module-level instance (tests swap in a copy)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.classes: dict[str, type] = {}  # canonical name -> class
        self.aliases: dict[str, str] = {}  # alias -> canonical name
        self.deprecated: dict[str, str] = {}  # deprecated alias -> canonical name
        self.names: dict[type, str] = {}  # class -> canonical name
        self.entry_points_loaded = False

    def copy(self) -> _Registry:
        """Return an independent copy of the state (for tests)."""
        other = _Registry()
        other.classes = dict(self.classes)
        other.aliases = dict(self.aliases)
        other.deprecated = dict(self.deprecated)
        other.names = dict(self.names)
        other.entry_points_loaded = self.entry_points_loaded
        return other

    def owner(self, name: str) -> type | None:
        """The class a canonical name or an alias refers to."""
        canonical = self.aliases.get(name) or self.deprecated.get(name) or name
        return self.classes.get(canonical)

    def add(
        self,
        cls: type,
        name: str,
        aliases: Iterable[str] = (),
        deprecated_aliases: Iterable[str] = (),
        *,
        replace: bool = False,
    ) -> None:
        """Register ``cls`` (already checked to be a formatter class) under ``name`` and its aliases."""
        all_aliases = [normalize(alias) for alias in aliases]
        old_aliases = [normalize(alias) for alias in deprecated_aliases]
        with self.lock:
            for each in (name, *all_aliases, *old_aliases):
                taken = self.owner(each)
                if taken is not None and not _same_class(taken, cls) and not replace:
                    raise ConfigurationError(
                        f"formatter name {each!r} is already registered to {taken.__module__}.{taken.__qualname__}; "
                        "pass replace=True to register_formatter to replace it"
                    )
            previous = self.classes.get(name)
            if previous is not None and self.names.get(previous) == name:
                del self.names[previous]
            for each in (name, *all_aliases, *old_aliases):
                self.aliases.pop(each, None)
                self.deprecated.pop(each, None)
            self.classes[name] = cls
            self.names.setdefault(cls, name)
            for alias in all_aliases:
                self.aliases[alias] = name
            for alias in old_aliases:
                self.deprecated[alias] = name

    def load_entry_points(self, is_formatter_class: Callable[[Any], bool]) -> None:
        """Register every entry point of :data:`ENTRY_POINT_GROUP` that is a formatter class (once)."""
        with self.lock:
            if self.entry_points_loaded:
                return
            self.entry_points_loaded = True
            try:
                found = list(entry_points(group=ENTRY_POINT_GROUP))
            except Exception as exc:  # a broken installation must not break the SDK
                warnings.warn(
                    f"could not read the {ENTRY_POINT_GROUP!r} entry points: {exc!r}", UserWarning, stacklevel=4
                )
                return
            for entry in found:
                self._load_entry_point(entry, is_formatter_class)

    def _load_entry_point(self, entry: Any, is_formatter_class: Callable[[Any], bool]) -> None:
        label = f"formatter entry point {getattr(entry, 'name', '?')!r} ({getattr(entry, 'value', '?')})"
        try:
            name = normalize(entry.name)
            cls = entry.load()
        except Exception as exc:  # a broken plugin is skipped, not fatal
            warnings.warn(f"skipping {label}: it failed to load: {exc!r}", UserWarning, stacklevel=5)
            return
        if not is_formatter_class(cls):
            warnings.warn(
                f"skipping {label}: it is {cls!r}, not a ContentFormatterBase subclass", UserWarning, stacklevel=5
            )
            return
        taken = self.owner(name)
        if taken is not None and not _same_class(taken, cls):
            warnings.warn(
                f"skipping {label}: the name is already registered to {taken.__module__}.{taken.__qualname__}",
                UserWarning,
                stacklevel=5,
            )
            return
        self.add(cls, name)


REGISTRY = _Registry()


def registry() -> _Registry:
    """The registry in use (looked up on each call, so that a test may swap in a copy)."""
    return REGISTRY


def name_formatter_class(cls: type, canonical: str) -> None:
    """Save and name the formatter class ``cls`` as the registered formatter ``canonical``, without registering it.

    For a class that stands for a registered formatter: a deprecated class name (``OSSContentFormatter`` is
    ``gpt2``) or a variant that reads and writes the same bytes (the LangChain adapter's chat formatters).
    """
    with REGISTRY.lock:
        REGISTRY.names[cls] = normalize(canonical)


def registered_name(formatter: object) -> str | None:
    """Return the canonical name the formatter's class is registered under, or ``None`` (for saving configs).

    ``formatter`` is a formatter or a formatter class. Only the exact class counts: an unregistered subclass of
    a built-in has no registered name.
    """
    cls = formatter if isinstance(formatter, type) else type(formatter)
    return REGISTRY.names.get(cls)
