"""The doc-block harness itself: it finds blocks and directives, and a block that is wrong fails.

Two small Markdown documents, written here, run through the same runner as the real docs, against the same
emulator: one holds a block of each kind that must pass and of each kind that must fail, the other a block
that never ends (with a one-second limit).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import DocumentProcess, parse_blocks, point_at

FENCE = "```"

GOOD_AND_BAD = f"""\
# A document

{FENCE}python
import asyncio

import azml_client as az

shared = "defined in an earlier block"
{FENCE}

{FENCE}python
async with az.LLM("https://x.eastus.inference.ml.azure.com/score", formatter="openai") as llm:
    answer = await llm.ainvoke("top-level await")
assert answer == "echo: top-level await", answer
assert shared == "defined in an earlier block"
{FENCE}

{FENCE}python
with open("prompts.txt") as lines:
    assert lines.readline() == "Red is\\n"
{FENCE}

{FENCE}python
raise ValueError("a block that raises")
{FENCE}

{FENCE}python
def broken(:
{FENCE}

{FENCE}python
import warnings

warnings.warn("a block that warns", DeprecationWarning, stacklevel=1)
{FENCE}

{FENCE}python
async with az.EndpointClient(api_type="serverless") as client:
    pass
await client.post({{"messages": [{{"role": "user", "content": "Hi"}}]}}, route="chat")
{FENCE}

<!-- doc-test: skip reason="needs a subscription" -->
{FENCE}python
raise AssertionError("never runs")
{FENCE}

<!-- doc-test: run-twice -->
{FENCE}python
print("never runs either")
{FENCE}

{FENCE}python
import pytest


@pytest.mark.asyncio
async def test_passes() -> None:
    assert 1 + 1 == 2


@pytest.mark.asyncio
async def test_fails() -> None:
    assert 1 + 1 == 3
{FENCE}

{FENCE}python
import aiohttp


async def leak() -> None:
    global leaked
    leaked = aiohttp.ClientSession()

await leak()
{FENCE}
"""

NEVER_ENDS = f"""\
{FENCE}python
import time

time.sleep(60)
{FENCE}

{FENCE}python
print("the next block still runs")
{FENCE}
"""


@pytest.fixture(scope="module")
def ran(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[int, dict[str, Any]]]]:
    """Both documents run (at once), and their results by block line."""
    root = tmp_path_factory.mktemp("harness")
    processes = {}
    for name, text, env in [
        ("good_and_bad.md", GOOD_AND_BAD, {}),
        ("never_ends.md", NEVER_ENDS, {"DOC_TEST_BLOCK_TIMEOUT": "1"}),
    ]:
        (root / name).write_text(text)
        processes[name] = DocumentProcess(root / name, root, emulator_url, root / f"{name}.scratch", env)
    try:
        yield {name: process.results(60) for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()


def by_line(text: str) -> dict[int, str]:
    """Each Python block's first source line, by the line of its fence."""
    return {block.line: block.source.splitlines()[0] for block in parse_blocks(text, "x.md") if block.runs}


def outcome(ran: dict[str, dict[int, dict[str, Any]]], document: str, first_line: str) -> dict[str, Any]:
    text = GOOD_AND_BAD if document == "good_and_bad.md" else NEVER_ENDS
    [line] = [line for line, first in by_line(text).items() if first == first_line]
    return ran[document][line]


@pytest.mark.parametrize(
    "first_line",
    [
        "import asyncio",
        'async with az.LLM("https://x.eastus.inference.ml.azure.com/score", formatter="openai") as llm:',
        'with open("prompts.txt") as lines:',
    ],
)
def test_good_blocks_pass(ran: dict[str, Any], first_line: str) -> None:
    result = outcome(ran, "good_and_bad.md", first_line)
    assert result["status"] == "passed", result["message"]


@pytest.mark.parametrize(
    ("first_line", "needle"),
    [
        ('raise ValueError("a block that raises")', "ValueError: a block that raises"),
        ("def broken(:", "SyntaxError"),
        ("import warnings", "DeprecationWarning: a block that warns"),
        ('async with az.EndpointClient(api_type="serverless") as client:', "this EndpointClient is closed"),
        ('print("never runs either")', "unknown doc-test directive 'run-twice'"),
        ("import pytest", "pytest exited with 1"),
    ],
)
def test_bad_blocks_fail_and_say_why(ran: dict[str, Any], first_line: str, needle: str) -> None:
    result = outcome(ran, "good_and_bad.md", first_line)
    assert result["status"] == "failed"
    assert needle in result["message"] + result["output"]


def test_tracebacks_show_the_documents_lines(ran: dict[str, Any]) -> None:
    result = outcome(ran, "good_and_bad.md", 'raise ValueError("a block that raises")')
    [fence] = [line for line, first in by_line(GOOD_AND_BAD).items() if first.startswith("raise ValueError")]
    assert f'good_and_bad.md", line {fence + 1}, in <module>' in result["message"]
    assert 'raise ValueError("a block that raises")' in result["message"]


def test_a_test_module_block_runs_its_tests(ran: dict[str, Any]) -> None:
    result = outcome(ran, "good_and_bad.md", "import pytest")
    assert "1 failed, 1 passed" in result["output"]
    assert "assert (1 + 1) == 3" in result["output"]


def test_a_skip_directive_skips_with_its_reason(ran: dict[str, Any]) -> None:
    result = outcome(ran, "good_and_bad.md", 'raise AssertionError("never runs")')
    assert (result["status"], result["message"]) == ("skipped", "needs a subscription")


def test_a_document_that_leaves_a_session_open_fails_its_clean_up(ran: dict[str, Any]) -> None:
    result = ran["good_and_bad.md"][0]
    assert result["status"] == "failed"
    assert "Unclosed client session" in result["message"]


def test_a_block_that_never_ends_times_out_and_the_next_one_runs(ran: dict[str, Any]) -> None:
    result = outcome(ran, "never_ends.md", "import time")
    assert result["status"] == "failed"
    assert "BlockTimeout: the block ran longer than 1 s" in result["message"]
    assert result["seconds"] < 10
    after = outcome(ran, "never_ends.md", 'print("the next block still runs")')
    assert (after["status"], after["output"]) == ("passed", "the next block still runs\n")
    assert ran["never_ends.md"][0]["status"] == "passed"


def test_parse_blocks_reads_fences_directives_and_indentation() -> None:
    text = textwrap.dedent(
        """\
        Intro.

        ~~~python
        a = 1
        ~~~

        - a list item:

          ````py
          b = '''
          ```
          '''
          ````

        <!-- doc-test: skip reason="it needs Azure" -->

        ```python
        c = 3
        ```

        <!-- doc-test: skip -->
        ```python
        d = 4
        ```

        ```sh
        azml demo
        ```

        ```
        plain
        ```
        """
    )
    blocks = parse_blocks(text, "doc.md")
    assert [(b.line, b.language, b.runs) for b in blocks] == [
        (3, "python", True),
        (9, "py", True),
        (17, "python", True),
        (22, "python", True),
        (26, "sh", False),
        (30, "", False),
    ]
    assert blocks[0].source == "a = 1\n"
    assert blocks[1].source == "b = '''\n```\n'''\n"
    assert (blocks[2].skip, blocks[2].error) == ("it needs Azure", None)
    assert blocks[3].skip is None
    assert "unknown doc-test directive 'skip'" in (blocks[3].error or "")
    assert blocks[0].id == "doc.md:3"


def test_point_at_replaces_azure_ml_hosts_only() -> None:
    source = (
        'a = "https://my-endpoint.eastus2.inference.ml.azure.com/score"\n'
        'b = "https://<name>.<region>.models.ai.azure.com/v1/chat/completions?api-version=1"\n'
        'c = "https://example.com/score"\n'
    )
    assert point_at(source, "http://127.0.0.1:9/") == (
        'a = "http://127.0.0.1:9/score"\n'
        'b = "http://127.0.0.1:9/v1/chat/completions?api-version=1"\n'
        'c = "https://example.com/score"\n'
    )


def test_the_harness_files_are_where_the_docs_say() -> None:
    rules = (Path(__file__).resolve().parents[2] / "docs" / "writing-docs.md").read_text()
    assert '<!-- doc-test: skip reason="' in rules
    assert "tests/docs/test_doc_blocks.py" in rules
