"""Fixtures for the formatter tests: an isolated registry, so registering test formatters leaks nowhere."""

from __future__ import annotations

import pytest

from azml_client._formatters import _registry


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> _registry._Registry:
    """Swap in a copy of the registry (entry points not loaded yet, and none found) for one test."""
    copy = _registry.REGISTRY.copy()
    copy.entry_points_loaded = False
    monkeypatch.setattr(_registry, "REGISTRY", copy)
    monkeypatch.setattr(_registry, "entry_points", lambda **_: [])
    return copy
