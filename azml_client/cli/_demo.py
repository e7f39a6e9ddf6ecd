"""``azml demo``: the emulator in-process, with transient faults, and a batch of prompts through the real client."""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, Final, TextIO

import orjson

from azml_client._config import RetryPolicy
from azml_client._models import LLM, ChatModel
from azml_client._transport import EndpointClient
from azml_client.cli._batch import BatchJob, BatchOptions, exit_code
from azml_client.testing import MockEndpoint, echo_text

__all__ = ["demo_prompt", "run_demo"]

#: The faults the demo injects: all transient, so the client's retries absorb them.
DEMO_FAULTS: Final = ("429", "503", "drop", "truncate")
#: The demo's retry policy: with 5 % faults, five retries make a lost request vanishingly rare; the emulator's
#: faults are instant, so the backoff starts at 0.1 s (the default 0.5 s would leave the run waiting on its tail).
DEMO_RETRY: Final = RetryPolicy(max_retries=5, initial_delay=0.1, max_delay=2.0)
_TOPICS: Final = (
    "the water cycle",
    "binary search",
    "why the sky is blue",
    "TCP slow start",
    "photosynthesis",
    "the Fourier transform",
    "how vaccines work",
    "B-trees",
)


def demo_prompt(index: int) -> str:
    """The demo's prompt number ``index`` (the emulator answers ``echo_text`` of it)."""
    return f"In one sentence, explain {_TOPICS[index % len(_TOPICS)]} (question {index})."


def _demo_line(index: int) -> bytes:
    """Every third line is a chat conversation, the others plain prompts: both surfaces are exercised."""
    line: dict[str, Any] = {"id": f"q{index:05d}"}
    if index % 3 == 2:
        line["messages"] = [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": demo_prompt(index)},
        ]
    else:
        line["prompt"] = demo_prompt(index)
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def _write_prompts(path: Path, count: int) -> None:
    with path.open("wb") as stream:
        for index in range(count):
            stream.write(_demo_line(index))


def _check_results(path: Path, out: TextIO) -> int:
    """Compare every output line with what the emulator must answer; print a few; return the mismatches."""
    wrong = 0
    samples: list[str] = []
    retried: list[str] = []
    with path.open("rb") as stream:
        for raw in stream:
            record = orjson.loads(raw)
            index = int(str(record["id"])[1:])
            if record["error"] is not None or record["output"] != echo_text(demo_prompt(index)):
                wrong += 1
                continue
            shown = f"  {record['id']}  attempts={record['attempts']}  {record['output']!r}"
            if record["attempts"] > 1 and len(retried) < 2:
                retried.append(shown)
            elif record["attempts"] == 1 and len(samples) < 3:
                samples.append(shown)
    samples.extend(retried)
    out.write("A few results (the emulator is not a model: it echoes the prompt):\n")
    out.write("\n".join(samples) + "\n")
    return wrong


async def run_demo(
    *,
    count: int = 3000,
    concurrency: int = 64,
    fault_rate: float = 0.05,
    latency: float = 0.01,
    output: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the demo and return its exit status (0 when every result came back right).

    Args:
        count: how many prompts to send.
        concurrency: requests in flight.
        fault_rate: the probability of a transient fault (429, 503, dropped connection, cut body) per request.
        latency: the emulator's delay before each answer, in seconds.
        output: where to keep the results (default: a temporary file, removed at the end).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    key = secrets.token_urlsafe(24)
    retry = DEMO_RETRY
    async with MockEndpoint(
        api_key=key, latency=latency, fault_rate=fault_rate, fault_kinds=DEMO_FAULTS, seed=2024
    ) as endpoint:
        out.write(
            f"azml demo: endpoint emulator on {endpoint.url} (serverless routes, key required, "
            f"{latency * 1000:g} ms latency, {fault_rate:.0%} transient faults: 429, 503, dropped connections, "
            f"cut bodies).\nSending {count} prompts ({count // 3} of them chat) through the real client, "
            f"{concurrency} at a time, up to {retry.max_retries} retries each (backoff from {retry.initial_delay:g} s)."
            "\n\n"
        )
        out.flush()
        with tempfile.TemporaryDirectory(prefix="azml-demo-") as tmp:
            source = Path(tmp) / "prompts.jsonl"
            _write_prompts(source, count)
            target = output or str(Path(tmp) / "results.jsonl")
            options = BatchOptions(
                input=str(source),
                output=target,
                concurrency=concurrency,
                overwrite=True,
                resume_command="azml demo   (the demo starts over; a real batch resumes with --resume)",
            )
            client = EndpointClient(
                endpoint.url, key, api_type="serverless", retry=retry, max_connections=max(100, concurrency)
            )
            llm = LLM(client=client, formatter="openai")
            chat = ChatModel(client=client, formatter="openai-chat")
            async with client, llm, chat:
                with BatchJob(options, stderr=err) as job:
                    job.prepare()
                    job.open_output()
                    stats = await job.run(llm, chat)
                    job.report()
            err.flush()
            out.write("\n")
            wrong = _check_results(Path(target), out)
        out.write(
            f"\nThe emulator served {endpoint.request_count} requests and injected {endpoint.fault_count} faults; "
            f"the client retried {stats.retries} times.\n"
        )
        if stats.interrupted is None:
            verdict = "all correct" if not wrong else f"{wrong} missing or wrong"
            out.write(f"{stats.done} results checked against what the emulator must answer: {verdict}.\n")
        if output:
            out.write(f"Results kept in {output}.\n")
        out.flush()
    status = exit_code(stats)
    return status if status or not wrong else 1
