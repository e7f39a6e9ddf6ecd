"""Where the examples send their requests: your endpoint when AZUREML_ENDPOINT_URL is set, else the emulator.

Every example opens ``example_endpoint(api_type, deployment=...)`` and spreads what it yields into the
model's constructor::

    async with example_endpoint("dedicated", deployment="openai") as endpoint:
        async with az.LLM(**endpoint, formatter="openai") as llm:
            ...

With ``AZUREML_ENDPOINT_URL`` set, ``endpoint`` holds your settings from the environment
(``AZUREML_ENDPOINT_API_KEY``, ``AZUREML_ENDPOINT_API_TYPE``, ``AZUREML_DEPLOYMENT_NAME``); the example's own
api type is used when ``AZUREML_ENDPOINT_API_TYPE`` is unset. Otherwise an
:class:`azml_client.testing.MockEndpoint` starts in this process on 127.0.0.1 and ``endpoint`` points at it,
pinned with ``deployment_name`` to the emulator's deployment that speaks the example's schema.

The emulator is not a language model: it answers ``"echo: " + prompt`` (cut by ``stop`` and the token
limits), in the exact JSON shape the real endpoint would use. The examples work in both modes: only the
text differs.

``with example_endpoint(...)`` (for the sync examples) runs the emulator on a thread of its own;
``async with`` runs it on the caller's event loop.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any

from anyio.from_thread import start_blocking_portal

from azml_client.testing import MockEndpoint

__all__ = ["EMULATOR_KEY", "ExampleEndpoint", "example_endpoint"]

#: The key the emulator checks; the examples send it like a real key.
EMULATOR_KEY = "emulator-key"


def _from_environment(api_type: str) -> dict[str, Any] | None:
    """Your endpoint's settings, or None when ``AZUREML_ENDPOINT_URL`` is not set."""
    url = os.environ.get("AZUREML_ENDPOINT_URL")
    if not url:
        return None
    return {
        "endpoint_url": url,
        "api_key": os.environ.get("AZUREML_ENDPOINT_API_KEY") or None,
        "api_type": os.environ.get("AZUREML_ENDPOINT_API_TYPE") or api_type,
        "deployment_name": os.environ.get("AZUREML_DEPLOYMENT_NAME") or None,
    }


def example_endpoint(api_type: str, *, deployment: str | None = None) -> ExampleEndpoint:
    """Return a context manager (``with`` or ``async with``) that yields an example's endpoint keywords.

    The keywords are ``endpoint_url``, ``api_key``, ``api_type`` and ``deployment_name``, ready to spread
    into ``az.LLM(...)`` / ``az.ChatModel(...)``.

    Args:
        api_type: ``"dedicated"`` or ``"serverless"``: the kind of endpoint the example is written for.
        deployment: the emulator's deployment that stands in for the example's model on a dedicated
            endpoint (``"openai"``, ``"dolly"``, ``"hf"``, ``"openai-chat"``...). Ignored for your endpoint,
            which uses ``AZUREML_DEPLOYMENT_NAME`` (or its traffic split when that is unset).
    """
    return ExampleEndpoint(api_type, deployment)


class ExampleEndpoint:
    """Your endpoint's settings, or an emulator started for the duration of a ``with`` block."""

    def __init__(self, api_type: str, deployment: str | None) -> None:
        self._api_type = api_type
        self._deployment = deployment
        self._emulator: MockEndpoint | None = None
        self._stack = ExitStack()

    def _emulated(self, emulator: MockEndpoint) -> dict[str, Any]:
        print(
            f"[no AZUREML_ENDPOINT_URL: using the local emulator at {emulator.url}, which answers 'echo: <prompt>']",
            file=sys.stderr,
        )
        return {
            # A dedicated endpoint's scoring URL ends in /score; a serverless one is given by its base URL, to
            # which the SDK adds /v1/completions or /v1/chat/completions.
            "endpoint_url": emulator.score_url if self._api_type == "dedicated" else emulator.url,
            "api_key": EMULATOR_KEY,
            "api_type": self._api_type,
            "deployment_name": self._deployment if self._api_type == "dedicated" else None,
        }

    # -- async with: the emulator runs on the caller's loop --------------------------------------------------

    async def __aenter__(self) -> dict[str, Any]:
        real = _from_environment(self._api_type)
        if real is not None:
            return real
        self._emulator = MockEndpoint(api_key=EMULATOR_KEY)
        await self._emulator.start()
        return self._emulated(self._emulator)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._emulator is not None:
            await self._emulator.aclose()

    # -- with: the emulator runs on a thread of its own ------------------------------------------------------

    def __enter__(self) -> dict[str, Any]:
        real = _from_environment(self._api_type)
        if real is not None:
            return real
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            manager: AbstractContextManager[MockEndpoint] = portal.wrap_async_context_manager(
                MockEndpoint(api_key=EMULATOR_KEY)
            )
            emulator = stack.enter_context(manager)
            self._stack = stack.pop_all()
        return self._emulated(emulator)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
