"""The scale-out harness still runs end to end: 200 rows, one endpoint, azml's Spark case; no timing assertions.

It starts a real local Spark session (``local[2]``), so `make test-pythons` leaves it out with the other engine
integrations (tests/spark, tests/ray).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from benchmarks._main import main
from benchmarks._scaleout import ENDPOINTS, SWEEP, _per_second, _plans, _window, markdown, summary


def test_scaleout_harness_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    status = main(["--scaleout", "--rows", "200", "--endpoints", "capacity-16", "--cases", "azml-spark",
                   "--no-chart", "--out", str(tmp_path)])  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "scaleout.json").read_text())
    [endpoint] = results["endpoints"]
    assert endpoint["key"] == "capacity-16"
    [row] = endpoint["rows"]
    assert row["key"] == "azml-spark"
    assert row["status"] == "finished", row["abort_error"]
    assert row["ok"] + row["lost"] == 200
    assert row["ok"] > 0
    assert row["requests_sent"] >= row["ok"]  # counted by the endpoint, from its sampled running totals
    assert row["elapsed_s"] > 0
    assert row["ideal_s"] == pytest.approx(200 * 0.05 / 16)
    assert row["workers_seen"] >= 1  # Spark's Python workers were found and their peak RSS read
    assert row["peak_worker_rss_mb"] > 0
    assert {check["target"] for check in results["targets"]} >= {"0 rows lost"}
    table = (tmp_path / "scaleout.md").read_text()
    assert "| azml Spark, local[2] | defaults | 200 | finished |" in table
    assert not (tmp_path / "scaleout.png").exists()


def test_the_one_process_reference_runs_without_an_engine(tmp_path: Path) -> None:
    status = main(["--scaleout", "--rows", "200", "--endpoints", "two-wide", "--cases", "azml-process",
                   "--no-chart", "--out", str(tmp_path)])  # fmt: skip
    assert status == 0
    results = json.loads((tmp_path / "scaleout.json").read_text())
    [endpoint] = results["endpoints"]
    [row] = endpoint["rows"]
    assert (row["key"], row["engine"], row["status"]) == ("azml-process", "process", "finished")
    assert row["ok"] == 100  # two-wide scores half the rows
    assert row["requests_sent"] >= 100
    assert row["ideal_s"] == pytest.approx(100 * 0.01 / 2)
    table = (tmp_path / "scaleout.md").read_text()
    assert "| azml, one process (no engine, one client) | defaults | 100 | finished |" in table
    assert re.match(r"\| two-wide \| \d+\.\d\dx, \d+ rows/s, 0 lost", summary(results).splitlines()[2])  # its cell


def test_plans_cover_the_issue() -> None:
    assert [endpoint.key for endpoint in ENDPOINTS] == ["capacity-16", "two-wide", "quota"]
    two_wide = ENDPOINTS[1]
    assert two_wide.workers > two_wide.server["capacity"]  # more workers than slots
    for endpoint in ENDPOINTS:
        assert 30 <= endpoint.ideal(endpoint.rows_for("azml-spark", 20000)) <= 65
    args = argparse.Namespace(rows=20000, cases=["azml-process", "azml-spark", "glue-spark", "azml-ray", "ray-llm"],
                              sweep=True, convergence=True, timeout_factor=2.0, timeout_extra=45.0)  # fmt: skip
    plans = _plans(ENDPOINTS[0], args)
    assert [plan["engine"] for plan in plans] == ["process", "spark", "spark", "ray"]
    keys = [spec["key"] for spec in plans[3]["cases"]]
    assert keys[:2] == ["azml-ray", "ray-llm-defaults"]
    assert len([key for key in keys if key.startswith("ray-llm-sweep")]) == len(SWEEP)
    assert keys[-2:] == ["ray-llm-best", "azml-ray-convergence"]
    assert all(spec["timeout"] > 45 for plan in plans for spec in plan["cases"])


def test_window_and_bins_read_the_running_totals() -> None:
    # [time, in flight, processing, requests so far, 429s so far]
    samples = [[0.0, 0, 0, 5, 1], [1.0, 3, 3, 5, 1], [1.5, 4, 4, 15, 3], [2.2, 2, 2, 25, 4], [3.0, 0, 0, 30, 4]]
    window = _window(samples, 0.5, 2.5)
    assert window["requests_sent"] == 25
    assert window["throttled"] == 3
    assert window["peak_in_flight_sampled"] == 4
    assert window["scoring_s"] == pytest.approx(1.3)
    bins = _per_second(window["series"])
    assert [b["t"] for b in bins] == [0, 1]
    assert bins[1]["sent"] == 20  # the running total at the bin's last sample, less the one before


def test_report_renders_without_runs() -> None:
    empty = {
        "machine": {"cpu": "cpu", "cores": 2, "os": "os", "python": "py"},
        "settings": {"rows": 10},
        "endpoints": [],
        "targets": [],
        "duration_s": 0.0,
        "load_average": {"start": 0.0, "end": 0.0},
        "finished": "now",
    }
    assert markdown(empty).startswith("# azml-client scale-out benchmarks")
    assert summary(empty).startswith("| endpoint |")
