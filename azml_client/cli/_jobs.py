"""A batch's input: JSONL or plain-text lines, checked in a first pass and then parsed lazily into jobs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, Literal

import attrs
import orjson

from azml_client._exceptions import ConfigurationError
from azml_client._types import Message, to_messages

__all__ = [
    "MAX_REPORTED",
    "IdSet",
    "InputFormat",
    "InputScan",
    "Job",
    "JobId",
    "LineError",
    "detect_format",
    "iter_jobs",
    "parse_line",
    "scan_input",
]

#: How a batch's input is read: one JSON value per line, or one prompt per line.
InputFormat = Literal["jsonl", "text"]
#: A job's id: the one the line gives, or its line number.
JobId = str | int

#: How many bad lines (and duplicate ids) a scan keeps to report; the rest are only counted.
MAX_REPORTED: Final = 20

_BOM: Final = b"\xef\xbb\xbf"
_JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})
_TEXT_SUFFIXES: Final = frozenset({".txt", ".text"})
# Keys of a JSONL object that are not model parameters.
_RESERVED: Final = frozenset({"id", "prompt", "messages", "stop"})
# Ids below this are kept as bits (line numbers cost one bit each); others go into a set.
_BITMAP_IDS: Final = 1 << 27
_JSON_KINDS: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@attrs.frozen(slots=True)
class Job:
    """One input line to send: a prompt (the completion surface) or a conversation (the chat surface).

    Attributes:
        line: the 1-based line number in the input.
        id: the line's ``id``, else its line number.
        prompt: the prompt of a completion line.
        messages: the validated conversation of a chat line.
        params: the line's own model parameters (over the ``--param`` ones).
        stop: the line's stop string(s).
    """

    line: int
    id: JobId
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    stop: str | list[str] | None = None

    @property
    def is_chat(self) -> bool:
        """Whether the line holds ``messages`` (and so goes to the chat surface)."""
        return self.messages is not None


class LineError(Exception):
    """An input line that is not a job; the message names the line."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


class IdSet:
    """A set of job ids that stays small for line-number ids: ints in ``[0, 2**27)`` cost one bit each."""

    __slots__ = ("_bits", "_count", "_others")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._others: set[JobId] = set()
        self._count = 0

    def add(self, key: JobId) -> bool:
        """Add ``key``; return False when it was already there."""
        if type(key) is int and 0 <= key < _BITMAP_IDS:
            index, mask = key >> 3, 1 << (key & 7)
            bits = self._bits
            if index >= len(bits):
                bits.extend(bytes(max(index + 1 - len(bits), len(bits), 64)))
            if bits[index] & mask:
                return False
            bits[index] |= mask
        else:
            if key in self._others:
                return False
            self._others.add(key)
        self._count += 1
        return True

    def __contains__(self, key: object) -> bool:
        if type(key) is int and 0 <= key < _BITMAP_IDS:
            index = key >> 3
            return index < len(self._bits) and bool(self._bits[index] & (1 << (key & 7)))
        return key in self._others

    def __len__(self) -> int:
        return self._count


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _check_id(line: int, value: Any) -> JobId:
    if value is None:
        return line
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LineError(line, f"'id' must be a string or an integer, got {_json_kind(value)}")
    if isinstance(value, str) and not value:
        raise LineError(line, "'id' must not be empty")
    return value


def _check_stop(line: int, value: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise LineError(line, "'stop' must be a string or a list of strings")


def parse_line(raw: bytes, line: int, fmt: InputFormat) -> Job | None:
    """Turn one input line into a :class:`Job`; ``None`` for a blank line.

    A JSONL line is a prompt string, ``{"id", "prompt", ...params}`` or ``{"id", "messages": [...], ...params}``
    (messages as ``{"role", "content"}`` objects or ``[role, content]`` pairs); a text line is the prompt itself.

    Raises:
        LineError: the line is not a job (bad JSON or UTF-8, a missing prompt, an invalid conversation...).
    """
    if line == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    body = raw.rstrip(b"\r\n")
    if not body.strip():
        return None
    if fmt == "text":
        try:
            return Job(line, line, prompt=body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise LineError(line, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LineError(line, f"not valid JSON ({exc})") from None
    if isinstance(value, str):
        return Job(line, line, prompt=value)
    if not isinstance(value, dict):
        raise LineError(
            line, f"expected a prompt string or an object with 'prompt' or 'messages', got {_json_kind(value)}"
        )
    job_id = _check_id(line, value.get("id"))
    stop = _check_stop(line, value.get("stop"))
    if "timeout" in value:
        raise LineError(line, "'timeout' is a transport setting, not a model parameter: use --timeout")
    params = {key: item for key, item in value.items() if key not in _RESERVED}
    prompt, messages = value.get("prompt"), value.get("messages")
    if (prompt is None) == (messages is None):
        raise LineError(line, "an object needs exactly one of 'prompt' (a string) or 'messages' (a list)")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise LineError(line, f"'prompt' must be a string, got {_json_kind(prompt)}")
        return Job(line, job_id, prompt=prompt, params=params, stop=stop)
    if not isinstance(messages, list):
        raise LineError(line, f"'messages' must be a list of messages, got {_json_kind(messages)}")
    # In JSON a (role, content) pair is an array.
    pairs = [tuple(item) if isinstance(item, list) and len(item) == 2 else item for item in messages]
    try:
        conversation = tuple(to_messages(pairs))
    except ConfigurationError as exc:
        raise LineError(line, f"invalid 'messages': {exc}") from None
    return Job(line, job_id, messages=conversation, params=params, stop=stop)


def detect_format(stream: IO[bytes], name: str) -> InputFormat:
    """Guess how to read an input: by its suffix, else by its first non-blank line (JSON or not).

    ``stream`` must be seekable; it is left at its start.
    """
    suffix = Path(name).suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _TEXT_SUFFIXES:
        return "text"
    stream.seek(0)
    try:
        for raw in stream:
            body = raw.removeprefix(_BOM).strip()
            if not body:
                continue
            if body[:1] not in (b"{", b'"'):
                return "text"
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                return "text"
            return "jsonl" if isinstance(value, (str, dict)) else "text"
        return "jsonl"
    finally:
        stream.seek(0)


@attrs.define
class InputScan:
    """What the first pass over an input found.

    Attributes:
        format: how the input is read.
        jobs: the number of valid jobs.
        chat_jobs: how many of them are chat lines.
        ids: every valid job's id.
        invalid: the first :data:`MAX_REPORTED` bad lines.
        invalid_count: the number of bad lines.
        duplicates: the first :data:`MAX_REPORTED` repeated ids, each with the lines that use it.
        duplicate_count: the number of lines whose id an earlier line already used.
    """

    format: InputFormat
    jobs: int = 0
    chat_jobs: int = 0
    ids: IdSet = attrs.Factory(IdSet)
    invalid: list[LineError] = attrs.Factory(list)
    invalid_count: int = 0
    duplicates: dict[JobId, list[int]] = attrs.Factory(dict)
    duplicate_count: int = 0

    @property
    def completion_jobs(self) -> int:
        """How many valid jobs are prompt lines."""
        return self.jobs - self.chat_jobs


def scan_input(stream: IO[bytes], fmt: InputFormat) -> InputScan:
    """Read the whole input once, keeping only ids: count jobs, find bad lines and repeated ids.

    Memory holds the ids (one bit per line-number id) and the first few problems, never the prompts.
    ``stream`` must be seekable; it is left at its start.
    """
    scan = InputScan(fmt)
    ids = scan.ids
    stream.seek(0)
    for number, raw in enumerate(stream, 1):
        try:
            job = parse_line(raw, number, fmt)
        except LineError as exc:
            scan.invalid_count += 1
            if len(scan.invalid) < MAX_REPORTED:
                scan.invalid.append(exc)
            continue
        if job is None:
            continue
        if not ids.add(job.id):
            scan.duplicate_count += 1
            if job.id in scan.duplicates:
                scan.duplicates[job.id].append(number)
            elif len(scan.duplicates) < MAX_REPORTED:
                scan.duplicates[job.id] = [number]
            continue
        scan.jobs += 1
        if job.is_chat:
            scan.chat_jobs += 1
    if scan.duplicates:
        _first_uses(stream, fmt, scan.duplicates)
    stream.seek(0)
    return scan


def _first_uses(stream: IO[bytes], fmt: InputFormat, duplicates: dict[JobId, list[int]]) -> None:
    """Put the line that first used each repeated id in front of its list (a second pass, only on error)."""
    stream.seek(0)
    missing = set(duplicates)
    for number, raw in enumerate(stream, 1):
        try:
            job = parse_line(raw, number, fmt)
        except LineError:
            continue
        if job is not None and job.id in missing:
            duplicates[job.id].insert(0, number)
            missing.discard(job.id)
            if not missing:
                return


def iter_jobs(stream: IO[bytes], fmt: InputFormat, skip: IdSet | None = None) -> Iterator[Job]:
    """Yield the input's jobs lazily, one line at a time, leaving out bad lines and ids in ``skip``."""
    stream.seek(0)
    for number, raw in enumerate(stream, 1):
        try:
            job = parse_line(raw, number, fmt)
        except LineError:
            continue  # reported by the scan, which also decided whether to go on
        if job is not None and (skip is None or job.id not in skip):
            yield job
