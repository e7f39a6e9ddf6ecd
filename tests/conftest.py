"""Suite-wide guards: asyncio's own complaints (a task destroyed while pending, an unretrieved task exception,
an unclosed transport logged by the loop) fail the test that caused them, as warnings already do."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

_ASYNCIO_COMPLAINTS = ("Task was destroyed", "exception was never retrieved", "Unclosed", "unclosed")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(text in message for text in _ASYNCIO_COMPLAINTS):
            self.messages.append(message)


@pytest.fixture(autouse=True)
def _fail_on_asyncio_complaints() -> Iterator[None]:
    collector = _Collector()
    logger = logging.getLogger("asyncio")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)
    if collector.messages:
        pytest.fail("asyncio complained during the test:\n" + "\n".join(collector.messages), pytrace=False)
