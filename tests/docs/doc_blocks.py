"""Find the Python code blocks of the project's Markdown documents, and run one document's blocks in order.

The rules are written for doc writers in ``docs/writing-docs.md``; in short:

- Every fenced block tagged ``python`` (or ``py``) in ``README.md`` and ``docs/**/*.md`` runs, in document
  order, in one namespace per document, as the cells of a notebook do: a block may use what an earlier block
  of the same document defined, and top-level ``await`` works (on one event loop per document).
- A block whose top level defines ``test_*`` functions is a test module: pytest runs it, in a file of its own.
- A block that cannot run here says so on the line right before its fence, with a reason:
  ``<!-- doc-test: skip reason="needs an Azure subscription" -->``.
- URLs on the hosts of Azure ML endpoints (``https://<anything>.inference.ml.azure.com``,
  ``https://<anything>.models.ai.azure.com``) point at the emulator, which runs with
  ``default_deployment="auto"``; ``AZUREML_ENDPOINT_URL`` and ``AZUREML_ENDPOINT_API_KEY`` point at it too.
  Blocks run in a scratch directory that holds a ``prompts.txt``.
- A block fails on an exception, on any warning, and after :data:`BLOCK_TIMEOUT` seconds. At the end, the
  models and clients the document left open are closed, and asyncio's complaints (an unclosed session, a task
  destroyed while pending) fail the document's clean-up check.

Run as a script, ``python doc_blocks.py DOCUMENT RESULTS.json`` runs one document's blocks (in the process
that runs it: the test starts one per document) and writes one result per block to ``RESULTS.json``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import gc
import inspect
import io
import json
import linecache
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

#: The languages of the blocks that run.
PYTHON_TAGS = frozenset({"python", "py"})
#: Seconds one block may take (override with the ``DOC_TEST_BLOCK_TIMEOUT`` environment variable).
BLOCK_TIMEOUT = float(os.environ.get("DOC_TEST_BLOCK_TIMEOUT", "30"))
#: What the line before a fence says to skip the block: ``<!-- doc-test: skip reason="..." -->``.
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r'^skip\s+reason="(?P<reason>[^"]+)"$')
#: The hosts of Azure ML endpoints, whose URLs point at the emulator when the blocks run.
AZURE_URL = re.compile(r"https://[^\s/\"'`]+\.(?:inference\.ml|models\.ai)\.azure\.com")
#: The pytest plugins a test-module block runs with: pytest-asyncio and anyio's.
TEST_MODULE_PLUGINS = ("-p", "no:cacheprovider", "-p", "pytest_asyncio.plugin", "-p", "anyio.pytest_plugin")
#: The file the blocks find in their working directory.
SCRATCH_FILES = {"prompts.txt": "Red is\nBlue is\nGreen is\n"}
#: What asyncio logs when something is left open or lost.
ASYNCIO_COMPLAINTS = ("Unclosed", "unclosed", "Task was destroyed", "exception was never retrieved")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document.

    Attributes:
        document: the document's path, relative to the repository root (``docs/guide.md``).
        line: the line of the opening fence (1-based).
        language: the fence's info string, lower case ("" when none).
        source: the block's text, without the fences and the fence's indentation.
        skip: the reason given by a ``skip`` directive, or None.
        error: what is wrong with the block's directive, or None.
    """

    document: str
    line: int
    language: str
    source: str
    skip: str | None = None
    error: str | None = None

    @property
    def runs(self) -> bool:
        """Whether the harness runs this block (a Python block)."""
        return self.language in PYTHON_TAGS

    @property
    def is_test_module(self) -> bool:
        """Whether the block defines ``test_*`` functions at its top level (pytest runs it)."""
        try:
            tree = ast.parse(self.source)
        except SyntaxError:
            return False
        return any(
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
            for node in tree.body
        )

    @property
    def id(self) -> str:
        """``document:line``, the block's test id."""
        return f"{self.document}:{self.line}"


@dataclass(frozen=True)
class Result:
    """What happened to one block, or (``line`` 0) to the document's clean-up."""

    line: int
    status: str  # "passed", "failed" or "skipped"
    message: str = ""
    output: str = ""
    seconds: float = 0.0


def documents(root: Path) -> list[Path]:
    """The documents whose blocks run: ``README.md`` and every ``docs/**/*.md``."""
    return [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]


def parse_blocks(text: str, document: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the directive on the line before its fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = lines[i].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        skip, error = _directive(lines, start)
        blocks.append(Block(document, start + 1, info, "\n".join(body) + "\n", skip, error))
    return blocks


def _directive(lines: list[str], fence: int) -> tuple[str | None, str | None]:
    """The skip reason and the directive error of the block whose fence is at ``lines[fence]``."""
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None, None
    match = DIRECTIVE.match(lines[before])
    if match is None:
        if "doc-test" in lines[before]:
            return None, f"line {before + 1}: a doc-test comment must be one line: <!-- doc-test: ... -->"
        return None, None
    skip = SKIP.match(match["body"])
    if skip is None:
        return None, (
            f"line {before + 1}: unknown doc-test directive {match['body']!r}; "
            'the only one is <!-- doc-test: skip reason="why it cannot run here" -->'
        )
    return skip["reason"], None


def point_at(source: str, url: str) -> str:
    """``source`` with the scheme and host of every Azure ML endpoint URL replaced by ``url``."""
    return AZURE_URL.sub(url.rstrip("/"), source)


# --- running one document (in the process that runs this file) -------------------------------------------------


class BlockTimeout(Exception):
    """A block ran longer than :data:`BLOCK_TIMEOUT`."""


class _Complaints(logging.Handler):
    """Collects what asyncio logs about things left open or lost."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(text in message for text in ASYNCIO_COMPLAINTS):
            self.messages.append(message)

    def take(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise BlockTimeout(f"the block ran longer than {BLOCK_TIMEOUT:g} s")


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield out


class DocumentRunner:
    """Runs one document's blocks in order, in one namespace and on one event loop, as a notebook would."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.loop = asyncio.new_event_loop()
        self.complaints = _Complaints()
        logging.getLogger("asyncio").addHandler(self.complaints)
        # Tracebacks show the document's own lines.
        self.filename = str(path)
        text = path.read_text()
        linecache.cache[self.filename] = (len(text), None, text.splitlines(keepends=True), self.filename)

    def run(self, blocks: list[Block]) -> list[Result]:
        """Run ``blocks`` (those of this document that run) and return their results, then the clean-up's."""
        results = []
        for block in [*blocks, None]:
            started = time.perf_counter()
            result = self.clean_up() if block is None else self.run_block(block)
            results.append(dataclasses.replace(result, seconds=round(time.perf_counter() - started, 3)))
        return results

    def run_block(self, block: Block) -> Result:
        """Run one block; a failure is returned, never raised."""
        if block.error is not None:
            return Result(block.line, "failed", block.error)
        if block.skip is not None:
            return Result(block.line, "skipped", block.skip)
        # Padding keeps the document's line numbers in tracebacks.
        source = "\n" * block.line + point_at(block.source, self.url)
        with _captured() as out, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, BLOCK_TIMEOUT)
            try:
                if block.is_test_module:
                    self._run_tests(block, source)
                else:
                    self._execute(source)
            except BaseException as exc:
                signal.setitimer(signal.ITIMER_REAL, 0)
                return Result(block.line, "failed", _describe(exc), out.getvalue())
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        problems = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
        problems += [f"asyncio: {message}" for message in self.complaints.take()]
        if problems:
            return Result(block.line, "failed", "the block warned:\n" + "\n".join(problems), out.getvalue())
        return Result(block.line, "passed", "", out.getvalue())

    def _execute(self, source: str) -> None:
        code = compile(source, self.filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        if code.co_flags & inspect.CO_COROUTINE:
            self.loop.run_until_complete(eval(code, self.namespace))
        else:
            exec(code, self.namespace)

    def _run_tests(self, block: Block, source: str) -> None:
        name = f"test_doc_{Path(block.document).stem.replace('-', '_')}_{block.line}.py"
        Path(name).write_text(source)  # the padding keeps the document's line numbers in pytest's report
        command = [sys.executable, "-m", "pytest", "-q", "-c", "pytest.ini", *TEST_MODULE_PLUGINS, name]
        # Only the plugins a test module of the docs may use: the others would triple pytest's start-up time.
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        run = subprocess.run(command, capture_output=True, text=True, timeout=BLOCK_TIMEOUT, env=env, check=False)
        print(run.stdout, run.stderr, sep="")
        if run.returncode != 0:
            raise AssertionError(f"pytest exited with {run.returncode}: {shlex.join(command)}")

    def clean_up(self) -> Result:
        """Close what the document left open (models, clients), then report asyncio's complaints."""
        with _captured() as out, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            failure = self._close_models()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            self.namespace.clear()
            gc.collect()
        if failure:
            return Result(0, "failed", failure, out.getvalue())
        problems = [f"{w.category.__name__}: {w.message}" for w in caught]
        problems += [f"asyncio: {message}" for message in self.complaints.take()]
        if problems:
            return Result(0, "failed", "the document left something open:\n" + "\n".join(problems), out.getvalue())
        return Result(0, "passed", "", out.getvalue())

    def _close_models(self) -> str | None:
        """Close the SDK's objects in the namespace (a model, a client...); what went wrong, or None."""
        # A method of its own, so that no local variable keeps the last value alive for the garbage collection.
        for value in list(self.namespace.values()):
            close = getattr(value, "aclose", None)
            module = getattr(type(value), "__module__", "")
            if module.startswith("azml_client") and inspect.iscoroutinefunction(close):
                try:
                    self.loop.run_until_complete(close())
                except Exception as exc:
                    return f"closing {value!r} failed: {_describe(exc)}"
        return None


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def prepare_scratch(directory: Path) -> None:
    """Fill a block's working directory: the files the blocks read, and a pytest.ini for test-module blocks."""
    for name, text in SCRATCH_FILES.items():
        (directory / name).write_text(text)
    (directory / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


# --- starting a document's process (in the test) ---------------------------------------------------------------

#: The key in AZUREML_ENDPOINT_API_KEY; the emulator checks none, so blocks may send any key ("...").
KEY = "doc-test-key"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class RunnerError(Exception):
    """A document's process did not produce results (it crashed or ran out of time)."""


def block_env(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a document's process: the emulator in the SDK's variables, no proxy in the way."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AZUREML_") and name.lower() not in _PROXY_VARIABLES and name != "PYTHONWARNINGS"
    }
    env.update(AZUREML_ENDPOINT_URL=url, AZUREML_ENDPOINT_API_KEY=KEY, NO_PROXY="127.0.0.1,localhost")
    env.update(extra or {})
    return env


class DocumentProcess:
    """One document's blocks, running in a process of their own (started at once; :meth:`results` waits)."""

    def __init__(self, document: Path, root: Path, url: str, scratch: Path, env: dict[str, str] | None = None) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        prepare_scratch(scratch)
        self._path = scratch / "results.json"
        self._name = document.name
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(document), str(self._path), str(root)],
            cwd=scratch,
            env=block_env(url, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._results: dict[int, dict[str, Any]] | None = None

    def results(self, timeout: float) -> dict[int, dict[str, Any]]:
        """The results by block line (0: the clean-up), once the process has ended.

        Raises:
            RunnerError: the process ran out of ``timeout`` or ended without results.
        """
        if self._results is None:
            try:
                output, _ = self._process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                output, _ = self._process.communicate()
                raise RunnerError(f"{self._name}: its blocks took longer than {timeout:g} s\n{output}") from None
            if self._process.returncode != 0 or not self._path.exists():
                raise RunnerError(f"{self._name}: the runner exited with {self._process.returncode}\n{output}")
            self._results = {result["line"]: result for result in json.loads(self._path.read_text())}
        return self._results

    def kill(self) -> None:
        """Stop the process if it still runs."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()


def main(argv: list[str]) -> int:
    """``doc_blocks.py DOCUMENT RESULTS.json [ROOT]``: run a document's blocks against ``AZUREML_ENDPOINT_URL``."""
    document, results_path = Path(argv[0]).resolve(), Path(argv[1])
    root = Path(argv[2]).resolve() if len(argv) > 2 else document.parent
    name = document.relative_to(root).as_posix() if document.is_relative_to(root) else document.name
    blocks = [block for block in parse_blocks(document.read_text(), name) if block.runs]
    runner = DocumentRunner(document, os.environ["AZUREML_ENDPOINT_URL"])
    results = runner.run(blocks)
    results_path.write_text(json.dumps([asdict(result) for result in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
