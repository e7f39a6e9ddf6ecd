"""The endpoint emulator every doc block runs against: one per test session, on a thread of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anyio.from_thread import start_blocking_portal

from azml_client.testing import MockEndpoint


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """The base URL of a :class:`MockEndpoint` with ``default_deployment="auto"`` and no key check."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(MockEndpoint(default_deployment="auto")) as endpoint,
    ):
        yield endpoint.url
