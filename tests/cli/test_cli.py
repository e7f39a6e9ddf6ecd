"""The ``azml`` command run for real, in a subprocess, against the endpoint emulator running in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from azml_client.cli import main
from azml_client.testing import Fault, MockEndpoint, echo_text
from tests.servers import cut_short, serving

AZML = (sys.executable, "-m", "azml_client.cli")
KEY = "canary-" + secrets.token_hex(12)
JSON = dict[str, Any]
ASYNCIO_COMPLAINTS = ("Task was destroyed", "exception was never retrieved", "Unclosed", "unclosed", "Warning:")


@attrs.frozen
class Run:
    """What one ``azml`` run did."""

    returncode: int
    stdout: str
    stderr: str


def azml_env(url: str | None = None, *, key: str | None = KEY, **extra: str) -> dict[str, str]:
    """The environment of an ``azml`` subprocess: no AZUREML_* settings but the ones given."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AZUREML_")}
    env["PYTHONWARNINGS"] = "always::ResourceWarning"  # an unclosed socket or file shows up in stderr
    if url is not None:
        env["AZUREML_ENDPOINT_URL"] = url
    if key is not None:
        env["AZUREML_ENDPOINT_API_KEY"] = key
    env.update(extra)
    return env


async def start(*args: str, env: dict[str, str], stdin: bool = False, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *AZML,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=kwargs.pop("stdout", asyncio.subprocess.PIPE),
        stderr=kwargs.pop("stderr", asyncio.subprocess.PIPE),
        env=env,
        **kwargs,
    )


async def finish(proc: asyncio.subprocess.Process, stdin: bytes | None = None, timeout: float = 30) -> Run:
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    run = Run(proc.returncode, (out or b"").decode(), (err or b"").decode())
    for complaint in ASYNCIO_COMPLAINTS:  # the subprocess's loop must end as cleanly as the tests' own
        assert complaint not in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return run


async def azml(*args: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 30) -> Run:
    proc = await start(*args, env=env, stdin=stdin is not None)
    return await finish(proc, stdin, timeout)


def write_jsonl(path: Path, lines: Sequence[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def read_results(path: Path) -> list[JSON]:
    raw = path.read_bytes()
    assert not raw or raw.endswith(b"\n"), "the last line is not whole"
    return [orjson.loads(line) for line in raw.splitlines()]


def prompts(count: int) -> list[JSON]:
    return [{"id": f"p{i}", "prompt": f"prompt number {i}"} for i in range(count)]


def assert_complete(results: list[JSON], lines: list[JSON]) -> None:
    """Exactly one line per input id, each correct."""
    by_id = {}
    for result in results:
        assert result["id"] not in by_id, f"id {result['id']} written twice"
        by_id[result["id"]] = result
    assert set(by_id) == {line["id"] for line in lines}
    for line in lines:
        result = by_id[line["id"]]
        assert result["error"] is None, result
        assert result["output"] == echo_text(line["prompt"])


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Poll ``condition`` until it holds."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def assert_secret_kept(run: Run, *files: Path) -> None:
    assert KEY not in run.stdout
    assert KEY not in run.stderr
    for path in files:
        if path.exists():
            assert KEY.encode() not in path.read_bytes()


@pytest.fixture
async def ep() -> AsyncIterator[MockEndpoint]:
    async with MockEndpoint(api_key=KEY) as endpoint:
        yield endpoint


# ------------------------------------------------------------------------------------------- complete / chat


async def test_complete_prints_the_text_and_json(ep: MockEndpoint) -> None:
    run = await azml("complete", "hello there", env=azml_env(ep.url))
    assert (run.returncode, run.stdout) == (0, "echo: hello there\n")
    run = await azml(
        "complete",
        "one two three",
        "--json",
        "--param",
        "max_new_tokens=2",
        "--param",
        "note=plain",
        env=azml_env(ep.url),
    )
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout) == {"output": "echo: one", "finish_reason": None, "usage": None}
    assert ep.requests[-1].json["parameters"] == {"max_new_tokens": 2, "note": "plain"}
    assert_secret_kept(run)


async def test_chat_streams_on_serverless_and_reads_stdin(ep: MockEndpoint) -> None:
    env = azml_env(ep.url, AZUREML_ENDPOINT_API_TYPE="serverless")
    run = await azml("chat", "what is up", "--system", "Be brief.", "--stream", env=env)
    assert (run.returncode, run.stdout) == (0, "echo: what is up\n")
    body = ep.requests[-1].json
    assert body["stream"] is True
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    run = await azml("chat", "-", "--json", env=env, stdin=b"from stdin")
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout)["output"] == "echo: from stdin"
    run = await azml("complete", "streamed words here", "--stream", "--api-type", "serverless", env=azml_env(ep.url))
    assert (run.returncode, run.stdout) == (0, "echo: streamed words here\n")


async def test_errors_exit_1_and_usage_errors_exit_2(ep: MockEndpoint) -> None:
    ep.enqueue(Fault.status(400))
    run = await azml("complete", "x", env=azml_env(ep.url))
    assert run.returncode == 1
    assert "BadRequestError" in run.stderr
    run = await azml("complete", "x", "--api-type", "serverless", "--formatter", "gpt2", env=azml_env(ep.url))
    assert run.returncode == 2
    assert "openai" in run.stderr  # the hint names the formatter to use
    assert ep.request_count == 1


# Usage errors are found before anything is sent (or any loop runs): the entry point is called in-process.
NOWHERE = "http://127.0.0.1:9"  # the discard port: a request sent there would fail with exit 1, not 2


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse
        status = int(exc.code or 0)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nosuch"],
        ["complete"],
        ["complete", "x", "--param", "novalue"],
        ["complete", "x", "--stream", "--json"],
        ["complete", "x", "--timeout", "-1"],
        ["chat", "x", "--max-retries", "many"],
        ["batch", "in.jsonl"],
        ["batch", "in.jsonl", "-o", "out.jsonl", "--concurrency", "0"],
        ["mock-server", "--fault-rate", "2"],
        ["demo", "--count", "0"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    status, _ = run_main(capsys, *args)
    assert status == 2


def test_settings_errors_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZUREML_ENDPOINT_URL", raising=False)
    status, err = run_main(capsys, "complete", "x")
    assert status == 2
    assert "AZUREML_ENDPOINT_URL" in err
    status, err = run_main(capsys, "chat", "x", "--endpoint-url", NOWHERE, "--formatter", "gpt2")
    assert status == 2
    assert "completion formatter" in err or "chat formatter" in err
    status, err = run_main(capsys, "complete", "x", "--endpoint-url", NOWHERE, "--param", "timeout=3")
    assert status == 2
    assert "--timeout" in err or "transport setting" in err


async def test_key_comes_from_a_file_and_is_never_printed(ep: MockEndpoint, tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    run = await azml("complete", "hi", "--api-key-file", str(key_file), env=azml_env(ep.url, key=None))
    assert (run.returncode, run.stdout) == (0, "echo: hi\n")
    assert ep.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    # A wrong key: the 401 is reported, and neither key shows anywhere.
    ep.accepted_keys = {"another-" + KEY}
    source = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    run = await azml("batch", str(source), "-o", str(out), env=azml_env(ep.url))
    assert run.returncode == 1
    assert {line["error"]["type"] for line in read_results(out)} == {"AuthenticationError"}
    assert_secret_kept(run, out)
    run = await azml("complete", "hi", "--api-key-file", str(tmp_path / "missing"), env=azml_env(ep.url, key=None))
    assert run.returncode == 2
    assert "key file" in run.stderr


# ------------------------------------------------------------------------------------------------ batch


async def test_batch_jsonl_with_chat_lines_params_and_stop(ep: MockEndpoint, tmp_path: Path) -> None:
    lines: list[Any] = [
        {"id": "a", "prompt": "first prompt", "temperature": 0.5},
        "a bare string prompt",
        {"id": 7, "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "a chat line"}]},
        {"id": "stop", "prompt": "cut here please", "stop": " please"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    env = azml_env(ep.url, AZUREML_ENDPOINT_API_TYPE="serverless")
    run = await azml("batch", str(source), "-o", str(out), "--param", "max_tokens=40", env=env)
    assert run.returncode == 0, run.stderr
    results = {line["id"]: line for line in read_results(out)}
    assert set(results) == {"a", 2, 7, "stop"}
    assert results["a"]["output"] == echo_text("first prompt")
    assert results[2]["output"] == echo_text("a bare string prompt")
    assert results[7]["output"] == echo_text("a chat line")
    assert results["stop"]["output"] == "echo: cut here"
    for result in results.values():
        assert list(result) == ["id", "output", "finish_reason", "usage", "error", "attempts", "latency_ms"]
        assert result["error"] is None
        assert result["attempts"] == 1
        assert result["finish_reason"] == "stop"
        assert result["usage"]["total_tokens"] > 0
        assert result["latency_ms"] >= 0
    bodies = {request.path: request.json for request in ep.requests}
    assert bodies["/v1/chat/completions"]["max_tokens"] == 40
    sent = [request.json for request in ep.requests if request.json.get("prompt") == "first prompt"]
    assert sent[0]["temperature"] == 0.5
    assert "4 succeeded, 0 failed" in run.stderr
    assert "req/s" in run.stderr
    assert "\r" not in run.stderr  # no progress line when stderr is not a terminal
    assert_secret_kept(run, out)


async def test_batch_text_from_stdin_and_to_stdout(ep: MockEndpoint, tmp_path: Path) -> None:
    text = "first line\n\n  second line  \r\nthird line"
    out = tmp_path / "out.jsonl"
    run = await azml("batch", "-", "-o", str(out), env=azml_env(ep.url), stdin=text.encode())
    assert run.returncode == 0, run.stderr
    results = {line["id"]: line["output"] for line in read_results(out)}
    assert results == {1: echo_text("first line"), 3: echo_text("  second line  "), 4: echo_text("third line")}
    source = tmp_path / "prompts.txt"
    source.write_text('"quoted" text\n{not json}\n')
    run = await azml("batch", str(source), "-o", "-", env=azml_env(ep.url))
    assert run.returncode == 0, run.stderr
    assert sorted(orjson.loads(line)["output"] for line in run.stdout.splitlines()) == [
        echo_text('"quoted" text'),
        echo_text("{not json}"),
    ]


async def test_ordered_writes_in_input_order(ep: MockEndpoint, tmp_path: Path) -> None:
    lines = prompts(12)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    ep.enqueue(Fault.delay(0.4))  # the first request finishes last
    out = tmp_path / "out.jsonl"
    run = await azml("batch", str(source), "-o", str(out), "--concurrency", "4", env=azml_env(ep.url))
    assert run.returncode == 0, run.stderr
    assert [line["id"] for line in read_results(out)][-1] == "p0"
    ep.enqueue(Fault.delay(0.4))
    run = await azml(
        "batch", str(source), "-o", str(out), "--overwrite", "--ordered", "--concurrency", "4", env=azml_env(ep.url)
    )
    assert run.returncode == 0, run.stderr
    assert [line["id"] for line in read_results(out)] == [line["id"] for line in lines]


async def test_malformed_lines_are_reported_with_their_numbers(ep: MockEndpoint, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"id": "ok1", "prompt": "fine"}\n'
        b'{"id": "bad", "prompt": \n'
        b"\n"
        b'{"id": "nothing"}\n'
        b'{"id": "role", "messages": [{"role": "robot", "content": "x"}]}\n'
        b"42\n"
        b'{"id": "ok2", "prompt": "also fine"}\n'
    )
    out = tmp_path / "out.jsonl"
    run = await azml("batch", str(source), "-o", str(out), env=azml_env(ep.url))
    assert run.returncode == 2
    for number in (2, 4, 5, 6):
        assert f"line {number}:" in run.stderr
    assert "line 1:" not in run.stderr
    assert "--skip-invalid" in run.stderr
    assert ep.request_count == 0
    assert not out.exists()
    run = await azml("batch", str(source), "-o", str(out), "--skip-invalid", env=azml_env(ep.url))
    assert run.returncode == 0, run.stderr
    assert "line 5:" in run.stderr
    assert sorted(line["id"] for line in read_results(out)) == ["ok1", "ok2"]


async def test_duplicate_ids_stop_the_batch_before_any_request(ep: MockEndpoint, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"}, {"id": 2, "prompt": "w"}],
    )
    out = tmp_path / "out.jsonl"
    run = await azml("batch", str(source), "-o", str(out), env=azml_env(ep.url))
    assert run.returncode == 2
    assert "id 'a' is used by lines 1, 3" in run.stderr
    assert ep.request_count == 0
    assert not out.exists()
    # A line without an id gets its line number, which an explicit integer id may already hold.
    stdin = b'{"id": 2, "prompt": "x"}\n"second line"\n'
    run = await azml("batch", "-", "-o", str(out), env=azml_env(ep.url), stdin=stdin)
    assert run.returncode == 2
    assert "id 2 is used by lines 1, 2" in run.stderr
    assert ep.request_count == 0


async def test_permanent_failures_become_error_lines(ep: MockEndpoint, tmp_path: Path) -> None:
    lines = prompts(6)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    ep.enqueue(Fault.status(400), Fault.status(400))
    run = await azml("batch", str(source), "-o", str(out), "--concurrency", "1", env=azml_env(ep.url))
    assert run.returncode == 1
    results = read_results(out)
    assert len(results) == 6
    failed = [line for line in results if line["error"] is not None]
    assert [line["id"] for line in failed] == ["p0", "p1"]
    for line in failed:
        assert line["error"]["type"] == "BadRequestError"
        assert "400" in line["error"]["message"]
        assert (line["output"], line["attempts"]) == (None, 1)
    assert "4 succeeded, 2 failed" in run.stderr
    # A resume keeps the failed lines (and so still exits 1); --retry-failed sends them again.
    run = await azml("batch", str(source), "-o", str(out), "--resume", env=azml_env(ep.url))
    assert (run.returncode, len(read_results(out))) == (1, 6)
    run = await azml("batch", str(source), "-o", str(out), "--resume", "--retry-failed", env=azml_env(ep.url))
    assert run.returncode == 0, run.stderr
    assert_complete(read_results(out), lines)


def test_out_is_protected_and_batch_options_are_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AZUREML_ENDPOINT_URL", NOWHERE)
    source = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    status, err = run_main(capsys, "batch", str(source), "-o", str(out))
    assert status == 2
    assert "--resume" in err
    for extra in (["--resume", "--overwrite"], ["--retry-failed"], ["--input-format", "csv"]):
        status, _ = run_main(capsys, "batch", str(source), "-o", str(out), *extra)
        assert status == 2, extra
    status, err = run_main(capsys, "batch", str(source), "-o", "-", "--resume")
    assert status == 2
    assert "stdout" in err
    status, err = run_main(capsys, "batch", str(source), "-o", str(source), "--overwrite")
    assert status == 2
    assert "same file" in err
    status, err = run_main(capsys, "batch", str(tmp_path / "missing.jsonl"), "-o", str(out), "--overwrite")
    assert status == 2
    assert "cannot read" in err
    status, err = run_main(capsys, "batch", str(source), "-o", str(tmp_path / "no" / "out.jsonl"))
    assert status == 2
    assert "cannot write" in err
    status, err = run_main(capsys, "batch", str(source), "-o", str(out), "--resume")
    assert status == 2  # OUT is not the output of this input: it is left alone
    assert "line 1 is not a result line" in err
    assert out.read_text() == "precious\n"
    assert source.read_bytes() == b"".join(orjson.dumps(line) + b"\n" for line in prompts(2))


async def test_resume_after_kill_9_and_a_torn_line(tmp_path: Path) -> None:
    lines = prompts(150)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    async with MockEndpoint(api_key=KEY, latency=0.05, fault_rate=0.05, seed=3) as ep:
        # Enough retries that the random faults never exhaust them: every line must end up correct.
        env = azml_env(ep.url)
        proc = await start("batch", str(source), "-o", str(out), "--concurrency", "4", "--max-retries", "8", env=env)
        await until(lambda: line_count(out) >= 20, "20 lines")
        proc.kill()
        killed = await finish(proc)
        assert killed.returncode == -signal.SIGKILL
        written = read_results(out)
        assert 20 <= len(written) < 150
        # A crash in the middle of a write leaves an unfinished last line: resume drops it and redoes that input.
        with out.open("ab") as stream:
            stream.write(orjson.dumps({"id": "p149", "output": "echo: prompt number 149"})[:25])
        run = await azml(
            "batch", str(source), "-o", str(out), "--resume", "--concurrency", "16", "--max-retries", "8", env=env
        )
        assert run.returncode == 0, run.stderr
        assert "unfinished last line" in run.stderr
        assert f"{len(written)} lines already in" in run.stderr
        assert_complete(read_results(out), lines)
        assert_secret_kept(run, out)


async def test_sigint_stops_taking_work_and_says_how_to_resume(tmp_path: Path) -> None:
    lines = prompts(80)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    async with MockEndpoint(api_key=KEY, latency=0.15) as ep:
        env = azml_env(ep.url)
        proc = await start("batch", str(source), "-o", str(out), "--concurrency", "4", env=env)
        await until(lambda: line_count(out) >= 8, "8 lines")
        proc.send_signal(signal.SIGINT)
        sent_at_signal = ep.request_count
        started = time.monotonic()
        run = await finish(proc)
        assert run.returncode == 130, run.stderr
        assert time.monotonic() - started < 3
        assert ep.request_count <= sent_at_signal + 4  # no new work after the signal (a few may have been racing)
        written = read_results(out)
        assert 8 <= len(written) < 80
        assert all(line["error"] is None for line in written)  # the ones in flight finished and were written
        assert "taking no new inputs" in run.stderr
        assert "stopped early" in run.stderr
        assert f"azml batch {source} -o {out} --concurrency 4 --resume" in run.stderr
    async with MockEndpoint(api_key=KEY) as ep:
        run = await azml("batch", str(source), "-o", str(out), "--resume", env=azml_env(ep.url))
        assert run.returncode == 0, run.stderr
        assert ep.request_count == 80 - len(written)
        assert_complete(read_results(out), lines)


async def test_second_sigint_or_the_grace_period_abandons_requests_in_flight(ep: MockEndpoint, tmp_path: Path) -> None:
    lines = prompts(10)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    for grace, signals in (("30", 2), ("0.3", 1)):
        ep.reset()
        ep.enqueue(Fault.hang(), Fault.hang())
        proc = await start(
            "batch",
            str(source),
            "-o",
            str(out),
            "--overwrite",
            "--concurrency",
            "2",
            "--grace",
            grace,
            env=azml_env(ep.url),
        )
        await until(lambda: ep.in_flight >= 2, "two requests in flight")
        started = time.monotonic()
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            await asyncio.sleep(0.1)
        run = await finish(proc)
        assert run.returncode == 130, run.stderr
        assert time.monotonic() - started < 3
        assert "abandoned 2 requests still in flight" in run.stderr
        assert read_results(out) == []


async def test_progress_line_on_a_terminal(ep: MockEndpoint, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", prompts(40))
    out = tmp_path / "out.jsonl"
    ep.enqueue(*[Fault.delay(0.05)] * 40)  # slow enough for a few redraws
    primary, replica = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(primary, 4096):
                chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = await start(
            "batch", str(source), "-o", str(out), "--concurrency", "2", env=azml_env(ep.url), stderr=replica
        )
        run = await finish(proc)
    finally:
        os.close(replica)
        reader.join(5)
        os.close(primary)
    shown = b"".join(chunks).decode()
    assert run.returncode == 0
    assert "\r" in shown
    assert "40/40" in shown
    assert "retries 0" in shown
    assert "ETA" in shown
    assert "azml batch done: 40 succeeded" in shown


# ------------------------------------------------------------------------------------------- other commands


async def test_mock_server_command_serves_until_sigint(tmp_path: Path) -> None:
    env = azml_env(None, key=None, TEST_EMULATOR_KEY=KEY)
    server = await start("mock-server", "--port", "0", "--api-key-env", "TEST_EMULATOR_KEY", env=env)
    try:
        assert server.stdout is not None
        first = (await asyncio.wait_for(server.stdout.readline(), 15)).decode()
        url = first.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        run = await azml("complete", "through the server", env=azml_env(url))
        assert (run.returncode, run.stdout) == (0, "echo: through the server\n")
        run = await azml("complete", "wrong key", env=azml_env(url, key="nope"))
        assert run.returncode == 1
        assert "AuthenticationError" in run.stderr
    finally:
        server.send_signal(signal.SIGINT)
        stopped = await finish(server)
    assert stopped.returncode == 0
    assert KEY not in stopped.stdout + stopped.stderr


async def test_demo_runs_and_checks_its_results() -> None:
    run = await azml("demo", "--count", "300", "--concurrency", "32", env=azml_env(None, key=None), timeout=60)
    assert run.returncode == 0, run.stderr
    assert "300 results checked against what the emulator must answer: all correct" in run.stdout
    assert "azml batch done: 300 succeeded, 0 failed" in run.stderr


def test_a_missing_url_names_the_flag_not_the_python_keyword() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZUREML_")}
    done = subprocess.run(
        [sys.executable, "-m", "azml_client.cli", "complete", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--endpoint-url" in done.stderr
    assert "endpoint_url=" not in done.stderr


# ------------------------------------------------------------------------------------ systematic failures


def dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("wrong key", "AuthenticationError (HTTP 401)"),
        ("wrong path", "NotFoundError (HTTP 404)"),
        ("dead port", "APIConnectionError (connection refused)"),
    ],
)
async def test_a_systematic_failure_stops_the_batch_early_and_resumes(
    ep: MockEndpoint, tmp_path: Path, case: str, kind: str
) -> None:
    lines = prompts(5000)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    url = {
        "wrong key": ep.url,
        "wrong path": ep.url.rstrip("/") + "/scroe",
        "dead port": f"http://127.0.0.1:{dead_port()}",
    }
    env = azml_env(url[case], key="wrong-key" if case == "wrong key" else KEY)
    started = time.monotonic()
    run = await azml("batch", str(source), "-o", str(out), env=env, timeout=60)
    assert run.returncode == 3, run.stderr
    assert time.monotonic() - started < 20
    written = line_count(out)
    assert 20 <= written < 200  # far fewer than 5,000
    if case != "dead port":
        assert ep.request_count == written  # every request sent has its line; nothing else was sent
    assert f"the last 20 finished requests all failed the same way ({kind})" in run.stderr
    assert "failures by kind:" in run.stderr
    assert f"{written:>7}  {kind}" in run.stderr  # type + status + count
    assert f"0 succeeded, {written} failed (of 5000)" in run.stderr
    assert "--resume --retry-failed" in run.stderr
    # Fixed: the same command with --resume --retry-failed finishes the run, every line once.
    ep.reset()
    run = await azml(
        "batch", str(source), "-o", str(out), "--resume", "--retry-failed", env=azml_env(ep.url), timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert_complete(read_results(out), lines)
    assert ep.request_count == 5000


async def test_transient_faults_never_stop_a_batch(tmp_path: Path) -> None:
    lines = prompts(3000)
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    async with MockEndpoint(api_key=KEY, fault_rate=0.1, fault_kinds=["503", "500", "drop", "408"], seed=7) as ep:
        # First 60 answers in a row are transient failures (429s, waited on, among them): still no stop.
        ep.enqueue(
            *[Fault.status(503), Fault.status(500), Fault.drop(), Fault.status(429, headers={"retry-after-ms": "5"})]
            * 15
        )
        run = await azml("batch", str(source), "-o", str(out), "--max-retries", "0", env=azml_env(ep.url), timeout=120)
    assert run.returncode == 1, run.stderr
    results = read_results(out)
    assert len(results) == 3000
    failed = [r for r in results if r["error"] is not None]
    assert 250 < len(failed) < 450
    assert "stopped early" not in run.stderr
    assert "failures by kind:" in run.stderr
    assert "ServerError (HTTP 503)" in run.stderr


async def test_fail_fast_0_sends_everything(ep: MockEndpoint, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", prompts(60))
    out = tmp_path / "out.jsonl"
    run = await azml("batch", str(source), "-o", str(out), "--fail-fast", "0", env=azml_env(ep.url, key="wrong"))
    assert run.returncode == 1, run.stderr
    assert ep.request_count == line_count(out) == 60
    assert "     60  AuthenticationError (HTTP 401)" in run.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_a_write_failure_still_counts_the_requests_sent(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", prompts(200))
    async with MockEndpoint(api_key=KEY, latency=0.05) as ep:
        run = await azml("batch", str(source), "-o", "/dev/full", "--overwrite", env=azml_env(ep.url))
        sent = ep.request_count
    assert run.returncode == 1
    assert "No space left on device" in run.stderr
    assert sent > 0
    import re

    counted = re.search(r"(\d+) HTTP requests?", run.stderr)
    assert counted is not None, run.stderr
    assert 0 < int(counted.group(1)) <= sent


# ------------------------------------------------------------------------------------ quotas and proxies


@pytest.mark.parametrize(("flag", "value"), [("--rpm", "480"), ("--tpm", "2000")])
async def test_rpm_and_tpm_pace_the_batch_within_the_quota(tmp_path: Path, flag: str, value: str) -> None:
    # The endpoint allows 600 RPM / 2400 TPM; the batch is told a little less: 480 RPM is 8 requests a second;
    # 2000 TPM is 33 tokens a second, and each line is estimated at 1 (prompt) + 16 (max_tokens default) tokens.
    count, per_second = (30, 8.0) if flag == "--rpm" else (12, 2000 / 60 / 17)
    lines = [{"id": f"p{i}", "prompt": f"p{i:02d}"} for i in range(count)]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    quota = {"requests_per_minute": 600} if flag == "--rpm" else {"tokens_per_minute": 2400}
    async with MockEndpoint(api_key=KEY, **quota) as ep:  # type: ignore[arg-type]
        started = time.monotonic()
        run = await azml("batch", str(source), "-o", str(out), flag, value, env=azml_env(ep.url), timeout=60)
        elapsed = time.monotonic() - started
        assert run.returncode == 0, run.stderr
        assert ep.quota_throttled_count == 0  # paced below the quota: never refused
    assert elapsed >= (count - 1) / per_second * 0.8
    assert len(read_results(out)) == count


async def test_without_rpm_the_same_batch_is_refused_and_waits(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", prompts(30))
    out = tmp_path / "out.jsonl"
    async with MockEndpoint(api_key=KEY, requests_per_minute=600) as ep:
        run = await azml("batch", str(source), "-o", str(out), "--max-retries", "0", env=azml_env(ep.url), timeout=60)
        # on_throttle="wait": the 429s wait their turn and are sent again, even with --max-retries 0.
        assert run.returncode == 0, run.stderr
        assert ep.quota_throttled_count > 0
    assert_complete(read_results(out), prompts(30))


async def test_no_proxy_ignores_a_dead_http_proxy(ep: MockEndpoint) -> None:
    dead = f"http://127.0.0.1:{dead_port()}"
    env = azml_env(ep.url, HTTP_PROXY=dead, http_proxy=dead, NO_PROXY="", no_proxy="")
    run = await azml("complete", "hi", "--max-retries", "0", env=env)
    assert run.returncode == 1  # the environment's proxy is honoured by default, and it is dead
    assert "proxy" in run.stderr
    run = await azml("complete", "hi", "--no-proxy", env=env)
    assert (run.returncode, run.stdout) == (0, "echo: hi\n"), run.stderr
    run = await azml("complete", "hi", "--proxy", dead, "--no-proxy", env=env)
    assert run.returncode == 2  # one or the other


def test_proxy_flags_map_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from azml_client.cli._endpoint import EndpointSettings
    from azml_client.cli._main import build_parser

    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    parser = build_parser()

    def client_of(*flags: str) -> Any:
        args = parser.parse_args(["complete", "hi", "--endpoint-url", "http://10.1.2.3/score", *flags])
        return EndpointSettings.from_args(args).client()

    assert client_of().proxy == "http://env-proxy.example:3128"
    assert client_of("--no-proxy").proxy is None
    assert client_of("--proxy", "http://other.example:8080").proxy == "http://other.example:8080"
    batch = parser.parse_args(["batch", "in", "-o", "out", "--rpm", "60", "--tpm", "1000"])
    assert (batch.rpm, batch.tpm, batch.fail_fast) == (60, 1000, 20)


async def test_chat_stream_cut_short_prints_one_line_not_a_traceback() -> None:
    """A 200 ``application/json`` answer promising more bytes than it sends, then closing: one error line, exit 1."""
    async with serving(cut_short) as url:
        env = azml_env(url, AZUREML_ENDPOINT_API_TYPE="serverless")
        run = await azml("chat", "hi", "--stream", "--max-retries", "0", "--no-proxy", env=env)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("azml: error: APIConnectionError: "), run.stderr


async def test_a_batch_against_a_capacity_limited_endpoint_finishes_with_no_failed_line(tmp_path: Path) -> None:
    # A managed-like deployment: 2 processed at once, 2 queued, 429 "Too many pending requests" beyond.
    source = write_jsonl(tmp_path / "in.jsonl", prompts(200))
    out = tmp_path / "out.jsonl"
    async with MockEndpoint(api_key=KEY, capacity=2, queue=2, latency=0.01) as ep:
        run = await azml("batch", str(source), "-o", str(out), env=azml_env(ep.url), timeout=120)
        refused = ep.throttled_count
    assert run.returncode == 0, run.stderr
    assert refused > 0  # it was pushed back, at default settings, and lost nothing
    assert_complete(read_results(out), prompts(200))
