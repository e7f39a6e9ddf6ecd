"""What the push-back and scale-out benchmarks share: an emulator in a process of its own, and their log lines.

The emulator process (``benchmarks/_pushback_server.py``, ``benchmarks/_scaleout_server.py``) prints its URL as a
JSON line on start, answers ``stats`` on stdin with its counters as a JSON line, and stops when stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["EmulatorProcess", "endpoint_counts", "load_average", "log", "running_emulator"]

_ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """A progress line, on stderr."""
    print(message, file=sys.stderr, flush=True)


def load_average() -> float:
    """The machine's 1-minute load average (NaN where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def endpoint_counts(endpoint: Any) -> dict[str, Any]:
    """What an emulator process reports of its ``MockEndpoint``: requests, refusals and the peaks."""
    return {
        "requests": endpoint.request_count,
        "throttled": endpoint.throttled_count,
        "quota_throttled": endpoint.quota_throttled_count,
        "timeouts": endpoint.timeout_count,
        "max_in_flight": endpoint.max_in_flight,
        "max_processing": endpoint.max_processing,
    }


class EmulatorProcess:
    """A running emulator process: its URL, and its counters on demand."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (requests, 429s, peak in flight...), read over its stdin and stdout."""
        assert self.process.stdin
        assert self.process.stdout
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        return result


@contextmanager
def running_emulator(command: list[str], env: Mapping[str, str]) -> Iterator[EmulatorProcess]:
    """Start ``command`` (an emulator process) for the ``with`` block; stop it (closing its stdin) after."""
    process = subprocess.Popen(
        command, cwd=_ROOT, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert process.stdout
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator did not start ({' '.join(command)})")
        yield EmulatorProcess(process, json.loads(line)["url"])
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
