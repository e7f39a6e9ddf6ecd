"""The pieces of ``azml batch`` in-process: input lines, the id set, OUT repair, the progress line, the runner."""

from __future__ import annotations

import asyncio
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from azml_client import LLM
from azml_client.cli._batch import BatchRunner
from azml_client.cli._jobs import IdSet, Job, LineError, detect_format, iter_jobs, parse_line, scan_input
from azml_client.cli._output import OutputError, open_output, prepare_resume
from azml_client.cli._report import BatchStats, format_duration, render_progress, summary_lines
from azml_client.testing import Fault, MockEndpoint, echo_text


def test_id_set_keeps_ints_as_bits_and_everything_else_in_a_set() -> None:
    ids = IdSet()
    for key in (1, 0, 5000, -3, 1 << 40, "1", "a"):
        assert ids.add(key)
        assert key in ids
        assert not ids.add(key)
    assert len(ids) == 7
    assert 2 not in ids
    assert "5000" not in ids
    assert 10**9 not in ids


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"just a prompt"\n', Job(3, 3, prompt="just a prompt")),
        (b'{"prompt": "p", "temperature": 0.1}\r\n', Job(3, 3, prompt="p", params={"temperature": 0.1})),
        (b'{"id": "x", "prompt": "p", "stop": "."}', Job(3, "x", prompt="p", stop=".")),
        (b'{"id": 9, "prompt": "p", "stop": ["a", "b"]}', Job(3, 9, prompt="p", stop=["a", "b"])),
        (b"   \n", None),
    ],
)
def test_jsonl_lines(raw: bytes, expected: Job | None) -> None:
    assert parse_line(raw, 3, "jsonl") == expected


def test_chat_lines_are_validated_conversations() -> None:
    job = parse_line(
        b'{"id": "c", "messages": [["system", "S"], {"role": "user", "content": "U"}], "n": 2}', 1, "jsonl"
    )
    assert job is not None
    assert job.is_chat
    assert job.messages is not None
    assert [message.role for message in job.messages] == ["system", "user"]
    assert job.params == {"n": 2}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"prompt": ', "not valid JSON"),
        (b"[1, 2]", "got an array"),
        (b'{"id": true, "prompt": "p"}', "'id' must be a string or an integer"),
        (b'{"id": "", "prompt": "p"}', "'id' must not be empty"),
        (b'{"prompt": 5}', "'prompt' must be a string"),
        (b'{"prompt": "p", "messages": []}', "exactly one of"),
        (b'{"id": "x"}', "exactly one of"),
        (b'{"messages": "hi"}', "'messages' must be a list"),
        (b'{"messages": []}', "invalid 'messages'"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "unknown message role"),
        (b'{"prompt": "p", "stop": 3}', "'stop' must be"),
        (b'{"prompt": "p", "timeout": 3}', "--timeout"),
    ],
)
def test_bad_jsonl_lines_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(LineError, match=f"^line 4: .*{reason}") as caught:
        parse_line(raw, 4, "jsonl")
    assert caught.value.line == 4


def test_text_lines_and_the_byte_order_mark() -> None:
    assert parse_line(b"\xef\xbb\xbf  spaced  \r\n", 1, "text") == Job(1, 1, prompt="  spaced  ")
    assert parse_line(b'{"looks": "like json"}\n', 2, "text") == Job(2, 2, prompt='{"looks": "like json"}')
    with pytest.raises(LineError, match="not valid UTF-8"):
        parse_line(b"\xff\xfe\n", 2, "text")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("in.jsonl", b"plain text\n", "jsonl"),
        ("in.txt", b'"a json string"\n', "text"),
        ("-", b'\n\n{"prompt": "p"}\n', "jsonl"),
        ("-", b'"a string"\n', "jsonl"),
        ("-", b"a prompt\n", "text"),
        ("-", b"{not json\n", "text"),
        ("-", b"42\n", "text"),
    ],
)
def test_format_detection(name: str, content: bytes, expected: str) -> None:
    stream = io.BytesIO(content)
    assert detect_format(stream, name) == expected
    assert stream.tell() == 0


def test_scan_counts_jobs_and_reports_problems_then_iteration_skips_them() -> None:
    stream = io.BytesIO(
        b'"a"\n{"id": 1, "prompt": "b"}\nnot json\n{"messages": [["user", "c"]]}\n{"id": "z", "prompt": "d"}\n'
    )
    scan = scan_input(stream, "jsonl")
    assert (scan.jobs, scan.chat_jobs, scan.completion_jobs) == (3, 1, 2)
    assert scan.duplicates == {1: [1, 2]}
    assert [error.line for error in scan.invalid] == [3]
    done = IdSet()
    done.add("z")
    assert [job.id for job in iter_jobs(stream, "jsonl", done)] == [1, 1, 4]


def test_scan_memory_stays_small_for_line_number_ids() -> None:
    count = 50_000
    stream = io.BytesIO(b"".join(b"prompt number %d with some words\n" % i for i in range(count)))
    tracemalloc.start()
    try:
        scan = scan_input(stream, "text")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.jobs == count
    assert peak < 400_000  # ids cost a bit each (50k ids in 6 kB; a set of ints would take megabytes)


# --------------------------------------------------------------------------------------------- OUT


def result_line(job_id: str | int, error: bool = False) -> bytes:
    failure = {"type": "ServerError", "message": "boom"} if error else None
    record = {"id": job_id, "output": None if error else "echo", "error": failure, "attempts": 1}
    return orjson.dumps(record) + b"\n"


def input_ids(*keys: str | int) -> IdSet:
    ids = IdSet()
    for key in keys:
        ids.add(key)
    return ids


def test_resume_of_a_missing_file_starts_from_nothing(tmp_path: Path) -> None:
    state = prepare_resume(tmp_path / "none.jsonl", input_ids("a"))
    assert len(state.done) == 0


def test_resume_cuts_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    whole = result_line("a") + result_line(2, error=True)
    out.write_bytes(whole + result_line("c")[:9])
    state = prepare_resume(out, input_ids("a", 2, "c"))
    assert (state.kept, state.failed, state.torn_bytes) == (2, 1, 9)
    assert "a" in state.done
    assert 2 in state.done
    assert "c" not in state.done
    assert out.read_bytes() == whole


def test_resume_retry_failed_rewrites_out_without_the_error_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(result_line("a") + result_line("b", error=True) + result_line("c") + b'{"i')
    state = prepare_resume(out, input_ids("a", "b", "c"), retry_failed=True)
    assert (state.kept, state.redo) == (2, 1)
    assert "b" not in state.done
    assert out.read_bytes() == result_line("a") + result_line("c")
    assert not list(tmp_path.glob("*.resume-tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (result_line("a") + b"garbage\n" + result_line("b"), "line 2 is not a result line"),
        (result_line("a") + b"[1]\n", "line 2 is not a result line"),
        (result_line("a") + b"no newline and not ours", "line 2 is not a result line"),
        (result_line("other"), "id 'other', which is not in the input"),
    ],
)
def test_resume_refuses_an_out_that_is_not_this_inputs(tmp_path: Path, content: bytes, message: str) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    with pytest.raises(OutputError, match=message):
        prepare_resume(out, input_ids("a", "b"))
    assert out.read_bytes() == content


def test_output_is_never_silently_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(result_line("a"))
    with pytest.raises(OutputError, match="--resume"):
        open_output(str(out), append=False, overwrite=False)
    writer = open_output(str(out), append=True, overwrite=False)
    writer.write(result_line("b"))
    writer.close()
    writer.close()
    assert out.read_bytes() == result_line("a") + result_line("b")


# ----------------------------------------------------------------------------------------- report


def test_progress_line_fits_the_terminal() -> None:
    stats = BatchStats(total=200, succeeded=50, failed=2, retries=7)
    stats.started -= 4.0
    for width in (200, 80, 40, 10):
        line = render_progress(stats, width)
        assert len(line) < width
        assert line.startswith("52/200")
    line = render_progress(stats, 100)
    assert "26%" in line
    assert "errors 2" in line
    assert "retries 7" in line
    assert "ETA 0:11" in line
    assert "[#" in line


def test_durations_and_summary() -> None:
    assert [format_duration(s) for s in (0, 59.4, 61, 3725)] == ["0:00", "0:59", "1:01", "1:02:05"]
    stats = BatchStats(total=3, succeeded=3, requests=4, retries=1, total_tokens=12, prompt_tokens=5)
    stats.completion_tokens = 7
    text = "\n".join(summary_lines(stats, "out.jsonl"))
    assert "3 succeeded, 0 failed" in text
    assert "4 HTTP requests (1 retry)" in text
    assert "tokens 12 (prompt 5, completion 7)" in text


# ----------------------------------------------------------------------------------------- runner


@pytest.mark.parametrize("ordered", [False, True])
async def test_runner_reads_its_input_lazily(tmp_path: Path, ordered: bool) -> None:
    """At any time, only the jobs in flight (and, --ordered, the order window) have been read."""
    pulled = 0

    def jobs() -> Iterator[Job]:
        nonlocal pulled
        for number in range(1, 121):
            pulled += 1
            yield Job(number, number, prompt=f"prompt {number}")

    out = tmp_path / "out.jsonl"
    writer = open_output(str(out), append=False, overwrite=False)
    read_ahead: list[int] = []
    write = writer.write

    def counting_write(line: bytes) -> None:
        read_ahead.append(pulled - writer.lines)
        write(line)

    writer.write = counting_write  # type: ignore[method-assign]
    stats = BatchStats(total=120)
    async with MockEndpoint(latency=0.002) as ep:
        ep.enqueue(Fault.delay(0.3))  # the first job finishes late: --ordered holds the others back
        async with LLM(ep.url, "key") as llm:
            runner = BatchRunner(
                llm=llm, chat=None, writer=writer, stats=stats, concurrency=4, ordered=ordered, order_window=16
            )
            await runner.run(jobs())
    writer.close()
    assert (stats.succeeded, stats.failed) == (120, 0)
    assert max(read_ahead) <= (4 * 4 + 4 if ordered else 4 + 1)  # ordered: the window, plus a job per waiting worker
    results = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    ids = [result["id"] for result in results]
    assert sorted(ids) == list(range(1, 121))
    assert (ids == sorted(ids)) is ordered
    assert all(result["output"] == echo_text(f"prompt {result['id']}") for result in results)


async def test_ordered_keeps_sending_behind_a_slow_line(tmp_path: Path) -> None:
    """The default order window is wide (8192 lines): one line waiting out a retry does not stall the rest."""
    out = tmp_path / "out.jsonl"
    writer = open_output(str(out), append=False, overwrite=False)
    stats = BatchStats(total=400)
    jobs = (Job(number, number, prompt=f"prompt {number}") for number in range(1, 401))
    async with MockEndpoint(latency=0.002) as ep:
        ep.enqueue(Fault.delay(1.0))  # the first line is slow
        async with LLM(ep.url, "key") as llm:
            runner = BatchRunner(llm=llm, chat=None, writer=writer, stats=stats, concurrency=4, ordered=True)
            task = asyncio.ensure_future(runner.run(jobs))
            await asyncio.sleep(0.8)
            sent_behind = ep.request_count
            await task
    writer.close()
    assert sent_behind > 100  # with the old 4 x concurrency window: 16
    ids = [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert ids == list(range(1, 401))
