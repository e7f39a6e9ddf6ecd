"""The push-back harness still runs end to end: a few prompts, one scenario, no peers, no timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._main import main
from benchmarks._pushback import SCENARIOS, markdown


def test_pushback_harness_runs_end_to_end(tmp_path: Path) -> None:
    # managed: 2,000 prompts scaled to 10; azml at defaults, max_concurrency=64 and fixed (no openai, no seed).
    status = main(["--pushback", "--scenarios", "managed", "--scale", "0.005", "--no-peers", "--no-chart",
                   "--out", str(tmp_path)])  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "pushback.json").read_text())
    [scenario] = results["scenarios"]
    assert scenario["key"] == "managed"
    rows = {row["client"]: row for row in scenario["rows"]}
    assert set(rows) == {"azml-default", "azml-64", "azml-fixed"}
    for row in rows.values():
        assert row["prompts"] == 10
        assert row["ok"] + row["lost"] == 10
        assert row["requests_sent"] >= row["ok"]
        assert row["elapsed_s"] > 0
        assert row["ideal_s"] > 0
        assert row["limit_samples"]  # the adaptive limit was sampled
    assert rows["azml-default"]["holds"] in (True, False)  # evaluated, whatever the numbers
    assert rows["azml-fixed"]["holds"] is None  # no target for it
    table = (tmp_path / "pushback.md").read_text()
    assert "| managed | azml `ChatModel.abatch`, defaults | 10 |" in table
    assert not (tmp_path / "pushback.png").exists()


def test_scenarios_cover_the_issue() -> None:
    keys = {scenario.key for scenario in SCENARIOS}
    assert {"hard-cap", "managed", "quota", "quota-stated", "two-processes"} <= keys
    assert sum(key.startswith("heavy-tailed") for key in keys) >= 2  # capacity and latency varied between runs
    empty = {
        "machine": {"cpu": "cpu", "cores": 2, "os": "os", "python": "py"},
        "scenarios": [],
        "duration_s": 0.0,
        "load_average": {"start": 0.0, "end": 0.0},
        "finished": "now",
    }
    assert markdown(empty).startswith("# azml-client push-back benchmarks")
