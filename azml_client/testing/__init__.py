"""A local emulator of Azure ML online endpoints, for tests, soak runs and ``azml mock-server``.

``MockEndpoint`` is a real aiohttp server on 127.0.0.1 that speaks the dedicated ``/score`` schemas of
every built-in formatter and the serverless OpenAI-compatible completions and chat routes (with SSE
streaming and tool calls), checks keys, records requests, injects faults and pushes back as Azure does
(``capacity=`` / ``queue=``: a managed deployment's slots, queue, 429 and 408; ``requests_per_minute=`` /
``tokens_per_minute=``: a serverless quota over short windows)::

    from azml_client.testing import Fault, MockEndpoint, echo_text

    async with MockEndpoint(api_key="k") as ep:
        ep.enqueue(Fault.status(429, headers={"retry-after-ms": "20"}))
        ...  # point a client at ep.url / ep.score_url
        assert ep.request_count == 2

It is not a language model: the text it generates is deterministic, ``echo_text(prompt)``; JSON
``response_format`` answers are deterministic samples. Dedicated deployments are picked as on Azure, by the
``azureml-model-deployment`` header (``MockEndpoint(default_deployment="auto")`` picks them by the body's
shape for code that names none). Where ``HTTP_PROXY`` / ``HTTPS_PROXY`` are set, keep the emulator's traffic
direct with ``NO_PROXY=127.0.0.1,localhost`` or the client's ``proxy=False``.
This package depends on nothing else in ``azml_client``. Its names are imported on first use, so that ``azml``
can read the emulator's flags (``azml_client.testing._cli``) without loading the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azml_client.testing._faults import Fault
    from azml_client.testing._payloads import echo_text
    from azml_client.testing._server import MockEndpoint, RecordedRequest, run_mock_server

__all__ = ["Fault", "MockEndpoint", "RecordedRequest", "echo_text", "run_mock_server"]

_HOMES = {
    "Fault": "_faults",
    "echo_text": "_payloads",
    "MockEndpoint": "_server",
    "RecordedRequest": "_server",
    "run_mock_server": "_server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
