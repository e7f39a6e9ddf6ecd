"""Turn a benchmark run into ``results.json``, ``results.md`` and ``throughput.png`` under ``benchmarks/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._plot import pyplot

__all__ = ["evaluate_targets", "markdown", "write_results"]


def _row(results: dict[str, Any], case: str) -> dict[str, Any] | None:
    return next((row for row in results["clients"] if row["case"] == case), None)


def _target(name: str, measured: str, holds: bool | None) -> dict[str, Any]:
    return {"target": name, "measured": measured, "holds": holds}


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the issue's targets against a run (a target whose inputs were not measured has ``holds=None``)."""
    targets = []
    azml, chat = _row(results, "azml-abatch"), _row(results, "azml-chat-abatch")
    raw, seed, openai = _row(results, "aiohttp-raw"), _row(results, "seed-abatch"), _row(results, "openai")
    if azml and raw:
        x = azml["req_per_s"] / raw["req_per_s"]
        targets.append(_target("azml LLM.abatch >= 0.95x raw aiohttp throughput", f"{x:.2f}x", x >= 0.95))
        x = azml["cpu_us_per_req"] / raw["cpu_us_per_req"]
        targets.append(
            _target(
                "azml client CPU per request <= 1.1x raw aiohttp's",
                f"{x:.2f}x ({azml['cpu_us_per_req']:.0f} vs {raw['cpu_us_per_req']:.0f} us)",
                x <= 1.1,
            )
        )
    if chat and raw:
        x = raw["cpu_us_per_req"] / chat["cpu_us_per_req"]
        targets.append(
            _target(
                "azml ChatModel.abatch >= 0.95x the raw loop's efficiency (client CPU per request, raw / azml)",
                f"{x:.2f}x ({chat['cpu_us_per_req']:.0f} vs {raw['cpu_us_per_req']:.0f} us)",
                x >= 0.95,
            )
        )
    raw_chat = _row(results, "aiohttp-raw-chat")
    if chat and raw_chat:
        x = raw_chat["cpu_us_per_req"] / chat["cpu_us_per_req"]
        targets.append(
            _target(
                "like for like: ChatModel.abatch vs a raw loop on the chat route (CPU per request, raw / azml)",
                f"{x:.2f}x ({chat['cpu_us_per_req']:.0f} vs {raw_chat['cpu_us_per_req']:.0f} us)",
                x >= 0.95,
            )
        )
    if openai and (chat or azml):
        mine = chat or azml
        assert mine is not None
        x = mine["req_per_s"] / openai["req_per_s"]
        extra = f"; LLM.abatch {azml['req_per_s'] / openai['req_per_s']:.1f}x" if chat and azml else ""
        targets.append(_target(f">= 10x openai AsyncOpenAI ({mine['case']})", f"{x:.1f}x{extra}", x >= 10))
    if seed and azml:
        x = azml["req_per_s"] / seed["req_per_s"]
        targets.append(_target(">= 2.5x the seed's abatch (azml LLM.abatch)", f"{x:.2f}x", x >= 2.5))
    memory = results.get("memory") or []
    if len(memory) >= 2:
        small, large = memory[0], memory[-1]
        growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
        targets.append(
            _target(
                f"peak RSS over {large['requests']:,} prompts within 10% of {small['requests']:,}, < 100 MB",
                f"{small['peak_rss_mb']:.1f} -> {large['peak_rss_mb']:.1f} MB ({growth:+.1%})",
                growth <= 0.10 and large["peak_rss_mb"] < 100,
            )
        )
    imports = results.get("imports")
    if imports:
        targets.append(
            _target(
                "import azml_client <= 1.3x import aiohttp",
                f"{imports['ratio']:.2f}x ({imports['azml_client_ms']:.0f} vs {imports['aiohttp_ms']:.0f} ms)",
                imports["ratio"] <= 1.3,
            )
        )
    return targets


def _machine_line(results: dict[str, Any]) -> str:
    machine = results["machine"]
    packages = machine["packages"]
    versions = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    memory = f", {machine['memory_gb']} GB RAM" if machine.get("memory_gb") else ""
    return f"{machine['cpu']}, {machine['cores']} cores{memory}, {machine['os']}, {machine['python']}; {versions}"


def _load_text(results: dict[str, Any]) -> str:
    load = results.get("load_average") or {}
    start, end = load.get("start"), load.get("end")
    if not start or not end:
        return ""
    return f"; load average {start[0]:.2f} at the start, {end[0]:.2f} at the end"


def markdown(results: dict[str, Any]) -> str:
    """The results as the markdown that goes into ``results.md`` and the README."""
    settings = results["settings"]
    lines = [
        "# azml-client benchmarks",
        "",
        f"Machine: {_machine_line(results)}.",
        f"Server: {results['server']} on loopback, fixed JSON answers. Each client in its own process; "
        f"{settings['requests']:,} requests, {settings['concurrency']} in flight, {settings['rounds']} alternating "
        f"round(s), median shown (peak RSS: max). Run {results['finished']}, took {results['duration_s']:.0f} s"
        f"{_load_text(results)}.",
        "",
        "| client | req/s | x raw aiohttp | client CPU us/req | x raw CPU | of which system | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["clients"]:
        x_raw = "" if row["x_raw_throughput"] is None else f"{row['x_raw_throughput']:.2f}x"
        x_cpu = "" if row["x_raw_cpu"] is None else f"{row['x_raw_cpu']:.2f}x"
        lines.append(
            f"| {row['label']} | {row['req_per_s']:,.0f} | {x_raw} | {row['cpu_us_per_req']:,.0f} | {x_cpu} "
            f"| {row['system_us_per_req']:,.0f} | {row['peak_rss_mb']:.1f} |"
        )
    if results.get("memory"):
        lines += ["", "Peak RSS of `LLM.abatch_as_completed` over a generator of prompts (its own process):", ""]
        lines += ["| prompts | peak RSS MB | RSS after 2,000 MB | req/s |", "|---:|---:|---:|---:|"]
        for run in results["memory"]:
            early = "" if run["rss_after_2000_mb"] is None else f"{run['rss_after_2000_mb']:.1f}"
            lines.append(f"| {run['requests']:,} | {run['peak_rss_mb']:.1f} | {early} | {run['req_per_s']:,.0f} |")
    sse = results.get("sse")
    if sse:
        lines += [
            "",
            f"SSE decoding (`SSEDecoder`, {sse['events']:,} chat-chunk events, {sse['bytes'] / 1e6:.1f} MB): "
            f"{sse['mb_per_s_64k_chunks']:.0f} MB/s fed in 64 KiB chunks; fed one event per chunk "
            f"{sse['mb_per_s_event_chunks']:.0f} MB/s, {sse['us_per_chunk']:.2f} us per chunk.",
        ]
    imports = results.get("imports")
    if imports:
        langchain = "yes" if imports["azml_client_imports_langchain"] else "no"
        lines += [
            "",
            f"Import time (fresh interpreter, cached bytecode, best of {imports['repeats']}): `import azml_client` "
            f"{imports['azml_client_ms']:.0f} ms, `import aiohttp` {imports['aiohttp_ms']:.0f} ms "
            f"({imports['ratio']:.2f}x); LangChain imported by `import azml_client`: {langchain}.",
        ]
    targets = results.get("targets") or []
    if targets:
        lines += ["", "| target | measured | holds |", "|---|---|---|"]
        for target in targets:
            holds = {True: "yes", False: "**no**", None: "n/a"}[target["holds"]]
            lines.append(f"| {target['target']} | {target['measured']} | {holds} |")
    return "\n".join(lines) + "\n"


def _chart(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    rows = sorted(results["clients"], key=lambda row: row["req_per_s"])
    labels = [row["label"] for row in rows]
    values = [row["req_per_s"] for row in rows]
    colours = ["#9e9e9e" if row["peer"] else "#f28e2b" if row["case"] == "aiohttp-raw" else "#4e79a7" for row in rows]
    figure, axes = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.6))
    bars = axes.barh(labels, values, color=colours)
    axes.bar_label(bars, labels=[f"{value:,.0f}" for value in values], padding=3, fontsize=9)
    settings = results["settings"]
    axes.set_xlabel("requests per second (higher is better)")
    axes.set_title(
        f"Throughput by client: {settings['requests']:,} requests, {settings['concurrency']} in flight, "
        f"{results['server']}\n{results['machine']['cpu']}, {results['machine']['cores']} cores",
        fontsize=10,
    )
    axes.set_xlim(0, max(values) * 1.15)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_results(results: dict[str, Any], out_dir: Path, *, chart: bool = True) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (with matplotlib) ``throughput.png``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results["targets"] = evaluate_targets(results)
    written = [out_dir / "results.json", out_dir / "results.md"]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    written[1].write_text(markdown(results))
    if chart and results["clients"] and _chart(results, out_dir / "throughput.png"):
        written.append(out_dir / "throughput.png")
    return written
