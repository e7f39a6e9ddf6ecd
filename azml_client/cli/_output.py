"""A batch's output: whole JSONL lines appended as results finish, and the check and repair of OUT for --resume."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from azml_client.cli._jobs import IdSet, JobId

__all__ = ["DEFAULT_SYNC_INTERVAL", "LineWriter", "OutputError", "ResumeState", "open_output", "prepare_resume"]

#: Seconds between two fsyncs of OUT: every line is written (and so survives ``kill -9``) at once; fsync,
#: which makes it survive a power cut too, is batched so that it does not cost a disk flush per line.
DEFAULT_SYNC_INTERVAL: Final = 1.0


# Every result line starts so: orjson keeps the record's key order, and "id" comes first.
_LINE_START: Final = b'{"id":'


class OutputError(Exception):
    """OUT cannot be used as asked: it exists without --resume, or holds lines that are not this batch's results."""


class LineWriter:
    """Writes whole lines to a file descriptor: one ``os.write`` per line, so a line is never left in a
    buffer of this process, and an fsync at most every ``sync_interval`` seconds (and at close).

    Args:
        fd: the descriptor to write to.
        name: what to call it in messages.
        owns_fd: whether :meth:`close` closes ``fd``.
        sync_interval: seconds between fsyncs; ``None`` never syncs (a pipe or a terminal).
    """

    def __init__(self, fd: int, *, name: str, owns_fd: bool, sync_interval: float | None) -> None:
        self._fd = fd
        self.name = name
        self._owns_fd = owns_fd
        self._sync_interval = sync_interval
        self._last_sync = time.monotonic()
        self._dirty = False
        self.lines = 0

    def write(self, line: bytes) -> None:
        """Write ``line`` (which ends with a newline) completely."""
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.lines += 1
        self._dirty = True
        if self._sync_interval is not None and time.monotonic() - self._last_sync >= self._sync_interval:
            self.sync()

    def sync(self) -> None:
        """Flush what was written to the disk (fsync), when this writes to a file."""
        if self._sync_interval is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync, then close the descriptor when this writer owns it. Idempotent."""
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            if self._owns_fd:
                os.close(self._fd)
            self._fd = -1


def open_output(target: str, *, append: bool, overwrite: bool) -> LineWriter:
    """Open OUT for a batch: ``-`` is stdout; a file is created, appended to (``append``) or replaced.

    Raises:
        OutputError: the file exists and holds results, and neither ``append`` nor ``overwrite`` was asked;
            or it cannot be opened.
    """
    if target == "-":
        sys.stdout.flush()
        return LineWriter(sys.stdout.fileno(), name="<stdout>", owns_fd=False, sync_interval=None)
    path = Path(target)
    if not append and not overwrite and path.exists() and path.stat().st_size > 0:
        raise OutputError(f"{target} already exists: add --resume to finish that run, or --overwrite to start again")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    return LineWriter(fd, name=target, owns_fd=True, sync_interval=DEFAULT_SYNC_INTERVAL if regular else None)


@attrs.frozen(slots=True)
class ResumeState:
    """What an earlier run left in OUT, after repair.

    Attributes:
        done: the ids that have a line in OUT (and are skipped now).
        kept: the result lines kept.
        failed: how many kept lines hold an error.
        redo: error lines taken out of OUT to be sent again (``--retry-failed``).
        torn_bytes: the bytes of an unfinished last line that were cut off.
        repeated: lines whose id an earlier line of OUT already had (left as they are).
    """

    done: IdSet
    kept: int = 0
    failed: int = 0
    redo: int = 0
    torn_bytes: int = 0
    repeated: int = 0


def _result_of(raw: bytes) -> tuple[JobId, bool] | None:
    """Return ``(id, has an error)`` of a result line, or ``None`` when the line is not one."""
    try:
        record: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    job_id = record.get("id")
    if isinstance(job_id, bool) or not isinstance(job_id, (str, int)):
        return None
    return job_id, record.get("error") is not None


def prepare_resume(path: Path, input_ids: IdSet, *, retry_failed: bool = False) -> ResumeState:
    """Read OUT for ``--resume``: collect the ids done, cut off a torn last line, and with ``retry_failed``
    take the error lines out (the file is rewritten through a temporary file and renamed, so a crash leaves
    either the old or the new file).

    Each line is written with one ``write``, so a crash can only leave the start of a line, without its
    newline, at the very end: that piece is cut off and its input sent again. Anything else that is not a
    result line of this input is an error rather than something to drop. Memory holds the ids only.

    Raises:
        OutputError: a line is not a result, or its id is not in the input (OUT is not this input's output).
        OSError: OUT cannot be read or repaired.
    """
    if not path.exists():
        return ResumeState(IdSet())
    done = IdSet()
    kept = failed = redo = repeated = 0
    size = 0
    torn = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.endswith(b"\n"):
                if not (raw.startswith(_LINE_START) or _LINE_START.startswith(raw)):
                    raise OutputError(
                        f"{path}: line {number} is not a result line of azml batch; is OUT the right file?"
                    )
                torn = len(raw)
                break
            size += len(raw)
            result = _result_of(raw)
            if result is None:
                raise OutputError(
                    f"{path}: line {number} is not a result line of azml batch; is OUT the right file? "
                    "(fix or remove that line to resume)"
                )
            job_id, errored = result
            if job_id not in input_ids:
                raise OutputError(
                    f"{path}: line {number} is the result of id {job_id!r}, which is not in the input; "
                    "is OUT the output of another input file?"
                )
            if retry_failed and errored:
                redo += 1
            elif not done.add(job_id):
                repeated += 1
            else:
                kept += 1
                failed += errored
    if redo:
        _rewrite_without_errors(path, size)
    elif torn:
        os.truncate(path, size)
    return ResumeState(done, kept=kept, failed=failed, redo=redo, torn_bytes=torn, repeated=repeated)


def _rewrite_without_errors(path: Path, end: int) -> None:
    """Replace OUT by its first ``end`` bytes minus the lines that hold an error."""
    tmp = path.with_name(path.name + ".resume-tmp")
    with path.open("rb") as source, tmp.open("wb") as target:
        at = 0
        for raw in source:
            at += len(raw)
            if at > end:
                break
            result = _result_of(raw)
            if result is not None and not result[1]:
                target.write(raw)
        target.flush()
        os.fsync(target.fileno())
    os.replace(tmp, path)
