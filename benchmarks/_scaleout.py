"""The scale-out benchmarks (issue 14): a table of prompts scored on Spark and Ray against endpoints that push back.

``python -m benchmarks --scaleout`` runs, against three emulated endpoints (:data:`ENDPOINTS`: capacity-limited,
2-wide with more workers than slots, quota-limited), azml-client's Spark and Ray integrations, Ray's
``ray.data.llm`` HTTP processor at its defaults, over a few settings, and at the best of those, and a hand-written
``mapInPandas`` + aiohttp glue (``benchmarks/_scaleout_glue.py``). Each endpoint is a
:class:`~azml_client.testing.MockEndpoint` in a process of its own (``benchmarks/_scaleout_server.py``) that
samples its in-flight count every 100 ms; each engine runs in a process of its own (``benchmarks/_scaleout_run.py``:
a Spark session per case, one Ray cluster for an endpoint's Ray cases, run one after the other), killed with its
process group when a case outlives its timeout. It writes ``scaleout.md``, ``scaleout.json`` and ``scaleout.png``
to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._emulator import EmulatorProcess, load_average, log, running_emulator
from benchmarks._machine import describe_machine
from benchmarks._plot import pyplot
from benchmarks._scaleout_glue import ATTEMPTS, CONCURRENCY
from benchmarks._scaleout_run import CASES, best_of, engine_of

__all__ = ["ENDPOINTS", "SWEEP", "Endpoint", "main", "markdown", "summary"]

_ROOT = Path(__file__).resolve().parent.parent
_RESULTS = Path(__file__).resolve().parent / "results"
_ENV = {
    **os.environ,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONPATH": os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p),
}
#: Seconds the engine of a case may take to start, on top of the cases' own timeouts.
_STARTUP_ALLOWANCE = 120.0
#: Seconds of idle endpoint between two cases of one Ray cluster, so that their sample windows never overlap.
_GAP = 1.0


@dataclass(frozen=True)
class Endpoint:
    """One emulated endpoint and the cluster size its cases use."""

    key: str
    title: str
    server: dict[str, Any]
    #: Spark task slots (``local[W]``) and Ray actors for the azml and glue cases.
    workers: int
    #: Spark partitions of the input (Ray gets a block per 500 rows, at least this many).
    partitions: int
    #: The share of ``--rows`` every case gets here, and per case a share of that (cases that would run for
    #: minutes at the endpoint's pace get fewer rows: their time vs ideal is a ratio).
    rows_share: float = 1.0
    case_shares: tuple[tuple[str, float], ...] = ()

    def rows_for(self, key: str, rows: int) -> int:
        """The rows case ``key`` scores here out of ``--rows``."""
        share = self.rows_share * dict(self.case_shares).get(key, 1.0)
        return rows if share == 1.0 else _scaled(rows, share)

    def rate(self) -> float:
        """The most answers per second the endpoint gives: its width over its latency, or its quota rate."""
        rpm = self.server.get("requests_per_minute")
        if rpm:
            return float(rpm) / 60.0
        return float(self.server["capacity"]) / float(self.server["latency"])

    def ideal(self, rows: int) -> float:
        """The fastest the endpoint can answer ``rows``: rows x latency / capacity, or rows / the quota's rate."""
        return rows / self.rate()


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        key="capacity-16",
        title="capacity-limited: 16 processed at once, no queue, 50 ms each, 429 (no Retry-After) beyond",
        server={"capacity": 16, "queue": 0, "latency": 0.05},
        workers=2,
        partitions=8,
    ),
    Endpoint(
        key="two-wide",
        title="2-wide: 2 processed at once, no queue, 10 ms each, 429 (no Retry-After) beyond; 4 workers",
        server={"capacity": 2, "queue": 0, "latency": 0.01},
        workers=4,
        partitions=8,
        # 20,000 rows two at a time take 100 s at best: half the rows, and the glue (which retries into the
        # refusals for minutes) a tenth of those.
        rows_share=0.5,
        case_shares=(("glue-spark", 0.1),),
    ),
    Endpoint(
        key="quota",
        title="quota-limited: 30,000 requests/min (500 per 1 s sliding window), 429 + `Retry-After` / "
        "`retry-after-ms` beyond, 20 ms each",
        server={"requests_per_minute": 30000, "quota_window": 1.0, "latency": 0.02},
        workers=2,
        partitions=8,
    ),
]

#: ``ray.data.llm`` settings tried on every endpoint (besides its defaults); the best complete one is rerun on all
#: the rows. ``concurrency`` is its actor count (each runs 4 batches at once, one request at a time per batch);
#: ``num_cpus`` below 1 lets more actors than CPUs run on the 2-CPU cluster.
SWEEP: list[dict[str, Any]] = [
    {"concurrency": 1, "max_retries": 10, "base_retry_wait_time_in_s": 0.1},
    {"concurrency": 2, "max_retries": 10, "base_retry_wait_time_in_s": 0.1, "http_request_stage": {"num_cpus": 0.25}},
    {"concurrency": 4, "max_retries": 10, "base_retry_wait_time_in_s": 0.1, "http_request_stage": {"num_cpus": 0.25}},
    {"concurrency": 8, "max_retries": 10, "base_retry_wait_time_in_s": 0.1, "http_request_stage": {"num_cpus": 0.25}},
]
#: The share of an endpoint's rows for ``ray.data.llm`` at its defaults (4 requests in flight: 20,000 rows at
#: 50 ms would take 250 s) and for each sweep run.
_DEFAULTS_SHARE = 0.1
_SWEEP_SHARE = 0.1


def _running_server(server: dict[str, Any]) -> AbstractContextManager[EmulatorProcess]:
    return running_emulator([sys.executable, "-m", "benchmarks._scaleout_server", json.dumps(server)], _ENV)


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kill what is left of a run's process group (the engine's own processes: JVM, raylet, workers)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _run_plan(plan: dict[str, Any], url: str) -> tuple[list[dict[str, Any]], str | None]:
    """Run a plan in a child process (its own session, so its engine can be killed with it); its case results."""
    for spec in plan["cases"]:
        spec["url"] = url
    budget = _STARTUP_ALLOWANCE + sum(spec["timeout"] + _GAP for spec in plan["cases"])
    command = [sys.executable, "-m", "benchmarks._scaleout_run", json.dumps(plan)]
    process = subprocess.Popen(
        command,
        cwd=_ROOT,
        env=_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    problem = None
    try:
        out, err = process.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        problem = f"the run outlived its {budget:.0f} s budget and was killed"
    finally:
        _kill_group(process)
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if process.returncode not in (0, None) and problem is None:
        problem = f"the run ended with status {process.returncode}: {err.strip()[-1500:]}"
    if problem:
        log(f"  {problem}")
    return results, problem


def _window(samples: list[list[float]], start: float, end: float) -> dict[str, Any]:
    """The endpoint's counts between two wall-clock times, from its running totals sampled every 100 ms."""
    before = next((s for s in reversed(samples) if s[0] <= start), samples[0])
    after = next((s for s in samples if s[0] >= end), samples[-1])
    inside = [s for s in samples if start <= s[0] <= end]
    busy = [s for s in inside if s[1] > 0]
    requests, throttled = after[3] - before[3], after[4] - before[4]
    return {
        "requests_sent": requests,
        "throttled": throttled,
        "throttled_pct": 100.0 * throttled / requests if requests else 0.0,
        "peak_in_flight_sampled": max((s[1] for s in inside), default=0),
        "scoring_s": (busy[-1][0] - busy[0][0] + 0.1) if busy else None,
        "series": [[round(s[0] - start, 2), s[1], s[3] - before[3], s[4] - before[4]] for s in inside],
    }


def _per_second(series: list[list[float]]) -> list[dict[str, float]]:
    """One-second bins of a case's series: mean in flight, requests sent and the share of them refused."""
    bins: dict[int, list[list[float]]] = {}
    for point in series:
        bins.setdefault(int(point[0]), []).append(point)
    out = []
    previous = [0.0, 0, 0, 0]
    for second in sorted(bins):
        points = bins[second]
        sent = points[-1][2] - previous[2]
        refused = points[-1][3] - previous[3]
        previous = points[-1]
        out.append(
            {
                "t": second,
                "mean_in_flight": round(sum(p[1] for p in points) / len(points), 2),
                "sent": sent,
                "throttled_pct": round(100.0 * refused / sent, 1) if sent else 0.0,
            }
        )
    return out


def _convergence(row: dict[str, Any], capacity: int | None) -> dict[str, Any] | None:
    """How the uncoordinated workers settled: in flight and 429s in the first 5 s of scoring and after."""
    seconds = [b for b in row["per_second"] if b["sent"] > 0]
    if capacity is None or len(seconds) < 8:
        return None
    first, rest = seconds[:5], seconds[5:-2]  # the last seconds are the tail: fewer rows left than slots
    if not rest:
        return None

    def share(bins: list[dict[str, float]]) -> float:
        sent = sum(b["sent"] for b in bins)
        return 100.0 * sum(b["sent"] * b["throttled_pct"] / 100.0 for b in bins) / sent if sent else 0.0

    return {
        "capacity": capacity,
        "workers": row["workers"],
        "first_5s_mean_in_flight": round(sum(b["mean_in_flight"] for b in first) / len(first), 2),
        "first_5s_throttled_pct": round(share(first), 1),
        "steady_mean_in_flight": round(sum(b["mean_in_flight"] for b in rest) / len(rest), 2),
        "steady_throttled_pct": round(share(rest), 1),
    }


def _finish_row(row: dict[str, Any], endpoint: Endpoint, counts: dict[str, Any], load: float) -> dict[str, Any]:
    window = _window(counts["samples"], row["start_wall"], row["end_wall"])
    row.update({key: value for key, value in window.items() if key != "series"})
    row["per_second"] = _per_second(window["series"])
    ideal = endpoint.ideal(row["rows"])
    row["ideal_s"] = ideal
    row["x_ideal"] = row["elapsed_s"] / ideal
    row["x_ideal_scoring"] = row["scoring_s"] / ideal if row["scoring_s"] else None
    row["rows_per_s"] = row["ok"] / row["elapsed_s"] if row["elapsed_s"] > 0 else 0.0
    row["lost"] = row["rows"] - row["ok"]
    row["status"] = (
        "not run"
        if row.get("not_run")
        else "timed out"
        if row["timed_out"]
        else "aborted"
        if row["aborted"]
        else "finished"
    )
    row["label"] = _label(row)
    row["load_start"] = load
    row["convergence"] = _convergence(row, endpoint.server.get("capacity")) if row["case"].startswith("azml") else None
    return row


def _label(row: dict[str, Any]) -> str:
    key = row["key"]
    if key == "ray-llm-defaults":
        return "ray.data.llm, defaults"
    if key == "ray-llm-best":
        return "ray.data.llm, best of the sweep"
    if key.startswith("ray-llm-sweep"):
        return f"ray.data.llm sweep {key.rsplit('-', 1)[1]}"
    if key == "azml-ray-convergence":
        return f"azml Ray, {row['workers']} actors (convergence)"
    if key == "azml-process":
        return "azml, one process (no engine, one client)"
    if key == "azml-spark":
        return f"azml Spark, local[{row['workers']}]"
    if key == "azml-ray":
        return f"azml Ray, {row['workers']} actors"
    if key == "glue-spark":
        return f"mapInPandas + aiohttp, local[{row['workers']}]"
    return key


def _scaled(rows: int, fraction: float) -> int:
    return max(20, round(rows * fraction))


def _timeout(endpoint: Endpoint, rows: int, args: argparse.Namespace) -> float:
    return args.timeout_factor * endpoint.ideal(rows) + args.timeout_extra


def _plans(endpoint: Endpoint, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The child runs for one endpoint: a Spark session per Spark case, one Ray cluster for its Ray cases."""
    wanted = set(args.cases)
    plans: list[dict[str, Any]] = []

    def spec(key: str, case: str, workers: int, share: float = 1.0, **extra: Any) -> dict[str, Any]:
        count = endpoint.rows_for(key, args.rows)
        count = count if share == 1.0 else _scaled(count, share)
        blocks = endpoint.partitions if case.endswith("spark") else max(endpoint.partitions, count // 500)
        return {
            "key": key,
            "case": case,
            "rows": count,
            "workers": workers,
            "partitions": blocks,
            "timeout": _timeout(endpoint, count, args),
            **extra,
        }

    if "azml-process" in wanted:
        plans.append({"engine": "process", "workers": 1, "cases": [spec("azml-process", "azml-process", 1)]})
    for case in ("azml-spark", "glue-spark"):
        if case in wanted:
            plans.append(
                {"engine": "spark", "workers": endpoint.workers, "cases": [spec(case, case, endpoint.workers)]}
            )
    ray_cases = []
    if "azml-ray" in wanted:
        ray_cases.append(spec("azml-ray", "azml-ray", endpoint.workers, settings={"concurrency": endpoint.workers}))
    if "ray-llm" in wanted:
        ray_cases.append(spec("ray-llm-defaults", "ray-llm", 1, _DEFAULTS_SHARE, settings={}))
        if args.sweep:
            for index, settings in enumerate(SWEEP, 1):
                ray_cases.append(
                    spec(
                        f"ray-llm-sweep-{index}",
                        "ray-llm",
                        settings.get("concurrency", 1),
                        _SWEEP_SHARE,
                        settings=settings,
                    )
                )
            ray_cases.append(spec("ray-llm-best", "ray-llm", 0, best_of="ray-llm-sweep"))
    if "azml-ray" in wanted and args.convergence and endpoint.key == "capacity-16":
        ray_cases.append(spec("azml-ray-convergence", "azml-ray", 4, 0.5, settings={"concurrency": 4}))
    if ray_cases:
        plans.append({"engine": "ray", "workers": endpoint.workers, "gap_s": _GAP, "cases": ray_cases})
    return plans


def run_endpoint(endpoint: Endpoint, args: argparse.Namespace) -> dict[str, Any]:
    """Run every case against ``endpoint`` (a fresh emulator per child run) and return its rows."""
    log(f"{endpoint.key}: {endpoint.title}")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for plan in _plans(endpoint, args):
        remaining = list(plan["cases"])
        while remaining:
            load = load_average()
            with _running_server(endpoint.server) as server:
                results, problem = _run_plan({**plan, "cases": remaining}, server.url)
                counts = server.stats()
            if problem:
                problems.append(problem)
            rows += [_finish_row(result, endpoint, counts, load) for result in results]
            for row in rows[-len(results) :] if results else []:
                _log_row(row)
            # A case that timed out ends its engine's run (its job may still hold the engine): the cases after it
            # run in a fresh engine and against a fresh emulator. A run that died without a timeout ends the plan.
            reported = {result["key"] for result in results}
            timed_out = [
                index
                for index, spec in enumerate(remaining)
                if spec["key"] in reported and next(r for r in results if r["key"] == spec["key"])["timed_out"]
            ]
            after = remaining[timed_out[-1] + 1 :] if timed_out else []
            lost = [spec for spec in remaining if spec["key"] not in reported and spec not in after]
            for spec in lost:
                row = _finish_row(_not_run(spec, problem or "not reported"), endpoint, counts, load)
                rows.append(row)
                _log_row(row)
            remaining = [_with_best(spec, rows) for spec in after]
    return {
        "key": endpoint.key,
        "title": endpoint.title,
        "server": endpoint.server,
        "workers": endpoint.workers,
        "partitions": endpoint.partitions,
        "rate_per_s": endpoint.rate(),
        "rows": rows,
        "problems": problems,
    }


def _log_row(row: dict[str, Any]) -> None:
    log(
        f"  {row['label']:<40} {row['status']:<9} {row['elapsed_s']:6.1f} s = {row['x_ideal']:.2f}x ideal "
        f"(scoring {row['x_ideal_scoring'] or 0:.2f}x), {row['rows_per_s']:6.0f} rows/s, lost {row['lost']}, "
        f"429 {row['throttled']} ({row['throttled_pct']:.1f}%), peak {row['peak_in_flight_sampled']}"
        + (f", RSS/worker {row['peak_worker_rss_mb']} MB" if row["peak_worker_rss_mb"] is not None else "")
    )


def _with_best(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``best_of`` case continued in a fresh engine: its settings chosen here, from the rows already measured."""
    return best_of(spec, rows) if spec.get("best_of") else spec


def _not_run(spec: dict[str, Any], why: str) -> dict[str, Any]:
    now = time.time()
    return {
        **{key: spec[key] for key in ("key", "case", "rows", "workers", "partitions")},
        "engine": engine_of(spec["case"]),
        "settings": spec.get("settings") or {},
        "start_wall": now,
        "end_wall": now,
        "elapsed_s": spec["timeout"],
        "ok": 0,
        "errored": 0,
        "missing": spec["rows"],
        "first_error": None,
        "aborted": False,
        "abort_error": why,
        "timed_out": False,
        "not_run": True,
        "worker_processes": [],
        "workers_seen": 0,
        "peak_worker_rss_mb": None,
        "driver_peak_rss_mb": None,
        "startup_s": None,
    }


# --- report -----------------------------------------------------------------------------------------------------


def _settings_text(settings: dict[str, Any]) -> str:
    if not settings:
        return "defaults"
    parts = []
    for name, value in settings.items():
        if name == "http_request_stage":
            parts += [f"stage {k}={v}" for k, v in value.items()]
        elif name == "base_retry_wait_time_in_s":
            parts.append(f"base wait {value} s")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def _status_text(row: dict[str, Any]) -> str:
    if row["status"] == "finished":
        return "finished"
    return f"**{row['status']}**"


def markdown(results: dict[str, Any]) -> str:
    """The scale-out results as markdown (``scaleout.md``)."""
    machine = results["machine"]
    load = results["load_average"]
    settings = results["settings"]
    lines = [
        "# azml-client scale-out benchmarks (issue 14)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}, {machine['python']}; "
        f"Spark `local[W]`, Ray `ray.init(num_cpus=2)`. Run {results['finished']}, took {results['duration_s']:.0f} s; "
        f"load average {load['start']:.2f} at the start, {load['end']:.2f} at the end (the machine is shared: per run, "
        f"the `load` column). {settings['rows']:,} rows per run unless the rows column says otherwise.",
        *[
            f"\nRerun {rerun['finished']}: the {', '.join(rerun['cases'])} cases of {', '.join(rerun['endpoints'])}, "
            f"with timeouts of {rerun['timeout_factor']:g} x ideal + 45 s, {rerun['duration_s']:.0f} s, load average "
            f"{rerun['load_average']['start']:.2f} at the start, {rerun['load_average']['end']:.2f} at the end (the "
            "rows they replace are kept in `scaleout.json` under `replaced`)."
            for rerun in results.get("reruns") or []
        ],
        "",
        "Each endpoint is an emulator (`MockEndpoint`) in a process of its own on 127.0.0.1; every case posts to its "
        "serverless completions route (`/v1/completions`, `max_tokens` 16, with the key header), the one route all of "
        "them speak. Time: the scoring job's wall time, from the action to its last row (the engine's start-up not "
        "included: each Spark case has a session of its own, which first runs one job in the JVM alone, so that the "
        "JVM's first-job cost of 3-5 s is the engine's; the Python worker or actor start-up included). Scoring: from "
        "the endpoint's first request of the case to its last answer (sampled every 100 ms). Ideal: rows x latency / "
        "capacity, or rows / the quota's rate. Lost: rows without a successful output (errored, or never produced "
        "because the job aborted or timed out). 429s: counted by the endpoint, of the requests it got. Peak in flight:"
        " the most requests inside the endpoint at once, sampled every 100 ms. RSS: the peak resident memory (`VmHWM`)"
        " of the largest worker process (Spark Python worker, Ray actor), with the number of such processes seen.",
        "",
    ]
    for endpoint in results["endpoints"]:
        lines += [
            f"## `{endpoint['key']}`: {endpoint['title']}",
            "",
            f"Ideal rate {endpoint['rate_per_s']:.0f} rows/s. Spark: `local[{endpoint['workers']}]`, "
            f"{endpoint['partitions']} partitions; Ray: a block per 500 rows (at least {endpoint['partitions']}). "
            "Not run: a case after one that timed out in the same Ray cluster, in a harness older than the rerun "
            "(now those run in a fresh cluster).",
            "",
            "| case | settings | rows | status | time | scoring | rows/s | vs ideal (time / scoring) | lost "
            "| sent | 429s | peak in flight | workers, RSS each (max) | load |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in endpoint["rows"]:
            scoring = f"{row['scoring_s']:.1f} s" if row["scoring_s"] else "-"
            vs_scoring = f"{row['x_ideal_scoring']:.2f}x" if row["x_ideal_scoring"] else "-"
            rss = f"{row['workers_seen']}, {row['peak_worker_rss_mb']:.0f} MB" if row["peak_worker_rss_mb"] else "-"
            lines.append(
                f"| {row['label']} | {_settings_text(row['settings'])} | {row['rows']:,} | {_status_text(row)} "
                f"| {row['elapsed_s']:.1f} s | {scoring} | {row['rows_per_s']:.0f} | {row['x_ideal']:.2f}x / "
                f"{vs_scoring} | {row['lost']:,} | {row['requests_sent']:,} | {row['throttled']:,} "
                f"({row['throttled_pct']:.1f}%) | {row['peak_in_flight_sampled']} | {rss} | {row['load_start']:.2f} |"
            )
        aborted = [row for row in endpoint["rows"] if row["status"] != "finished" and row["abort_error"]]
        if aborted:
            lines += ["", "Why runs stopped:", ""]
            lines += [f"- {row['label']}: `{row['abort_error']}`" for row in aborted]
        if endpoint["problems"]:
            lines += ["", *[f"Harness: {problem}." for problem in endpoint["problems"]]]
        lines.append("")
    for replaced in results.get("replaced") or []:
        runs = "; ".join(
            f"{row['label']}: {row['status']}, {row['x_ideal']:.2f}x, {row['lost']:,} lost, "
            f"{row['throttled_pct']:.1f}% 429s"
            for row in replaced["rows"]
        )
        lines += [f"Replaced by the rerun, on `{replaced['endpoint']}`: {runs}.", ""]
    lines += _targets_section(results)
    lines += _convergence_section(results)
    lines += [
        "## What ran",
        "",
        '- azml Spark: `azml_client.spark.complete(df, url, key, api_type="serverless", '
        'model_kwargs={"max_tokens": 16})` at its defaults, counted with one aggregation over the output.',
        "- azml Ray: `azml_client.ray.complete(ds, ..., concurrency=W)` (W actors of `num_cpus=0.25`; otherwise "
        "defaults), read with `iter_batches`.",
        "- `ray.data.llm`: `build_processor(HttpRequestProcessorConfig(url=.../v1/completions, headers={key}, ...), "
        "preprocess=row -> payload, postprocess=row -> text)`. Defaults: `batch_size=64`, `concurrency=1`, "
        "`max_retries=0`, `qps=None`. The sweep (on a tenth of the rows) tries the settings listed in "
        "`benchmarks/_scaleout.py` (`SWEEP`); the best is the one that lost no row at the most rows/s, rerun on "
        "all the rows.",
        f"- mapInPandas + aiohttp: `benchmarks/_scaleout_glue.py`: `asyncio.run` per partition, a semaphore of "
        f"{CONCURRENCY} per partition, {ATTEMPTS} attempts with a sleep of `Retry-After` (else 1, 2, 4, ... s) on "
        "429 and 503, an `error` column for a row that still fails.",
        "",
        "`scaleout.json` holds every number, the per-second series of each run (mean in flight, requests sent, "
        "share refused) and each worker process's peak RSS; `scaleout.png` charts rows/s, 429s and the "
        "convergence runs' in-flight count over time.",
    ]
    return "\n".join(lines) + "\n"


def _rows_of(results: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    endpoint = next((e for e in results["endpoints"] if e["key"] == key), None)
    return {row["key"]: row for row in endpoint["rows"]} if endpoint else {}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked per endpoint for each azml case (never asserted anywhere)."""
    checks = []
    for endpoint in results["endpoints"]:
        rows = {row["key"]: row for row in endpoint["rows"]}
        best = rows.get("ray-llm-best")
        for key in ("azml-spark", "azml-ray"):
            row = rows.get(key)
            if row is None:
                continue
            checks.append(
                {
                    "endpoint": endpoint["key"],
                    "case": key,
                    "target": "0 rows lost",
                    "value": f"{row['lost']} lost",
                    "holds": row["lost"] == 0,
                }
            )
            scoring = row["x_ideal_scoring"]
            checks.append(
                {
                    "endpoint": endpoint["key"],
                    "case": key,
                    "target": "within 1.2x of ideal (time / scoring)",
                    "value": f"{row['x_ideal']:.2f}x / {scoring:.2f}x" if scoring else f"{row['x_ideal']:.2f}x",
                    "holds": row["x_ideal"] <= 1.2,
                    "holds_scoring": scoring is not None and scoring <= 1.2,
                }
            )
            if best is not None and best["ok"]:
                checks.append(
                    {
                        "endpoint": endpoint["key"],
                        "case": key,
                        "target": "rows/s >= ray.data.llm at its best",
                        "value": f"{row['rows_per_s']:.0f} vs {best['rows_per_s']:.0f}",
                        "holds": row["rows_per_s"] >= best["rows_per_s"],
                    }
                )
    return checks


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[value]


def _targets_section(results: dict[str, Any]) -> list[str]:
    checks = results.get("targets") or []
    if not checks:
        return []
    lines = [
        "## Targets (issue 14)",
        "",
        "| endpoint | case | target | measured | holds (time) | holds (scoring) |",
        "|---|---|---|---|---|---|",
    ]
    for check in checks:
        lines.append(
            f"| {check['endpoint']} | {check['case']} | {check['target']} | {check['value']} | {_yes(check['holds'])} "
            f"| {_yes(check.get('holds_scoring'))} |"
        )
    return [*lines, ""]


def _convergence_section(results: dict[str, Any]) -> list[str]:
    lines = []
    for endpoint in results["endpoints"]:
        for row in endpoint["rows"]:
            conv = row.get("convergence")
            if conv is None:
                continue
            lines.append(
                f"| {endpoint['key']} | {row['label']} | {conv['capacity']} | {conv['first_5s_mean_in_flight']:.1f} "
                f"| {conv['first_5s_throttled_pct']:.1f}% | {conv['steady_mean_in_flight']:.1f} "
                f"| {conv['steady_throttled_pct']:.1f}% |"
            )
    if not lines:
        return []
    return [
        "## Convergence without a coordinator",
        "",
        "Each azml worker (a Spark Python worker, a Ray actor) runs its own adaptive limiter and knows nothing of "
        "the others. The endpoint's in-flight count (sampled every 100 ms) and the share of its requests refused, in "
        "the first 5 s of scoring and after (the last 2 s, the tail with fewer rows left than slots, left out):",
        "",
        "| endpoint | run | capacity | in flight, first 5 s | 429s, first 5 s | in flight, after | 429s, after |",
        "|---|---|---:|---:|---:|---:|---:|",
        *lines,
        "",
    ]


def summary(results: dict[str, Any]) -> str:
    """A short table for the READMEs: per endpoint, time vs ideal, rows/s, rows lost and 429s of each case."""

    def cell(row: dict[str, Any] | None) -> str:
        if row is None:
            return "-"
        text = (
            f"{row['x_ideal']:.2f}x, {row['rows_per_s']:.0f} rows/s, {row['lost']:,} lost, "
            f"{row['throttled_pct']:.0f}% 429s"
        )
        return text if row["status"] == "finished" else f"**{row['status']}**: {text}"

    lines = [
        "| endpoint | azml, one process | azml Spark | azml Ray | ray.data.llm, defaults | ray.data.llm, best "
        "| mapInPandas + aiohttp |",
        "|---|---|---|---|---|---|---|",
    ]
    for endpoint in results["endpoints"]:
        rows = {row["key"]: row for row in endpoint["rows"]}
        cells = [
            cell(rows.get(key))
            for key in ("azml-process", "azml-spark", "azml-ray", "ray-llm-defaults", "ray-llm-best", "glue-spark")
        ]
        lines.append(f"| {endpoint['key']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _chart(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    keys = ["azml-spark", "azml-ray", "ray-llm-defaults", "ray-llm-best", "glue-spark"]
    names = ["azml Spark", "azml Ray", "ray.data.llm\ndefaults", "ray.data.llm\nbest", "mapInPandas\n+ aiohttp"]
    endpoints = results["endpoints"]
    convergence = [
        (endpoint, row)
        for endpoint in endpoints
        for row in endpoint["rows"]
        if row["case"].startswith("azml") and endpoint["server"].get("capacity") and row["per_second"]
    ]
    figure, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    width = 0.8 / max(1, len(endpoints))
    for panel, (metric, title) in enumerate(
        (("rows_per_s", "rows/s (of the endpoint's ideal)"), ("throttled_pct", "429s, % of requests"))
    ):
        ax = axes[0][panel]
        for index, endpoint in enumerate(endpoints):
            rows = {row["key"]: row for row in endpoint["rows"]}
            values = []
            for key in keys:
                row = rows.get(key)
                if row is None:
                    values.append(0.0)
                elif metric == "rows_per_s":
                    values.append(row["rows_per_s"] / endpoint["rate_per_s"])
                else:
                    values.append(row[metric])
            positions = [k + (index - (len(endpoints) - 1) / 2) * width for k in range(len(keys))]
            ax.bar(positions, values, width, label=endpoint["key"])
        if metric == "rows_per_s":
            ax.axhline(1.0, color="#9e9e9e", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(keys)), names, fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    for panel, endpoint_key in enumerate(("capacity-16", "two-wide")):
        ax = axes[1][panel]
        for endpoint, row in convergence:
            if endpoint["key"] != endpoint_key:
                continue
            ax.plot(
                [b["t"] for b in row["per_second"]],
                [b["mean_in_flight"] for b in row["per_second"]],
                label=row["label"],
                linewidth=1.2,
            )
            capacity = endpoint["server"]["capacity"]
        if ax.lines:
            ax.axhline(capacity, color="#9e9e9e", linestyle="--", linewidth=0.8, label=f"capacity {capacity}")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"{endpoint_key}: requests in flight at the endpoint (1 s means), azml workers", fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    figure.suptitle("Scale-out: azml-client vs ray.data.llm and hand-written glue, 2-core machine", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _merged(previous: dict[str, Any], rerun: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the rows of ``rerun`` in place of those with the same key; replaced rows kept aside."""
    for fresh in rerun["endpoints"]:
        old = next((e for e in previous["endpoints"] if e["key"] == fresh["key"]), None)
        if old is None:
            previous["endpoints"].append(fresh)
            continue
        keys = {row["key"] for row in fresh["rows"]}
        replaced = [row for row in old["rows"] if row["key"] in keys]
        for row in replaced:
            row["per_second"] = None  # the replaced run's numbers stay; its series are dropped
        previous.setdefault("replaced", []).append({"endpoint": old["key"], "rows": replaced})
        for row in fresh["rows"]:
            row["rerun"] = rerun["finished"]
        old["rows"] = [row for row in old["rows"] if row["key"] not in keys] + fresh["rows"]
        old["problems"] = old["problems"] + fresh["problems"]
    previous.setdefault("reruns", []).append(
        {
            "endpoints": [endpoint["key"] for endpoint in rerun["endpoints"]],
            "cases": rerun["settings"]["cases"],
            "timeout_factor": rerun["settings"].get("timeout_factor"),
            "finished": rerun["finished"],
            "duration_s": rerun["duration_s"],
            "load_average": rerun["load_average"],
        }
    )
    return previous


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks --scaleout", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="rows per run (20000; some runs get a share)")
    parser.add_argument("--endpoints", default="", help="comma-separated endpoint keys (default: all)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases ({','.join(CASES)})")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the ray.data.llm sweep")
    parser.add_argument(
        "--no-convergence", dest="convergence", action="store_false", help="skip the 4-actor convergence run"
    )
    parser.add_argument("--timeout-factor", type=float, default=2.0, help="a case's timeout: factor x ideal + extra")
    parser.add_argument("--timeout-extra", type=float, default=45.0, help="seconds added to each timeout (45)")
    parser.add_argument("--out", type=Path, default=_RESULTS, help="where results go (benchmarks/results)")
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="do not draw scaleout.png")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="replace only the --endpoints run now in the existing scaleout.json (the replaced runs are kept there)",
    )
    args = parser.parse_args(argv)
    args.cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)} (cases: {', '.join(CASES)})")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the scale-out cases and write ``scaleout.md``, ``scaleout.json`` and ``scaleout.png``."""
    args = _parse(argv)
    chosen = [key for key in args.endpoints.split(",") if key]
    known = {endpoint.key for endpoint in ENDPOINTS}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise SystemExit(f"unknown endpoint(s) {', '.join(unknown)} (endpoints: {', '.join(sorted(known))})")
    started = time.perf_counter()
    load_start = load_average()
    endpoints = [run_endpoint(e, args) for e in ENDPOINTS if not chosen or e.key in chosen]
    results: dict[str, Any] = {
        "machine": describe_machine(),
        "settings": {
            "timeout_factor": args.timeout_factor,
            "timeout_extra": args.timeout_extra,
            "rows": args.rows,
            "cases": args.cases,
            "sweep": SWEEP if args.sweep else None,
            "glue": {"concurrency": CONCURRENCY, "attempts": ATTEMPTS},
        },
        "endpoints": endpoints,
        "duration_s": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": load_average()},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    previous = args.out / "scaleout.json"
    if args.rerun and previous.exists():
        results = _merged(json.loads(previous.read_text()), results)
    results["targets"] = targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaleout.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "scaleout.md").write_text(markdown(results))
    written = ["scaleout.json", "scaleout.md"]
    if args.chart and _chart(results, args.out / "scaleout.png"):
        written.append("scaleout.png")
    for name in written:
        log(f"wrote {args.out / name}")
    print(summary(results))
    return 0
