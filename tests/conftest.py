"""Suite-wide guards: asyncio's own complaints (a task destroyed while pending, an unretrieved task exception,
an unclosed transport logged by the loop) fail the test that caused them, as warnings already do; and the
proxy variables of the developer's environment never reach a test (a client honours them, loopback included); and
Ctrl-C reaches the child processes the tests interrupt, however the suite was started."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator

import pytest

# A shell without job control starts a background job (``make test &``, a CI step run under nohup) with SIGINT
# ignored, and an ignored signal stays ignored in every child: Python then installs no KeyboardInterrupt handler,
# and the tests that send SIGINT to a child (the sync twins, ``azml mock-server``) wait for one that never comes.
# A caught signal is reset to its default in a child, so catching it here gives every child its default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_ASYNCIO_COMPLAINTS = ("Task was destroyed", "exception was never retrieved", "Unclosed", "unclosed")

#: What urllib (and so EndpointClient) reads, in both cases; ALL_PROXY for the tools a test may start.
_PROXY_VARIABLES = tuple(
    name for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY") for name in (base, base.lower())
)


def _clear_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_variables_in_the_session() -> Iterator[None]:
    """Cleared once before any fixture runs (module- and session-scoped ones start servers and subprocesses)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_proxy_variables(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cleared again for every test, so a test that sets one (or leaks one) never affects the next."""
    _clear_proxy_variables(monkeypatch)
    assert not any(name in os.environ for name in _PROXY_VARIABLES)


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
