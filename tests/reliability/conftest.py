"""Fixtures for the reliability tests."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from azml_client.testing import MockEndpoint

from .probes import KEY


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint


LEAK_MARKERS = ("Unclosed", "unclosed", "Task was destroyed", "was never retrieved", "Event loop is closed")


@pytest.fixture(autouse=True)
def no_leak_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test after which asyncio or aiohttp reports an unclosed session/connector or a destroyed task."""
    yield
    gc.collect()
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    leaks = [record.getMessage() for record in records if any(m in record.getMessage() for m in LEAK_MARKERS)]
    assert not leaks, leaks
