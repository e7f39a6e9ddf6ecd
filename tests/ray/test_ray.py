"""azml_client.ray on a real local 2-CPU Ray cluster against the emulator (on a driver thread)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray

import azml_client as az
from azml_client import ray as azr
from tests.scaleout_support import CANARY, KEY, threaded_endpoint

RETRY = az.RetryPolicy(max_retries=6, initial_delay=0.001)
RESULTS = ["output", "finish_reason", "prompt_tokens", "completion_tokens", "error", "attempts", "request_id"]


def _prompts(n: int, blocks: int = 4) -> Any:
    return ray.data.from_items([{"id": i, "prompt": f"row {i}"} for i in range(n)], override_num_blocks=blocks)


def _rows(ds: Any) -> list[dict[str, Any]]:
    return sorted(ds.take_all(), key=lambda r: r["id"])


def test_complete_dedicated_under_capacity_and_faults(ray_cluster: Any) -> None:
    n = 2000
    with threaded_endpoint(
        api_key=KEY, capacity=2, queue=0, latency=0.005, fault_rate=0.05, fault_kinds=["503", "500", "400"], seed=3
    ) as ep:
        out = azr.complete(_prompts(n), ep.url, KEY, retry=RETRY)
        rows = _rows(out)
        assert ep.throttled_count > 0
    assert list(rows[0]) == ["id", "prompt", *RESULTS]
    assert [r["id"] for r in rows] == list(range(n))  # one output row per input row
    failed = [r for r in rows if r["error"] is not None]
    assert failed
    assert all(r["error"].startswith("BadRequestError: ") and r["output"] is None for r in failed)
    ok = [r for r in rows if r["error"] is None]
    assert len(ok) > n * 0.9
    assert all(r["output"] == f"echo: {r['prompt']}" and r["request_id"] for r in ok)
    assert all(r["prompt_tokens"] is None for r in ok)  # gpt2's /score answer reports no usage
    assert any(r["attempts"] > 1 for r in ok)


def test_chat_serverless_struct_and_string_messages_with_per_row_params(ray_cluster: Any) -> None:
    n = 600
    items = [
        {
            "id": i,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"q{i}"}],
            "params": json.dumps({"max_tokens": 1}) if i % 2 == 0 else None,
        }
        for i in range(n)
    ]
    with threaded_endpoint(api_key=KEY, requests_per_minute=6000, quota_window=1.0) as ep:
        a = _rows(
            azr.chat(ray.data.from_items(items), ep.url, KEY, api_type="serverless", params_col="params", retry=RETRY)
        )
        strings = ray.data.from_items([{"id": i, "messages": f"q{i}"} for i in range(n)])
        b = _rows(azr.chat(strings, ep.url, KEY, api_type="serverless", retry=RETRY))
    assert [r["id"] for r in a] == list(range(n))
    assert all(r["error"] is None for r in a + b), [r["error"] for r in a + b if r["error"]][:3]
    assert all(r["output"] == f"echo: q{r['id']}" and r["prompt_tokens"] > 0 for r in b)
    assert all(r["finish_reason"] == "length" and r["completion_tokens"] == 1 for r in a if r["id"] % 2 == 0)
    assert all(r["output"] == f"echo: q{r['id']}" for r in a if r["id"] % 2 == 1)


def test_a_wrong_key_stops_the_dataset_early_with_a_clear_error(ray_cluster: Any) -> None:
    with threaded_endpoint(api_key=KEY) as ep:
        out = azr.complete(_prompts(3000, blocks=2), ep.url, "wrong-key", retry=RETRY)
        with pytest.raises(Exception, match="SystematicFailureError") as info:
            out.take_all()
        sent = ep.request_count
    assert "consecutive rows failed with AuthenticationError (HTTP 401)" in str(info.value)
    assert "wrong-key" not in str(info.value)
    assert sent < 400, sent


def test_a_dead_actor_is_restarted_and_resends_only_the_batches_in_flight(ray_cluster: Any, tmp_path: Path) -> None:
    n, rows_per_batch = 1200, 100
    marker = tmp_path / "died"

    class DieOnce(az.GPT2ContentFormatter):  # runs in the actor: its process dies on row 799's answer, once
        def parse_response(self, body: bytes, api_type: Any, *, status: int = 200) -> az.Completion:
            completion = super().parse_response(body, api_type, status=status)
            if completion.text == "echo: row 799" and not marker.exists():
                marker.touch()
                os._exit(1)  # the batch of rows 700-799 was scored, its result not yet returned
            return completion

    with threaded_endpoint(api_key=KEY, record_limit=None) as ep:
        out = azr.complete(
            _prompts(n, blocks=n // rows_per_batch),
            ep.url,
            KEY,
            formatter=DieOnce(),
            batch_size=rows_per_batch,
            max_batch_concurrency=1,  # one row at a time: the dead batch had sent every row when it died
            retry=RETRY,
        )
        rows = _rows(out)
        sent = Counter(request.json["inputs"]["input_string"][0] for request in ep.requests)
    assert marker.exists()  # the actor did die
    assert [r["id"] for r in rows] == list(range(n))
    assert all(r["error"] is None and r["output"] == f"echo: {r['prompt']}" for r in rows)
    resent = {int(prompt.split()[1]) for prompt, count in sent.items() if count > 1}
    batches = {i // rows_per_batch for i in resent}
    # Only the batches the dead actor had in flight are sent again: at most as many as it runs at once
    # (CALLS_PER_ACTOR tasks; a task is one block, one batch, here). The batch whose last answer killed it had
    # sent every row; another batch in flight had sent some of its rows.
    assert set(range(700, 800)) <= resent
    assert len(batches) <= azr.CALLS_PER_ACTOR
    assert set(sent.values()) == {1, 2}
    assert sum(sent.values()) == n + len(resent)


def test_resume_sends_only_the_rows_not_yet_written(ray_cluster: Any, tmp_path: Any) -> None:
    n = 1000
    ds = _prompts(n)
    out_dir = str(tmp_path / "out")
    with threaded_endpoint(api_key=KEY) as ep:
        azr.complete(ds.filter(expr="id < 500"), ep.url, KEY).write_parquet(out_dir)  # the "killed" first run
        first = ep.request_count
        todo = azr.pending(ds, ray.data.read_parquet(out_dir), id_col="id")
        azr.complete(todo, ep.url, KEY).write_parquet(out_dir)  # appends files of its own
        second = ep.request_count - first
    done = ray.data.read_parquet(out_dir)
    assert (first, second) == (500, 500)
    assert sorted(r["id"] for r in done.select_columns(["id"]).take_all()) == list(range(n))
    assert azr.pending(ds, done).count() == 0


def test_a_canary_key_reaches_the_actors_but_not_the_runtime_env_repr_or_stats(ray_cluster: Any) -> None:
    with threaded_endpoint(api_key=CANARY) as ep:
        out = azr.complete(_prompts(200, blocks=2), ep.url, CANARY)
        before = repr(out) + str(out)
        rows = out.take_all()
        stats = out.stats()
    assert all(r["error"] is None for r in rows)  # the key did reach the actors
    context = ray.get_runtime_context()
    env = json.dumps(context.runtime_env) + json.dumps(ray.get_runtime_context().get_job_id())
    assert CANARY not in before + stats + env
    # task and actor names, worker logs and event files all land in the session directory: none holds the key
    session = Path(ray._private.worker._global_node.get_session_dir_path())  # noqa: SLF001
    files = [p for p in session.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000]
    assert any(p.name.startswith("worker-") for p in files)  # the workers' logs were searched
    holding = [str(p) for p in files if CANARY.encode() in p.read_bytes()]
    assert holding == []
