"""azml_client.spark on a real local SparkSession against the emulator (on a driver thread)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from pyspark.sql import functions as F

import azml_client as az
from azml_client import spark as azs
from tests.scaleout_support import CANARY, KEY, threaded_endpoint

RETRY = az.RetryPolicy(max_retries=6, initial_delay=0.001)
RESULTS = ["output", "finish_reason", "prompt_tokens", "completion_tokens", "error", "attempts", "request_id"]


def _prompts(spark: Any, n: int, partitions: int = 4) -> Any:
    return spark.range(n, numPartitions=partitions).select(
        F.col("id"), F.concat(F.lit("row "), F.col("id").cast("string")).alias("prompt")
    )


def test_complete_dedicated_under_capacity_and_faults_every_row_answered_in_order(spark: Any) -> None:
    n = 2000
    with threaded_endpoint(
        api_key=KEY, capacity=2, queue=0, latency=0.005, fault_rate=0.05, fault_kinds=["503", "500", "400"], seed=7
    ) as ep:
        out = azs.complete(_prompts(spark, n), ep.url, KEY, retry=RETRY)
        assert out.columns == ["id", "prompt", *RESULTS]
        rows = out.collect()
        assert ep.throttled_count > 0  # the capacity model pushed back, and the limiter absorbed it
    assert [r.id for r in rows] == list(range(n))  # one output row per input row, in order
    failed = [r for r in rows if r.error is not None]
    assert failed, "the injected 400s must reach some rows"
    assert all(r.error.startswith("BadRequestError: ") and r.output is None for r in failed)
    assert all(r.attempts >= 1 for r in failed)
    ok = [r for r in rows if r.error is None]
    assert len(ok) > n * 0.9
    assert all(r.output == f"echo: {r.prompt}" and r.request_id and r.attempts >= 1 for r in ok)
    assert all(r.prompt_tokens is None for r in ok)  # gpt2's /score answer reports no usage
    assert any(r.attempts > 1 for r in ok)  # the 5xx were retried inside the worker


def test_chat_serverless_struct_and_string_messages_with_per_row_params(spark: Any) -> None:
    n = 600
    base = spark.range(n, numPartitions=3)
    structs = base.select(
        "id",
        F.array(
            F.struct(F.lit("system").alias("role"), F.lit("be brief").alias("content")),
            F.struct(F.lit("user").alias("role"), F.concat(F.lit("q"), F.col("id").cast("string")).alias("content")),
        ).alias("messages"),
        F.when(F.col("id") % 2 == 0, F.lit(json.dumps({"max_tokens": 1}))).alias("params"),
    )
    strings = base.select("id", F.concat(F.lit("q"), F.col("id").cast("string")).alias("messages"))
    with threaded_endpoint(api_key=KEY, requests_per_minute=6000, quota_window=1.0) as ep:
        a = azs.chat(structs, ep.url, KEY, api_type="serverless", params_col="params", retry=RETRY).collect()
        b = azs.chat(strings, ep.url, KEY, api_type="serverless", retry=RETRY).collect()
        sent = ep.requests
    assert [r.id for r in a] == list(range(n))
    assert [r.id for r in b] == list(range(n))
    assert all(r.error is None for r in a + b), [r.error for r in a + b if r.error][:3]
    assert all(r.output == f"echo: q{r.id}" and r.prompt_tokens > 0 for r in b)
    assert all(r.finish_reason == "length" and r.completion_tokens == 1 for r in a if r.id % 2 == 0)
    assert all(r.output == f"echo: q{r.id}" and r.finish_reason == "stop" for r in a if r.id % 2 == 1)
    bodies = [json.loads(req.body) for req in sent[:50]]
    assert all(body["messages"][-1]["role"] == "user" for body in bodies)


def test_a_wrong_key_stops_the_job_early_with_a_clear_error(spark: Any) -> None:
    n = 4000
    with threaded_endpoint(api_key=KEY) as ep:
        out = azs.complete(_prompts(spark, n, partitions=2), ep.url, "wrong-key", retry=RETRY)
        with pytest.raises(Exception, match="SystematicFailureError") as info:
            out.collect()
        sent = ep.request_count
    assert "consecutive rows failed with AuthenticationError (HTTP 401)" in str(info.value)
    assert "wrong-key" not in str(info.value)
    assert sent < 400, sent  # stopped after ~20 rows per partition (plus what was in flight), not 4000


def test_a_task_that_dies_is_retried_and_resends_only_its_own_rows(spark: Any) -> None:
    n, partitions = 1200, 4

    def die_once(batches: Any) -> Any:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        for batch in batches:
            if ctx.partitionId() == 2 and ctx.attemptNumber() == 0:
                os._exit(1)  # the Python worker dies after its partition's rows were scored
            yield batch

    with threaded_endpoint(api_key=KEY) as ep:
        scored = azs.complete(_prompts(spark, n, partitions), ep.url, KEY, retry=RETRY)
        rows = scored.mapInArrow(die_once, scored.schema).collect()
        sent = ep.request_count
    assert sorted(r.id for r in rows) == list(range(n))
    assert all(r.error is None for r in rows)
    assert sent == n + n // partitions  # every row once, plus the dead task's own rows once more


def test_resume_sends_only_the_rows_not_yet_written(spark: Any, tmp_path: Any) -> None:
    n = 1000
    df = _prompts(spark, n)
    out_dir = str(tmp_path / "out")
    with threaded_endpoint(api_key=KEY) as ep:
        # the first run is "killed" after half the rows: only they reached the output
        azs.complete(df.where("id < 500"), ep.url, KEY).write.mode("append").parquet(out_dir)
        first = ep.request_count
        todo = azs.pending(df, spark.read.parquet(out_dir), id_col="id")
        azs.complete(todo, ep.url, KEY).write.mode("append").parquet(out_dir)
        second = ep.request_count - first
    done = spark.read.parquet(out_dir)
    assert (first, second) == (500, 500)
    assert sorted(r.id for r in done.select("id").collect()) == list(range(n))
    assert azs.pending(df, done).count() == 0


def test_a_canary_key_reaches_the_workers_but_not_the_plan_or_the_conf(spark: Any, capfd: Any) -> None:
    with threaded_endpoint(api_key=CANARY) as ep:
        out = azs.complete(_prompts(spark, 200, partitions=2), ep.url, CANARY)
        out.explain(True)
        rows = out.collect()
    assert all(r.error is None for r in rows)  # the key did reach the workers
    printed = capfd.readouterr()
    plan = out._jdf.queryExecution().toString()  # noqa: SLF001
    conf = spark.sparkContext.getConf().getAll()
    assert "== Physical Plan ==" in printed.out
    assert CANARY not in printed.out + printed.err
    assert CANARY not in plan
    assert not any(CANARY in k or CANARY in v for k, v in conf)
    assert not any(CANARY in v for v in os.environ.values())
    assert CANARY not in repr(out) + str(out.schema)


def test_a_credential_factory_is_called_on_the_workers(spark: Any) -> None:
    calls = []

    def canary_credential() -> Any:  # a credential object cannot be pickled: the factory runs on each worker
        calls.append(1)
        return lambda: CANARY  # a token callable, as CredentialLike allows

    with threaded_endpoint(api_key=CANARY) as ep:
        rows = azs.complete(_prompts(spark, 100, partitions=2), ep.url, credential=canary_credential).collect()
    assert all(r.error is None and r.output == f"echo: {r.prompt}" for r in rows)
    assert calls == []  # called on the workers, not on the driver


def test_bad_arguments_fail_on_the_driver(spark: Any) -> None:
    df = _prompts(spark, 10)
    with pytest.raises(az.ConfigurationError, match="no column 'text'"):
        azs.complete(df, "http://127.0.0.1:9", KEY, prompt_col="text")
    with pytest.raises(az.ConfigurationError, match="zero-argument factory"):
        azs.complete(df, "http://127.0.0.1:9", credential=object())  # type: ignore[arg-type]
    with pytest.raises(az.ConfigurationError, match="already has result column"):
        azs.complete(df.withColumn("error", F.lit(None)), "http://127.0.0.1:9", KEY)
