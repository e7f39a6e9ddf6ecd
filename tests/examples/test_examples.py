"""Every script in ``examples/`` runs as a user would run it and prints what it promises.

Each example runs in a subprocess (``python examples/<name>.py``) with the ``AZUREML_*`` variables removed,
so it starts the emulator in-process; a second test points a few of them at an emulator through those
variables, as a user points them at a real endpoint. Warnings are shown (``-W default -X dev``) and must
not appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from azml_client.testing import MockEndpoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KEY = "test-example-key"
EMULATOR_BANNER = "using the local emulator"

#: What each example must print (each string somewhere in its stdout).
EXPECTED: Mapping[str, tuple[str, ...]] = {
    "llama_dedicated_completion.py": ("echo: Write me a song about sparkling water:",),
    "llama_call_time_temperature.py": (
        "echo: Write me a song about sparkling water:",
        "model_kwargs after the call: {'temperature': 0.8, 'max_new_tokens': 400}",
    ),
    "serverless_completion.py": (
        "echo: Write me a song about sparkling water:",
        "finish_reason: stop",
        "usage: Usage(prompt_tokens=7, completion_tokens=8, total_tokens=15)",
    ),
    "bart_custom_formatter.py": ("echo: The city library reopened on Monday",),
    "dolly_prompt_template.py": (
        "echo: Write a 100 word essay about how to make friends.",
        "keeping a garden: echo: Write a 50 word essay about keeping a garden.",
        "running a first marathon: echo: Write a 50 word essay about running a first marathon.",
    ),
    "chat_dedicated.py": ("echo: Will the Collatz conjecture ever be solved?", "role: assistant"),
    "chat_serverless.py": (
        "echo: Will the Collatz conjecture ever be solved?\n",
        "echo: Will the Collatz\n",
        "finish_reason: length",
        "usage: Usage(prompt_tokens=7, completion_tokens=4, total_tokens=11)",
    ),
    "chat_streaming.py": (
        "echo: Tell me a story about a lighthouse keeper.\n",
        "finish_reason: stop",
        "usage: Usage(",
    ),
    "save_and_load.py": (
        '"formatter": "dolly"',
        '"presence_penalty": 0.072',
        '"max_retries": 4',
        "key in the file: False",
        "formatter: dolly",
        "echo: Tell me about sparkling water.",
    ),
}


def _run(name: str, extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AZUREML_")}
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-W", "default", "-X", "dev", str(EXAMPLES / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _check(result: subprocess.CompletedProcess[str], expected: tuple[str, ...]) -> None:
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, f"{text!r} not in the output:\n{result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_every_example_is_checked() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_emulator(name: str) -> None:
    result = _run(name)
    _check(result, EXPECTED[name])
    assert EMULATOR_BANNER in result.stderr


@pytest.fixture(scope="module")
def endpoint() -> Iterator[MockEndpoint]:
    """An emulator on a thread of its own, standing in for the user's endpoint."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(MockEndpoint(api_key=KEY)) as ep:
        yield ep


@pytest.mark.parametrize(
    ("name", "api_type", "deployment"),
    [
        ("llama_dedicated_completion.py", "dedicated", "openai"),
        ("dolly_prompt_template.py", None, "dolly"),
        ("chat_serverless.py", "serverless", None),
        ("chat_streaming.py", None, None),
    ],
)
def test_example_uses_the_endpoint_in_the_environment(
    endpoint: MockEndpoint, name: str, api_type: str | None, deployment: str | None
) -> None:
    env = {"AZUREML_ENDPOINT_URL": endpoint.url, "AZUREML_ENDPOINT_API_KEY": KEY}
    if api_type is not None:
        env["AZUREML_ENDPOINT_API_TYPE"] = api_type  # else the example's own api type
    if deployment is not None:
        env["AZUREML_DEPLOYMENT_NAME"] = deployment
    before = endpoint.request_count
    result = _run(name, env)
    _check(result, EXPECTED[name])
    assert EMULATOR_BANNER not in result.stderr
    assert endpoint.request_count > before
    last = endpoint.requests[-1]
    assert last.headers["authorization"] == f"Bearer {KEY}"
    assert last.deployment == deployment
