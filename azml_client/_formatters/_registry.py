"""The formatter registry: formatter classes by name, deprecated aliases, and third-party entry points.

Third-party packages register formatters through the entry-point group ``azml_client.formatters``; each
entry point names a formatter class and is registered under the entry point's name. Entry points are loaded
once, lazily: when a name is not found, or when :func:`list_formatters` is called.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from azml_client._exceptions import ConfigurationError
from azml_client._formatters._base import ContentFormatterBase

__all__ = [
    "ENTRY_POINT_GROUP",
    "get_formatter",
    "list_formatters",
    "register_formatter",
    "registered_name",
    "resolve_formatter",
]

#: The entry-point group third-party packages register formatter classes in.
ENTRY_POINT_GROUP: Final = "azml_client.formatters"

_F = TypeVar("_F", bound=type[ContentFormatterBase])


def entry_points(*, group: str) -> Iterable[Any]:
    """``importlib.metadata.entry_points(group=...)``, imported on first use: it is slow to import and only
    a lookup of formatters needs it, never ``import azml_client``."""
    from importlib.metadata import entry_points as read_entry_points

    return read_entry_points(group=group)


def _normalize(name: str) -> str:
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
        self.classes: dict[str, type[ContentFormatterBase]] = {}  # canonical name -> class
        self.aliases: dict[str, str] = {}  # alias -> canonical name
        self.deprecated: dict[str, str] = {}  # deprecated alias -> canonical name
        self.names: dict[type[ContentFormatterBase], str] = {}  # class -> canonical name
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

    def owner(self, name: str) -> type[ContentFormatterBase] | None:
        """The class a canonical name or an alias refers to."""
        canonical = self.aliases.get(name) or self.deprecated.get(name) or name
        return self.classes.get(canonical)

    def add(
        self,
        cls: type[ContentFormatterBase],
        name: str,
        aliases: Iterable[str] = (),
        deprecated_aliases: Iterable[str] = (),
        *,
        replace: bool = False,
    ) -> None:
        if not (isinstance(cls, type) and issubclass(cls, ContentFormatterBase)):
            raise ConfigurationError(f"a formatter must be a ContentFormatterBase subclass, got {cls!r}")
        all_aliases = [_normalize(alias) for alias in aliases]
        old_aliases = [_normalize(alias) for alias in deprecated_aliases]
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

    def load_entry_points(self) -> None:
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
                self._load_entry_point(entry)

    def _load_entry_point(self, entry: Any) -> None:
        label = f"formatter entry point {getattr(entry, 'name', '?')!r} ({getattr(entry, 'value', '?')})"
        try:
            name = _normalize(entry.name)
            cls = entry.load()
        except Exception as exc:  # a broken plugin is skipped, not fatal
            warnings.warn(f"skipping {label}: it failed to load: {exc!r}", UserWarning, stacklevel=5)
            return
        if not (isinstance(cls, type) and issubclass(cls, ContentFormatterBase)):
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


_REGISTRY = _Registry()


def _declare_deprecated_class(cls: type[ContentFormatterBase], canonical: str) -> None:
    """Record that the deprecated class ``cls`` is saved and named as the formatter ``canonical``."""
    with _REGISTRY.lock:
        _REGISTRY.names[cls] = canonical


class DeprecatedFormatterAlias(ContentFormatterBase):
    """Base of the seed's deprecated formatter class names: making one warns, and it saves as ``canonical``.

    Put it first among the bases and name the formatter it stands for::

        class OSSContentFormatter(DeprecatedFormatterAlias, GPT2ContentFormatter, canonical="gpt2"): ...

    A subclass of such a class inherits its canonical name and its warning.
    """

    _canonical: str
    _replacement: str

    def __init_subclass__(cls, *, canonical: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if canonical is not None:
            cls._canonical = canonical
            cls._replacement = next(
                base.__name__ for base in cls.__bases__ if not issubclass(base, DeprecatedFormatterAlias)
            )
        if not hasattr(cls, "_canonical"):
            raise TypeError(f"{cls.__name__} needs canonical='<formatter name>'")
        _declare_deprecated_class(cls, cls._canonical)

    def __init__(self, *, legacy_escaping: bool = False) -> None:
        warnings.warn(
            f"{type(self).__name__} is deprecated; use {self._replacement} (formatter {self._canonical!r})",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(legacy_escaping=legacy_escaping)


def register_formatter(
    name: str,
    *,
    aliases: Iterable[str] = (),
    deprecated_aliases: Iterable[str] = (),
    replace: bool = False,
) -> Callable[[_F], _F]:
    """Class decorator: register a formatter class under ``name`` (names are case-insensitive).

    Args:
        name: the formatter's canonical name, as :func:`get_formatter` and saved configs use it.
        aliases: other names that give the same formatter.
        deprecated_aliases: names that still work but emit a DeprecationWarning.
        replace: take over a name that another class holds.

    Raises:
        ConfigurationError: the name (or an alias) belongs to another class and ``replace`` is false, or the
            decorated object is not a ContentFormatterBase subclass.
    """
    canonical = _normalize(name)
    alias_names = tuple(aliases)
    deprecated_names = tuple(deprecated_aliases)

    def decorate(cls: _F) -> _F:
        _REGISTRY.add(cls, canonical, alias_names, deprecated_names, replace=replace)
        return cls

    return decorate


def _unknown(name: str) -> ConfigurationError:
    import difflib  # only for this message; kept out of ``import azml_client``

    known = sorted(_REGISTRY.classes)
    every = known + sorted(_REGISTRY.aliases) + sorted(_REGISTRY.deprecated)
    close = difflib.get_close_matches(name, every, n=1)
    message = f"unknown formatter {name!r}"
    if close:
        message += f" (did you mean {close[0]!r}?)"
    message += f"; available formatters: {', '.join(known)}"
    if _REGISTRY.deprecated:
        message += f" (deprecated aliases: {', '.join(sorted(_REGISTRY.deprecated))})"
    return ConfigurationError(message)


def _lookup(name: str) -> type[ContentFormatterBase]:
    key = _normalize(name)
    cls = _REGISTRY.owner(key)
    if cls is None:
        _REGISTRY.load_entry_points()
        cls = _REGISTRY.owner(key)
    if cls is None:
        raise _unknown(name)
    canonical = _REGISTRY.deprecated.get(key)
    if canonical is not None:
        warnings.warn(f"formatter name {key!r} is deprecated; use {canonical!r}", DeprecationWarning, stacklevel=3)
    return cls


def get_formatter(name: str, **kwargs: Any) -> ContentFormatterBase:
    """Return a new instance of the formatter registered as ``name``.

    ``kwargs`` go to its constructor (the built-ins take ``legacy_escaping``). A deprecated alias
    (``oss``, ``llama``, ``llama-chat``) emits a DeprecationWarning.

    Raises:
        ConfigurationError: no formatter has that name; the message lists the available ones.
    """
    return _lookup(name)(**kwargs)


def list_formatters() -> list[str]:
    """Return the canonical names of every registered formatter, sorted (entry points included)."""
    _REGISTRY.load_entry_points()
    return sorted(_REGISTRY.classes)


def resolve_formatter(
    spec: str | ContentFormatterBase | type[ContentFormatterBase],
) -> ContentFormatterBase:
    """Return a formatter instance for a registered name, an instance (returned as is) or a class.

    Raises:
        ConfigurationError: an unknown name, or something that is not a formatter.
    """
    if isinstance(spec, ContentFormatterBase):
        return spec
    if isinstance(spec, str):
        return _lookup(spec)()
    if isinstance(spec, type) and issubclass(spec, ContentFormatterBase):
        return spec()
    raise ConfigurationError(
        f"formatter must be a registered name, a ContentFormatterBase instance or subclass; got {type(spec).__name__}"
    )


def registered_name(formatter: ContentFormatterBase | type[ContentFormatterBase]) -> str | None:
    """Return the canonical name the formatter's class is registered under, or ``None`` (for saving configs).

    Only the exact class counts: an unregistered subclass of a built-in has no registered name.
    """
    cls = formatter if isinstance(formatter, type) else type(formatter)
    return _REGISTRY.names.get(cls)
