"""The push-back benchmarks (issue 13): batches against endpoints that refuse, queue and ration.

``python -m benchmarks --pushback`` runs each scenario against an emulator (:class:`azml_client.testing.MockEndpoint`
with its push-back models) in a process of its own (``benchmarks/_pushback_server.py``), one fresh emulator per
client run, and each client in a process of its own (``benchmarks/_pushback_client.py``). It writes
``pushback.md``, ``pushback.json`` and ``pushback.png`` (the adaptive limit over time) to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._emulator import EmulatorProcess, load_average, log, running_emulator
from benchmarks._machine import describe_machine
from benchmarks._plot import pyplot
from benchmarks._pushback_client import CLIENTS

__all__ = ["SCENARIOS", "Scenario", "main"]

_ROOT = Path(__file__).resolve().parent.parent
_RESULTS = Path(__file__).resolve().parent / "results"
_CHILD_TIMEOUT = 300.0
_ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@dataclass
class Scenario:
    """One endpoint model and the clients run against it."""

    key: str
    title: str
    server: dict[str, Any]
    prompts: int
    clients: list[str]
    #: Prompts for the seed, which sends one at a time (time vs ideal is a ratio, so fewer prompts suffice).
    seed_prompts: int = 200
    #: Two client processes at once (1,000 prompts each by default) instead of one client at a time.
    peers: int = 0
    #: (metric, limit) per target, checked on the rows of ``target_clients``.
    targets: dict[str, float] = field(default_factory=dict)
    target_clients: tuple[str, ...] = ("azml-default",)

    @property
    def capacity(self) -> int | None:
        """The requests the endpoint processes at once."""
        return self.server.get("capacity")

    def mean_latency(self) -> float:
        """The mean processing time (a lognormal's mean is its median times exp(sigma^2 / 2))."""
        latency = float(self.server.get("latency", 0.0))
        if self.server.get("latency_distribution") == "lognormal":
            return latency * math.exp(self.server.get("latency_sigma", 0.5) ** 2 / 2)
        return latency

    def ideal(self, prompts: int) -> float:
        """The fastest the endpoint can answer ``prompts``: by its capacity, or by its quota rate."""
        if self.server.get("rpm"):
            return prompts / (self.server["rpm"] / 60)
        assert self.capacity
        return prompts * self.mean_latency() / self.capacity


_ALL = ["azml-default", "azml-64", "azml-fixed", "openai"]


def _heavy_tailed(run: int, capacity: int, median: float, prompts: int, seed: bool) -> Scenario:
    return Scenario(
        key=f"heavy-tailed-{run}",
        title=f"2-wide heavy-tailed, run {run}: capacity {capacity} + queue {capacity}, lognormal median "
        f"{median * 1000:.0f} ms (sigma 0.5), seed {run}",
        server={
            "capacity": capacity,
            "queue": capacity,
            "latency": median,
            "latency_distribution": "lognormal",
            "latency_sigma": 0.5,
            "seed": run,
        },
        prompts=prompts,
        clients=["azml-default", "azml-fixed", "openai", *(["seed"] if seed else [])],
        seed_prompts=prompts // 2,
        targets={"lost": 0, "x_ideal": 1.25, "throttled_pct": 10},
    )


SCENARIOS: list[Scenario] = [
    Scenario(
        key="hard-cap",
        title="hard cap: 8 in flight, 50 ms, 429 + `Retry-After: 1` beyond",
        server={"capacity": 8, "queue": 0, "latency": 0.05, "capacity_retry_after": 1},
        prompts=1000,
        clients=[*_ALL, "seed"],
        targets={"lost": 0, "x_ideal": 1.15, "throttled_pct": 10},
    ),
    Scenario(
        key="managed",
        title="managed-like: 8 processed + 8 queued, 50 ms, 429 beyond 16 (no Retry-After)",
        server={"capacity": 8, "queue": 8, "latency": 0.05},
        prompts=2000,
        clients=_ALL,
        targets={"lost": 0, "x_ideal": 1.15, "throttled_pct": 5},
        target_clients=("azml-default", "azml-64"),
    ),
    Scenario(
        key="quota",
        title="quota: 6,000 requests/min (100 per 1 s window), `retry-after-ms` + remaining headers, 10 ms",
        server={"rpm": 6000, "quota_window": 1.0, "latency": 0.01},
        prompts=2000,
        clients=_ALL,
        targets={"lost": 0, "x_ideal": 1.15, "throttled_pct": 10},
    ),
    Scenario(
        key="quota-stated",
        title="same quota, `RateLimit(requests_per_minute=6000)` stated",
        server={"rpm": 6000, "quota_window": 1.0, "latency": 0.01},
        prompts=2000,
        clients=["azml-rate"],
        targets={"lost": 0, "x_ideal": 1.05, "throttled_pct": 1},
        target_clients=("azml-rate",),
    ),
    _heavy_tailed(1, 2, 0.2, 120, seed=True),
    _heavy_tailed(2, 3, 0.15, 200, seed=False),
    _heavy_tailed(3, 2, 0.25, 120, seed=False),
    Scenario(
        key="two-processes",
        title="two azml processes (defaults) sharing 8 processed + 8 queued, 50 ms",
        server={"capacity": 8, "queue": 8, "latency": 0.05},
        prompts=1000,
        clients=["azml-default"],
        peers=2,
        targets={"lost": 0, "x_ideal": 1.2, "min_share_pct": 40},
    ),
]


def _server_flags(server: dict[str, Any]) -> list[str]:
    flags = []
    for name, value in server.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _running_server(server: dict[str, Any]) -> AbstractContextManager[EmulatorProcess]:
    return running_emulator([sys.executable, "-m", "benchmarks._pushback_server", *_server_flags(server)], _ENV)


def _client_command(client: str, url: str, prompts: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks._pushback_client", client, "--url", url, "-n", str(prompts), *extra]


def _finish(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=_CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise RuntimeError(f"{what} timed out:\n{err[-3000:]}") from None
    if process.returncode != 0:
        raise RuntimeError(f"{what} failed (status {process.returncode}):\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _spawn(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=_ROOT, env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _with_server_counts(row: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    sent = counts["requests"]
    row.update(
        requests_sent=sent,
        throttled=counts["throttled"],
        quota_throttled=counts["quota_throttled"],
        throttled_pct=100 * counts["throttled"] / sent if sent else 0.0,
        timeouts=counts["timeouts"],
        peak_in_flight=counts["max_in_flight"],
        peak_processing=counts["max_processing"],
        peak_queued=counts["max_queued"],
    )
    return row


def _run_one(scenario: Scenario, client: str, prompts: int) -> dict[str, Any]:
    load = load_average()
    with _running_server(scenario.server) as server:
        row = _finish(_spawn(_client_command(client, server.url, prompts)), f"{scenario.key} {client}")
        counts = server.stats()
    row = _with_server_counts(row, counts)
    ideal = scenario.ideal(prompts)
    row.update(
        label=CLIENTS[client], ideal_s=ideal, x_ideal=row["elapsed_s"] / ideal, load_start=load, load=load_average()
    )
    return row


def _answers_between(times: list[float], start: float, end: float) -> int:
    return sum(1 for moment in times if start <= moment <= end)


def _run_peers(scenario: Scenario, prompts: int) -> dict[str, Any]:
    load = load_average()
    with _running_server(scenario.server) as server:
        start_at = time.time() + 2.0  # both import and build their clients first, then start together
        processes = [
            _spawn(
                _client_command(
                    "azml-default",
                    server.url,
                    prompts,
                    "--offset",
                    str(index * prompts),
                    "--start-at",
                    f"{start_at:.3f}",
                    "--answer-times",
                )
            )
            for index in range(scenario.peers)
        ]
        peers = [_finish(process, f"{scenario.key} peer {index}") for index, process in enumerate(processes)]
        counts = server.stats()
    start = min(peer["start_wall"] for peer in peers)
    end = max(peer["end_wall"] for peer in peers)
    both_start, both_end = max(peer["start_wall"] for peer in peers), min(peer["end_wall"] for peer in peers)
    overlap = [_answers_between(peer["answered_at"] or [], both_start, both_end) for peer in peers]
    for peer, during in zip(peers, overlap, strict=True):
        peer["share_pct"] = 100 * peer["ok"] / max(1, sum(p["ok"] for p in peers))
        peer["share_while_both_pct"] = 100 * during / max(1, sum(overlap))
        peer["answered_at"] = None  # the counts above are what is kept
    total = prompts * scenario.peers
    ideal = scenario.ideal(total)
    row = {
        "client": "azml-default x2",
        "label": f"{scenario.peers} azml processes, defaults, {prompts:,} prompts each",
        "prompts": total,
        "ok": sum(peer["ok"] for peer in peers),
        "lost": sum(peer["lost"] for peer in peers),
        "elapsed_s": end - start,
        "ideal_s": ideal,
        "x_ideal": (end - start) / ideal,
        "min_share_pct": min(peer["share_while_both_pct"] for peer in peers),
        "peers": peers,
        "load_start": load,
        "load": load_average(),
    }
    return _with_server_counts(row, counts)


def _holds(row: dict[str, Any], targets: dict[str, float]) -> bool:
    checks = []
    for metric, limit in targets.items():
        value = row[metric]
        checks.append(value >= limit if metric == "min_share_pct" else value <= limit)
    return all(checks)


def _target_text(targets: dict[str, float]) -> str:
    parts = []
    for metric, limit in targets.items():
        if metric == "lost":
            parts.append(f"lost {limit:g}")
        elif metric == "x_ideal":
            parts.append(f"<= {limit:g}x")
        elif metric == "throttled_pct":
            parts.append(f"429s <= {limit:g}%")
        elif metric == "min_share_pct":
            parts.append(f"each >= {limit:g}% of answers")
    return ", ".join(parts)


def _scale(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    """Run every client of ``scenario`` (or its peers) and return its rows, targets checked."""
    log(f"{scenario.key}: {scenario.title}")
    rows = []
    if scenario.peers:
        rows.append(_run_peers(scenario, _scale(scenario.prompts, args.scale)))
    else:
        for client in scenario.clients:
            if client in ("openai", "seed") and not args.peers:
                continue
            prompts = scenario.seed_prompts if client == "seed" else scenario.prompts
            rows.append(_run_one(scenario, client, _scale(prompts, args.scale)))
    for row in rows:
        applies = row["client"].split(" ")[0] in scenario.target_clients and bool(scenario.targets)
        row["target"] = _target_text(scenario.targets) if applies else None
        row["holds"] = _holds(row, scenario.targets) if applies else None
        log(
            f"  {row['client']:<16} {row['elapsed_s']:6.2f} s = {row['x_ideal']:.2f}x ideal, lost {row['lost']}, "
            f"{row['requests_sent']} sent, 429 {row['throttled']} ({row['throttled_pct']:.1f}%), "
            f"408 {row['timeouts']}, peak {row['peak_in_flight']} (load {row['load_start']:.2f}->{row['load']:.2f})"
        )
    return {
        "key": scenario.key,
        "title": scenario.title,
        "server": scenario.server,
        "mean_latency_s": scenario.mean_latency(),
        "rows": rows,
    }


def _fmt_holds(holds: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[holds]


def markdown(results: dict[str, Any]) -> str:
    """The push-back results as markdown (``pushback.md``)."""
    machine = results["machine"]
    load = results["load_average"]
    lines = [
        "# azml-client push-back benchmarks (issue 13)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['os']}, {machine['python']}. "
        f"Each scenario against a fresh `MockEndpoint` in its own process for each client run, each client in its "
        f"own process, on the serverless chat route (every client speaks it; the push-back applies to every "
        f"route). Run {results['finished']}, took {results['duration_s']:.0f} s; load average {load['start']:.2f} "
        f"at the start, {load['end']:.2f} at the end (per run: the `load` column).",
        "",
        "Ideal: prompts x mean latency / capacity, or prompts / quota rate. Lost: prompts without an answer. "
        "Requests sent, 429s, 408s and the peak in flight (every request inside the endpoint at once, a refused one "
        "included; in brackets the peak processed at once) are counted by the endpoint. The load column is the "
        "machine's 1-minute load average when the run started.",
        "",
        "| scenario | client | prompts | time | vs ideal | lost | sent | 429s | 408s "
        "| peak in flight (processing) | load | target | holds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for scenario in results["scenarios"]:
        for row in scenario["rows"]:
            lines.append(
                f"| {scenario['key']} | {row['label']} | {row['prompts']:,} | {row['elapsed_s']:.2f} s "
                f"| {row['x_ideal']:.2f}x | {row['lost']} | {row['requests_sent']:,} "
                f"| {row['throttled']:,} ({row['throttled_pct']:.1f}%) | {row['timeouts']} "
                f"| {row['peak_in_flight']} ({row['peak_processing']}) "
                f"| {row['load_start']:.2f} | {row['target'] or ''} | {_fmt_holds(row['holds'])} |"
            )
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{scenario['key']}`: {scenario['title']}." for scenario in results["scenarios"]]
    for rerun in results.get("reruns") or []:
        lines += [
            "",
            f"Rerun {rerun['finished']} (the first run was disturbed by other work on the machine): "
            f"{', '.join(rerun['scenarios'])}, {rerun['duration_s']:.0f} s, load average "
            f"{rerun['load_average']['start']:.2f} at the start, {rerun['load_average']['end']:.2f} at the end.",
        ]
    for scenario in results["scenarios"]:
        for row in scenario["rows"]:
            for index, peer in enumerate(row.get("peers") or []):
                if index == 0:
                    lines += ["", f"`{scenario['key']}`, each process:", ""]
                lines.append(
                    f"- process {index + 1}: {peer['ok']:,} answers, {peer['lost']} lost, {peer['elapsed_s']:.2f} s; "
                    f"{peer['share_while_both_pct']:.1f}% of the answers while both ran"
                )
    for scenario in results.get("replaced") or []:
        runs = "; ".join(
            f"{row['client']} {row['x_ideal']:.2f}x, lost {row['lost']}, 429s {row['throttled_pct']:.1f}% "
            f"(load {row['load_start']:.2f})"
            for row in scenario["rows"]
        )
        lines += ["", f"Replaced run of `{scenario['key']}`: {runs}."]
    lines += [
        "",
        "An endpoint that never pushes back: `LLM.abatch` against the raw aiohttp loop is the main harness's "
        "number (`results.md`, target >= 0.95x); it is not repeated here.",
        "",
        "`pushback.png`: azml-client's adaptive limit (`client.stats().limit`, sampled every 50 ms) over time.",
    ]
    return "\n".join(lines) + "\n"


def summary(results: dict[str, Any]) -> str:
    """A short table for the READMEs: one line a scenario, time vs ideal / lost / 429s per client, the target."""

    def cell(row: dict[str, Any] | None) -> str:
        if row is None:
            return "-"
        text = f"{row['x_ideal']:.2f}x, {row['lost']} lost, {row['throttled_pct']:.1f}%"
        if row.get("peers"):
            shares = " / ".join(f"{peer['share_while_both_pct']:.0f}%" for peer in row["peers"])
            text += f"; answers while both ran {shares}"
        return text

    lines = [
        "| scenario | azml, defaults (or as stated) | azml, fixed 64 | openai, 64 in flight | the seed | target "
        "| holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"]:
        rows = {row["client"]: row for row in scenario["rows"]}
        mine = next((row for row in scenario["rows"] if row["target"]), None)
        lines.append(
            f"| {scenario['key']} | {cell(mine)} | {cell(rows.get('azml-fixed'))} | {cell(rows.get('openai'))} "
            f"| {cell(rows.get('seed'))} | {mine['target'] if mine else ''} "
            f"| {_fmt_holds(mine['holds']) if mine else ''} |"
        )
    return "\n".join(lines) + "\n"


def _chart(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    panels = []
    for scenario in results["scenarios"]:
        series = []
        for row in scenario["rows"]:
            if row.get("limit_samples") and row["client"] != "azml-fixed":  # fixed: a flat line at 64
                series.append((row["client"], row["limit_samples"]))
            for index, peer in enumerate(row.get("peers") or []):
                if peer.get("limit_samples"):
                    offset = peer["start_wall"] - min(p["start_wall"] for p in row["peers"])
                    shifted = [[t + offset, limit] for t, limit in peer["limit_samples"]]
                    series.append((f"process {index + 1}", shifted))
        if series:
            panels.append((scenario, series))
    if not panels:
        return False
    columns = 2
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(11, 2.8 * rows), squeeze=False)
    for ax, (scenario, series) in zip(axes.flat, panels, strict=False):
        for name, samples in series:
            ax.plot([t for t, _ in samples], [limit for _, limit in samples], label=name, linewidth=1.2)
        capacity = scenario["server"].get("capacity")
        if capacity:
            ax.axhline(capacity, color="#9e9e9e", linestyle="--", linewidth=0.8, label=f"capacity {capacity}")
        ax.set_title(scenario["key"], fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        ax.set_ylabel("limit", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(
        "azml-client's adaptive concurrency limit over time (client.stats().limit, every 50 ms)", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _merged(previous: dict[str, Any], rerun: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the scenarios of ``rerun`` put in their place (each rerun one marked ``rerun``)."""
    fresh = {scenario["key"]: {**scenario, "rerun": rerun["finished"]} for scenario in rerun["scenarios"]}
    replaced = [scenario for scenario in previous["scenarios"] if scenario["key"] in fresh]
    previous.setdefault("replaced", []).extend(replaced)  # kept in the JSON: the disturbed first runs
    merged = [fresh.pop(scenario["key"], scenario) for scenario in previous["scenarios"]]
    previous["scenarios"] = merged + list(fresh.values())
    previous.setdefault("reruns", []).append(
        {"scenarios": [s["key"] for s in rerun["scenarios"]], "finished": rerun["finished"],
         "duration_s": rerun["duration_s"], "load_average": rerun["load_average"]}
    )  # fmt: skip
    return previous


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks --pushback", description=__doc__)
    parser.add_argument("--scenarios", default="", help="comma-separated scenario keys (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every prompt count (1.0)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="leave out the seed and openai")
    parser.add_argument("--out", type=Path, default=_RESULTS, help="where results go (benchmarks/results)")
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="do not draw pushback.png")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="replace only the --scenarios run now in the existing pushback.json (a rerun of a disturbed scenario)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the push-back scenarios and write ``pushback.md``, ``pushback.json`` and ``pushback.png``."""
    args = _parse(argv)
    chosen = [key for key in args.scenarios.split(",") if key]
    known = {scenario.key for scenario in SCENARIOS}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)} (scenarios: {', '.join(sorted(known))})")
    started = time.perf_counter()
    load_start = load_average()
    scenarios = [run_scenario(s, args) for s in SCENARIOS if not chosen or s.key in chosen]
    results = {
        "machine": describe_machine(),
        "settings": {"scale": args.scale, "peers": args.peers},
        "scenarios": scenarios,
        "duration_s": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": load_average()},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    previous = args.out / "pushback.json"
    if args.rerun and previous.exists():
        results = _merged(json.loads(previous.read_text()), results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pushback.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "pushback.md").write_text(markdown(results))
    written = ["pushback.json", "pushback.md"]
    if args.chart and _chart(results, args.out / "pushback.png"):
        written.append("pushback.png")
    for name in written:
        log(f"wrote {args.out / name}")
    print((args.out / "pushback.md").read_text())
    return 0
