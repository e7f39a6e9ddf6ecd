"""Every Python block of README.md and docs/ runs, against the endpoint emulator (rules: docs/writing-docs.md).

One :class:`MockEndpoint` (``default_deployment="auto"``, no key check) serves every block. Each document runs in
a process of its own (all documents at once), its blocks in order in one namespace, as notebook cells do:
``doc_blocks.py`` does the running; this module starts the processes and turns each block's result into one
test, ``test_block[docs/guide.md:54]``, plus one clean-up test per document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import Block, DocumentProcess, RunnerError, documents, parse_blocks

ROOT = Path(__file__).resolve().parents[2]
#: The longest a whole document may take (each block also has its own limit).
DOCUMENT_TIMEOUT = 120

BLOCKS = [
    block
    for path in documents(ROOT)
    for block in parse_blocks(path.read_text(), path.relative_to(ROOT).as_posix())
    if block.runs
]
#: The documents with blocks that run, each run by a process of its own.
DOCUMENTS = list(dict.fromkeys(block.document for block in BLOCKS))


@pytest.fixture(scope="module")
def runs(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DocumentProcess]]:
    """Every document's process, started together against the session's emulator."""
    scratch = tmp_path_factory.mktemp("doc-blocks")
    processes = {
        name: DocumentProcess(ROOT / name, ROOT, emulator_url, scratch / name.replace("/", "_")) for name in DOCUMENTS
    }
    try:
        yield processes
    finally:
        for process in processes.values():
            process.kill()


def results(runs: dict[str, DocumentProcess], document: str) -> dict[int, dict[str, Any]]:
    try:
        return runs[document].results(DOCUMENT_TIMEOUT)
    except RunnerError as exc:
        pytest.fail(str(exc), pytrace=False)


def report(block: Block, result: dict[str, Any]) -> str:
    """A failed block's text, what went wrong and what it printed."""
    source = "".join(f"    {line}\n" for line in block.source.splitlines())
    output = f"\n--- its output ---\n{result['output']}" if result["output"].strip() else ""
    return f"{block.id} failed:\n{source}\n{result['message']}{output}"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block(runs: dict[str, DocumentProcess], block: Block) -> None:
    """The block runs as written (or is skipped, with its reason)."""
    result = results(runs, block.document)[block.line]
    if result["status"] == "skipped":
        pytest.skip(result["message"])
    if result["status"] != "passed":
        pytest.fail(report(block, result), pytrace=False)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_leaves_nothing_open(runs: dict[str, DocumentProcess], document: str) -> None:
    """Once the models and clients the document left open are closed, asyncio has nothing to complain about."""
    result = results(runs, document)[0]
    assert result["status"] == "passed", result["message"] + "\n" + result["output"]


def test_the_harness_finds_the_blocks() -> None:
    """A parser that found no block would pass every document."""
    assert {"README.md", "docs/guide.md", "docs/migration.md"} <= set(DOCUMENTS)
    assert len(BLOCKS) > 30
