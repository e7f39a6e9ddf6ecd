"""Formatters by name: register a formatter class, build a formatter from a name, a class or an instance, list names.

The table itself lives in :mod:`azml_client._formatters._registry`, below the base class; this module sits above
it and checks that what it is given is a formatter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from azml_client._exceptions import ConfigurationError
from azml_client._formatters import _registry
from azml_client._formatters._base import ContentFormatterBase

__all__ = [
    "get_formatter",
    "list_formatters",
    "register_formatter",
    "resolve_formatter",
]

_F = TypeVar("_F", bound=type[ContentFormatterBase])


def _is_formatter_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, ContentFormatterBase)


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
    canonical = _registry.normalize(name)
    alias_names = tuple(aliases)
    deprecated_names = tuple(deprecated_aliases)

    def decorate(cls: _F) -> _F:
        if not _is_formatter_class(cls):
            raise ConfigurationError(f"a formatter must be a ContentFormatterBase subclass, got {cls!r}")
        _registry.registry().add(cls, canonical, alias_names, deprecated_names, replace=replace)
        return cls

    return decorate


def _unknown(name: str) -> ConfigurationError:
    import difflib  # only for this message; kept out of ``import azml_client``

    table = _registry.registry()
    known = sorted(table.classes)
    every = known + sorted(table.aliases) + sorted(table.deprecated)
    close = difflib.get_close_matches(name, every, n=1)
    message = f"unknown formatter {name!r}"
    if close:
        message += f" (did you mean {close[0]!r}?)"
    message += f"; available formatters: {', '.join(known)}"
    if table.deprecated:
        message += f" (deprecated aliases: {', '.join(sorted(table.deprecated))})"
    return ConfigurationError(message)


def _lookup(name: str) -> type[ContentFormatterBase]:
    key = _registry.normalize(name)
    table = _registry.registry()
    cls = table.owner(key)
    if cls is None:
        table.load_entry_points(_is_formatter_class)
        cls = table.owner(key)
    if cls is None:
        raise _unknown(name)
    canonical = table.deprecated.get(key)
    if canonical is not None:
        warnings.warn(f"formatter name {key!r} is deprecated; use {canonical!r}", DeprecationWarning, stacklevel=3)
    return cast("type[ContentFormatterBase]", cls)  # only formatter classes are added (see register_formatter)


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
    table = _registry.registry()
    table.load_entry_points(_is_formatter_class)
    return sorted(table.classes)


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
