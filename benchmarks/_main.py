"""The benchmark driver: starts the server, runs each client in a child process, alternating, and reports."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._cases import CASES, case_named
from benchmarks._machine import describe_machine
from benchmarks._report import write_results
from benchmarks._server import running_server

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parent.parent
_RESULTS = Path(__file__).resolve().parent / "results"
_CHILD_TIMEOUT = 300.0
_IMPORT_SNIPPET = (
    "import sys, time; t = time.perf_counter(); import {module}; t = time.perf_counter() - t; "
    "print(t, any(m.split('.')[0] in ('langchain', 'langchain_core') for m in sys.modules))"
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _child(*args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks._child ARGS`` and return its JSON line."""
    command = [sys.executable, "-m", "benchmarks._child", *args]
    out = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed (status {out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _clients(args: argparse.Namespace, base_url: str) -> dict[str, list[dict[str, Any]]]:
    names = [case.name for case in CASES if args.peers or not case.peer]
    if args.cases:
        names = [name for name in args.cases.split(",") if name]
        for name in names:
            case_named(name)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        # Alternate: each round starts one client later, so no client always runs first or last.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = _child(
                "run",
                name,
                "--url",
                base_url,
                "-n",
                str(args.requests),
                "-c",
                str(args.concurrency),
                "--warmup",
                str(args.warmup),
            )
            if result["ok"] != args.requests:
                raise RuntimeError(f"{name}: {result['ok']} of {args.requests} answers were right")
            _log(
                f"  round {round_index + 1}/{args.rounds} {name:<18} {result['req_per_s']:8.0f} req/s "
                f"{result['cpu_us_per_req']:7.0f} us/req {result['peak_rss_mb']:6.1f} MB"
            )
            runs[name].append(result)
    return runs


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, results in runs.items():
        case = case_named(name)
        rows.append(
            {
                "case": name,
                "label": case.label,
                "peer": case.peer,
                "req_per_s": statistics.median(r["req_per_s"] for r in results),
                "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in results),
                "system_us_per_req": statistics.median(r["system_us_per_req"] for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                "rounds": results,
            }
        )
    raw = next((row for row in rows if row["case"] == "aiohttp-raw"), None)
    for row in rows:
        row["x_raw_throughput"] = row["req_per_s"] / raw["req_per_s"] if raw else None
        row["x_raw_cpu"] = row["cpu_us_per_req"] / raw["cpu_us_per_req"] if raw else None
    return rows


def _memory(args: argparse.Namespace, base_url: str) -> list[dict[str, Any]]:
    results = []
    for count in args.memory:
        result = _child("memory", "--url", base_url, "-n", str(count), "-c", str(args.concurrency))
        result["peak_rss_mb"] = max(result["peak_rss_mb"], result["rss_end_mb"] or 0.0)
        _log(f"  memory {count:>8} prompts: peak RSS {result['peak_rss_mb']:.1f} MB ({result['req_per_s']:.0f} req/s)")
        results.append(result)
    return results


def _import_times(repeats: int) -> dict[str, Any]:
    """Best-of-``repeats`` import time of each module, in fresh interpreters, interleaved.

    Both are timed from cached bytecode, as an installed package is: ``PYTHONDONTWRITEBYTECODE`` is dropped and
    the ``.pyc`` files go to a temporary ``PYTHONPYCACHEPREFIX`` (nothing is written into the source tree), filled
    by one untimed import of each first.
    """
    times: dict[str, list[float]] = {"azml_client": [], "aiohttp": []}
    langchain = False
    with tempfile.TemporaryDirectory(prefix="azml-bench-pycache-") as pycache:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for attempt in range(repeats + 1):
            for module in times:
                code = _IMPORT_SNIPPET.format(module=module)
                out = subprocess.run(
                    [sys.executable, "-c", code],
                    cwd=_ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                )
                seconds, imported_langchain = out.stdout.split()
                langchain = langchain or (module == "azml_client" and imported_langchain == "True")
                if attempt:  # the first import of each only fills the bytecode cache
                    times[module].append(float(seconds))
    best = {module: min(values) * 1000 for module, values in times.items()}
    _log(f"  import azml_client {best['azml_client']:.1f} ms, import aiohttp {best['aiohttp']:.1f} ms")
    return {
        "azml_client_ms": best["azml_client"],
        "aiohttp_ms": best["aiohttp"],
        "ratio": best["azml_client"] / best["aiohttp"],
        "repeats": repeats,
        "azml_client_imports_langchain": langchain,
    }


def _profile(args: argparse.Namespace, base_url: str, out_dir: Path) -> None:
    import pstats

    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / f"profile-{args.profile}.txt"
    with tempfile.TemporaryDirectory(prefix="azml-bench-profile-") as scratch:
        stats_path = Path(scratch) / "stats.prof"
        _child(
            "run",
            args.profile,
            "--url",
            base_url,
            "-n",
            str(args.requests),
            "-c",
            str(args.concurrency),
            "--profile",
            str(stats_path),
        )
        with text_path.open("w") as text:
            for order in ("cumulative", "tottime"):
                text.write(f"==== {args.profile}: {args.requests} requests, sorted by {order}\n")
                pstats.Stats(str(stats_path), stream=text).strip_dirs().sort_stats(order).print_stats(args.top)
    _log(f"profile written to {text_path}")


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine makes every number noisier."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("-n", "--requests", type=int, default=2000, help="requests per client per round (2000)")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="requests in flight (64)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the table shows medians (5)")
    parser.add_argument("--warmup", type=int, default=128, help="untimed requests before each timed run (128)")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="leave out the seed and openai")
    parser.add_argument("--server", choices=("auto", "nginx", "aiohttp"), default="auto")
    parser.add_argument(
        "--memory",
        default="20000,200000",
        type=lambda text: [int(part) for part in text.split(",") if part],
        help="prompt counts for the abatch_as_completed peak-RSS runs ('' to skip)",
    )
    parser.add_argument("--sse-events", type=int, default=20000, help="events in the SSE decoding run (0 skips)")
    parser.add_argument("--import-repeats", type=int, default=9, help="fresh interpreters per module (0 skips)")
    parser.add_argument("--out", type=Path, default=_RESULTS, help="where results go (benchmarks/results)")
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="do not draw the PNG chart")
    parser.add_argument("--profile", default="", help="only cProfile this case's timed run and write its top entries")
    parser.add_argument("--top", type=int, default=30, help="entries per profile listing (30)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the results; return the exit status.

    ``--pushback`` runs the push-back benchmarks instead (``benchmarks/_pushback.py``; the other arguments are
    theirs: ``python -m benchmarks --pushback --help``), ``--scaleout`` the scale-out benchmarks
    (``benchmarks/_scaleout.py``, ``python -m benchmarks --scaleout --help``), ``--instructions`` the callgrind
    counts of ``benchmarks/_instructions.py``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--pushback" in argv:
        from benchmarks._pushback import main as pushback_main

        return pushback_main([arg for arg in argv if arg != "--pushback"])
    if "--instructions" in argv:
        from benchmarks._instructions import main as instructions_main

        return instructions_main([arg for arg in argv if arg != "--instructions"])
    if "--scaleout" in argv:
        from benchmarks._scaleout import main as scaleout_main

        return scaleout_main([arg for arg in argv if arg != "--scaleout"])
    args = _parse(argv)
    started = time.perf_counter()
    load_before = _load_average()
    with running_server(args.server) as server:
        _log(f"server: {server.kind} at {server.base_url}")
        if args.profile:
            _profile(args, server.base_url, args.out)
            return 0
        _log(f"clients: {args.requests} requests, {args.concurrency} in flight, {args.rounds} round(s)")
        rows = _summarise(_clients(args, server.base_url))
        memory = _memory(args, server.base_url) if args.memory else []
    sse = None
    if args.sse_events:
        sse = _child("sse", "--events", str(args.sse_events))
        _log(f"  SSE: {sse['mb_per_s_64k_chunks']:.0f} MB/s, {sse['us_per_chunk']:.2f} us per chunk")
    imports = _import_times(args.import_repeats) if args.import_repeats else None
    results = {
        "machine": describe_machine(),
        "server": server.kind,
        "settings": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "statistic": "median of rounds (peak RSS: max)",
        },
        "clients": rows,
        "memory": memory,
        "sse": sse,
        "imports": imports,
        "duration_s": time.perf_counter() - started,
        "load_average": {"start": load_before, "end": _load_average()},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    written = write_results(results, args.out, chart=args.chart)
    for path in written:
        _log(f"wrote {path}")
    print((args.out / "results.md").read_text())
    return 0
