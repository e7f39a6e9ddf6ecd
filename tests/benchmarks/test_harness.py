"""The benchmark harness still runs end to end: tiny N, no peers, no timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._main import main
from benchmarks._report import evaluate_targets, markdown


def test_harness_runs_end_to_end(tmp_path: Path) -> None:
    # The aiohttp server is what a machine without nginx gets; `make bench` exercises nginx where it is installed.
    status = main(
        [
            "-n", "50", "-c", "8", "--rounds", "1", "--warmup", "8", "--no-peers", "--memory", "60,120",
            "--server", "aiohttp", "--sse-events", "200", "--import-repeats", "1", "--no-chart", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "results.json").read_text())
    cases = {row["case"] for row in results["clients"]}
    assert cases == {
        "azml-abatch",
        "azml-chat-abatch",
        "azml-batch-sync",
        "azml-as-completed",
        "aiohttp-raw",
        "aiohttp-raw-chat",
    }
    for row in results["clients"]:
        assert all(run["ok"] == 50 for run in row["rounds"])
        assert row["req_per_s"] > 0
        assert row["cpu_us_per_req"] > 0
        assert row["peak_rss_mb"] > 0
    assert [run["requests"] for run in results["memory"]] == [60, 120]
    assert all(run["ok"] == run["requests"] for run in results["memory"])
    assert results["sse"]["events"] == 201
    assert results["imports"]["azml_client_imports_langchain"] is False
    assert {target["target"] for target in results["targets"]}  # evaluated, whatever the numbers
    table = (tmp_path / "results.md").read_text()
    assert "| azml LLM.abatch (gpt2, dedicated) |" in table


def test_report_marks_unmeasured_targets_absent() -> None:
    results = {
        "machine": {"cpu": "cpu", "cores": 2, "memory_gb": None, "os": "os", "python": "py", "packages": {}},
        "server": "test",
        "settings": {"requests": 1, "concurrency": 1, "rounds": 1},
        "clients": [],
        "memory": [],
        "sse": None,
        "imports": None,
        "finished": "now",
        "duration_s": 0.0,
    }
    assert evaluate_targets(results) == []
    assert markdown(results).startswith("# azml-client benchmarks")
