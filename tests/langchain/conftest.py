"""Fixtures for the LangChain adapter tests: the endpoint emulator (one per test module) and a clean env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lc_emulator import KEY, EmulatorThread

_ENV_VARS = (
    "AZUREML_ENDPOINT_URL",
    "AZUREML_ENDPOINT_API_KEY",
    "AZUREML_ENDPOINT_API_TYPE",
    "AZUREML_DEPLOYMENT_NAME",
    "AZUREML_TIMEOUT",
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """One emulator per test module, with key checks on (key :data:`KEY`)."""
    server = EmulatorThread(api_key=KEY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ep(emulator: EmulatorThread) -> EmulatorThread:
    """The module's emulator, reset for this test."""
    emulator.reset()
    return emulator


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AZUREML_* variable of the machine running the tests leaks into them."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
