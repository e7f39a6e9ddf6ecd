"""The benchmark's server on loopback, in a process of its own: nginx when it is on PATH, else a small aiohttp one."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from benchmarks._bodies import CHAT_BODY, SCORE_BODY

__all__ = ["Server", "running_server"]

_CONFIG = Path(__file__).with_name("nginx.conf")
_START_TIMEOUT = 15.0


@attrs.frozen
class Server:
    """A running benchmark server: its base URL and what it is (``"nginx 1.22.1"``, ``"aiohttp 3.14.5"``)."""

    base_url: str
    kind: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {_START_TIMEOUT:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _nginx_version(nginx: str) -> str:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    text = (out.stderr or out.stdout).strip()  # "nginx version: nginx/1.22.1"
    return text.rsplit("/", 1)[-1] if "/" in text else "?"


@contextlib.contextmanager
def _nginx(nginx: str) -> Iterator[Server]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="azml-bench-nginx-") as prefix:
        config = (
            _CONFIG.read_text()
            .replace("@PORT@", str(port))
            .replace("@PREFIX@", prefix)
            .replace("@SCORE_BODY@", SCORE_BODY)
            .replace("@CHAT_BODY@", CHAT_BODY)
        )
        (Path(prefix) / "nginx.conf").write_text(config)
        (Path(prefix) / "client_body").mkdir()
        process = subprocess.Popen(
            [nginx, "-p", prefix, "-c", "nginx.conf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_listening(port, process, "nginx")
            yield Server(f"http://127.0.0.1:{port}", f"nginx {_nginx_version(nginx)}")
        finally:
            _stop(process)


@contextlib.contextmanager
def _aiohttp() -> Iterator[Server]:
    import aiohttp

    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._fallback_server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"the aiohttp benchmark server did not start (said {line!r})")
        port = int(line)
        _wait_listening(port, process, "the aiohttp benchmark server")
        yield Server(f"http://127.0.0.1:{port}", f"aiohttp {aiohttp.__version__} (pre-encoded)")
    finally:
        _stop(process)


@contextlib.contextmanager
def running_server(kind: str = "auto") -> Iterator[Server]:
    """Run the benchmark server for the ``with`` block: ``"nginx"``, ``"aiohttp"`` or ``"auto"`` (nginx if found)."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if kind == "nginx" and nginx is None:
        raise RuntimeError("nginx is not installed (Debian/Ubuntu: apt-get install -y nginx)")
    if kind in ("auto", "nginx") and nginx is not None:
        with _nginx(nginx) as server:
            yield server
    else:
        with _aiohttp() as server:
            yield server
