"""Instructions per request, counted by valgrind's callgrind: a client cost that a busy machine does not move.

``python -m benchmarks --instructions`` runs each client (the cases of ``benchmarks/_cases.py``) in its own process
under ``valgrind --tool=callgrind`` twice against the loopback benchmark server, once with ``--low`` and once with
``--high`` timed requests after the same warm-up; the difference of the two counts divided by the difference of the
request counts is what one request costs the client in user-space instructions, start-up and imports cancelled out.
It counts instructions, not time: no system calls, cache misses or memory stalls (the garbage collector's walks cost
more time than their instructions say), so it complements the CPU-time table of ``python -m benchmarks`` rather than
replacing it. Repeated runs agree within about 3% (the event loop's batching of ready sockets varies a little).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._cases import case_named
from benchmarks._machine import describe_machine
from benchmarks._server import running_server

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parent.parent
_RESULTS = Path(__file__).resolve().parent / "results"
_DEFAULT_CASES = "azml-chat-abatch,aiohttp-raw-chat,azml-abatch,aiohttp-raw"
#: Each azml case and the raw loop it is compared with (the same route, the same answer).
_BASELINES = {"azml-chat-abatch": "aiohttp-raw-chat", "azml-abatch": "aiohttp-raw", "azml-as-completed": "aiohttp-raw"}


def _count(case: str, base_url: str, requests: int, concurrency: int, warmup: int) -> int:
    """The instructions one child process runs for ``requests`` timed requests (start-up included)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks._child",
        "run",
        case,
        "--url",
        base_url,
        "-n",
        str(requests),
        "-c",
        str(concurrency),
        "--warmup",
        str(warmup),
    ]
    out = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, timeout=1800, check=False)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"{case} under callgrind failed (status {out.returncode}):\n{out.stderr[-2000:]}")
    return int(found.group(1))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks --instructions", description=__doc__)
    parser.add_argument("--cases", default=_DEFAULT_CASES, help=f"comma-separated case names ({_DEFAULT_CASES})")
    parser.add_argument("--low", type=int, default=500, help="timed requests of the short run (500)")
    parser.add_argument("--high", type=int, default=1500, help="timed requests of the long run (1500)")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="requests in flight (64)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests before each run (200)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs per case; the table shows medians (1)")
    parser.add_argument("--server", choices=("auto", "nginx", "aiohttp"), default="auto")
    parser.add_argument("--out", type=Path, default=_RESULTS, help="where results go (benchmarks/results)")
    return parser.parse_args(argv)


def _report(results: dict[str, Any]) -> str:
    settings, machine = results["settings"], results["machine"]
    lines = [
        "# Client instructions per request (callgrind)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['python']}; valgrind counts one process.",
        f"Server: {results['server']} on loopback. Each client in its own process under `valgrind --tool=callgrind`, "
        f"{settings['low']:,} and {settings['high']:,} timed requests after {settings['warmup']} untimed ones, "
        f"{settings['concurrency']} in flight; per request = (count of the long run - count of the short run) / "
        f"{settings['high'] - settings['low']:,}. Median of {settings['repeats']} pair(s). Run {results['finished']}, "
        f"took {results['duration_s']:.0f} s.",
        "",
        "| client | instructions per request | x its raw loop |",
        "|---|---:|---:|",
    ]
    per_request = {row["case"]: row["per_request"] for row in results["rows"]}
    for row in results["rows"]:
        baseline = _BASELINES.get(row["case"])
        ratio = f"{row['per_request'] / per_request[baseline]:.3f}x" if baseline in per_request else ""
        lines.append(f"| {row['label']} | {row['per_request']:,.0f} | {ratio} |")
    lines += ["", "Instructions are not time: see `results.md` for CPU time per request, the target's measure.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Count each case's instructions per request and write ``instructions.md`` / ``.json``; return the status."""
    args = _parse(sys.argv[1:] if argv is None else list(argv))
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian/Ubuntu: apt-get install -y valgrind)", file=sys.stderr)
        return 2
    names = [name for name in args.cases.split(",") if name]
    labels = {name: case_named(name).label for name in names}
    started = time.perf_counter()
    rows = []
    with running_server(args.server) as server:
        for name in names:
            samples = []
            for _ in range(args.repeats):
                low = _count(name, server.base_url, args.low, args.concurrency, args.warmup)
                high = _count(name, server.base_url, args.high, args.concurrency, args.warmup)
                samples.append((high - low) / (args.high - args.low))
                print(f"  {name:<18} {samples[-1]:10,.0f} instructions/request", file=sys.stderr, flush=True)
            samples.sort()
            rows.append({"case": name, "label": labels[name], "per_request": samples[len(samples) // 2]})
    results = {
        "machine": describe_machine(),
        "server": server.kind,
        "settings": {
            "low": args.low,
            "high": args.high,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "rows": rows,
        "duration_s": time.perf_counter() - started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instructions.json").write_text(json.dumps(results, indent=2) + "\n")
    report = _report(results)
    (args.out / "instructions.md").write_text(report)
    print(report)
    return 0
