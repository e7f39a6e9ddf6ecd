"""One case of the scale-out benchmarks, in a process of its own: start the engine, score the rows, one JSON line.

``python -m benchmarks._scaleout_run '{"case": "azml-spark", "url": ..., "rows": 20000, ...}'`` starts a local
Spark session (``local[W]``) or a local Ray cluster (``ray.init(num_cpus=2)``), scores ``rows`` prompts against
the emulator at ``url`` with the case's client, and prints what it measured: the scoring job's wall time (the
engine's start-up is timed apart), the rows with an answer, with an error and without any output row (a job that
aborted or timed out), the abort's error, and the peak resident memory (``VmHWM``) of every engine worker process
(Spark's Python workers, Ray's actor processes), sampled from ``/proc`` while the job runs.

The job runs on a thread; after ``timeout`` seconds the case is reported as timed out with the rows counted so
far, and the process leaves at once (the driver of the benchmarks then kills its process group, engine included).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._scaleout_server import API_KEY

__all__ = ["CASES", "best_of", "engine_of", "main"]

#: Case name -> what it runs, for the tables.
CASES: dict[str, str] = {
    "azml-process": "azml `LLM.batch_as_completed` in one plain process (one client: the reference)",
    "azml-spark": "azml `azml_client.spark.complete`",
    "azml-ray": "azml `azml_client.ray.complete`",
    "ray-llm": "`ray.data.llm` `HttpRequestProcessorConfig`",
    "glue-spark": "hand-written `mapInPandas` + aiohttp",
}
_MAX_TOKENS = 16
_SAMPLE_EVERY = 0.25


def _prompt(index: int) -> str:
    return f"Row {index}: write one sentence about the sea."


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class _MemorySampler:
    """Peak RSS of the engine's worker processes: every descendant of this process, classified by command line."""

    def __init__(self, engine: str) -> None:
        import psutil

        self._psutil = psutil
        self._engine = engine
        self._peaks: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _role(self, process: Any) -> str | None:
        try:
            command = " ".join(process.cmdline())
            parent = process.parent()
            parent_command = " ".join(parent.cmdline()) if parent is not None else ""
        except (self._psutil.Error, OSError):
            return None
        if self._engine == "spark":
            if "pyspark.daemon" in command:
                # The daemon forks one Python worker per running task; the daemon itself only forks.
                return "spark python worker" if "pyspark.daemon" in parent_command else None
            return "spark JVM" if command.startswith("java") or "/java " in command else None
        if command.startswith("ray::"):
            title = command.split()[0]
            if title == "ray::IDLE":
                return None
            # The map stage's actors (the scorers); Ray's own actors (stats, autoscaling) are kept apart.
            return f"ray worker {title}" if "MapWorker" in title else f"ray {title}"
        return None

    def sample(self) -> None:
        try:
            processes = self._psutil.Process(os.getpid()).children(recursive=True)
        except self._psutil.Error:
            return
        for process in processes:
            role = self._role(process)
            if role is None:
                continue
            peak = _vm_hwm_mb(process.pid)
            if peak is None:
                continue
            known = self._peaks.setdefault(process.pid, {"role": role, "peak_rss_mb": 0.0})
            known["peak_rss_mb"] = max(known["peak_rss_mb"], round(peak, 1))
            if known["role"] != role and "worker" in role:
                known["role"] = role

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(_SAMPLE_EVERY)

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def report(self) -> dict[str, Any]:
        """Per worker process: its role and peak RSS; and the largest of the workers'."""
        workers = [p for p in self._peaks.values() if "worker" in p["role"]]
        return {
            "worker_processes": sorted(self._peaks.values(), key=lambda p: (p["role"], -p["peak_rss_mb"])),
            "workers_seen": len(workers),
            "peak_worker_rss_mb": max((p["peak_rss_mb"] for p in workers), default=None),
            "driver_peak_rss_mb": _vm_hwm_mb(os.getpid()),
        }


class _Counts:
    """Rows answered / errored as they come out of the job (read by the timeout path too)."""

    def __init__(self) -> None:
        self.ok = 0
        self.errored = 0
        self.first_error: str | None = None

    def add(self, ok: int, errored: int, first_error: str | None) -> None:
        self.ok += ok
        self.errored += errored
        if self.first_error is None and first_error:
            self.first_error = first_error[:300]


# --- Spark ------------------------------------------------------------------------------------------------------


def _spark_session(workers: int) -> Any:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return (
        SparkSession.builder.master(f"local[{workers}]")
        .appName("azml-scaleout-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )


def _spark_warm(spark: Any) -> None:
    """One job in the JVM alone (no Python worker): its first job's class loading and code generation (3-5 s on this
    machine) are the engine's start-up, not the first case's. Python workers still start in each case's time."""
    from pyspark.sql import functions as F

    spark.range(1000, numPartitions=2).selectExpr("id", "concat('Row ', id) AS prompt").agg(F.count("*")).collect()


def _spark_input(spark: Any, rows: int, partitions: int) -> Any:
    return spark.range(rows, numPartitions=partitions).selectExpr(
        "id", "concat('Row ', id, ': write one sentence about the sea.') AS prompt"
    )


def _spark_count(out: Any, counts: _Counts) -> None:
    from pyspark.sql import functions as F

    ok = F.col("error").isNull() & F.col("output").isNotNull()
    [row] = out.agg(
        F.count_if(ok).alias("ok"),
        F.count_if(~ok).alias("errored"),
        F.first(F.col("error"), ignorenulls=True).alias("first_error"),
    ).collect()
    counts.add(row["ok"], row["errored"], row["first_error"])


def _azml_spark(spec: dict[str, Any], counts: _Counts, engine: dict[str, Any]) -> None:
    from azml_client import spark as azs

    spark = engine["spark"]
    df = _spark_input(spark, spec["rows"], spec["partitions"])
    out = azs.complete(df, spec["url"], API_KEY, api_type="serverless", model_kwargs={"max_tokens": _MAX_TOKENS})
    engine["started"] = time.perf_counter()
    _spark_count(out, counts)


def _glue_spark(spec: dict[str, Any], counts: _Counts, engine: dict[str, Any]) -> None:
    from benchmarks._scaleout_glue import OUTPUT_SCHEMA, score_partitions

    spark = engine["spark"]
    df = _spark_input(spark, spec["rows"], spec["partitions"])
    out = df.mapInPandas(score_partitions(f"{spec['url']}/v1/completions", API_KEY), OUTPUT_SCHEMA)
    engine["started"] = time.perf_counter()
    _spark_count(out, counts)


# --- Ray --------------------------------------------------------------------------------------------------------


def _ray_start() -> Any:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ray


def _ray_input(rows: int, partitions: int) -> Any:
    import ray

    items = [{"id": index, "prompt": _prompt(index)} for index in range(rows)]
    return ray.data.from_items(items, override_num_blocks=partitions)


def _ray_count(out: Any, counts: _Counts, output: str = "output") -> None:
    import pyarrow.compute as pc

    for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
        good = pc.is_valid(batch.column(output))
        if "error" in batch.column_names:
            good = pc.and_(good, pc.is_null(batch.column("error")))
            errors = [e for e in batch.column("error").to_pylist() if e]
        else:
            errors = []
        ok = pc.sum(good.cast("int64")).as_py() or 0
        counts.add(ok, batch.num_rows - ok, errors[0] if errors else None)


def _azml_ray(spec: dict[str, Any], counts: _Counts, engine: dict[str, Any]) -> None:
    from azml_client import ray as azr

    ds = _ray_input(spec["rows"], spec["partitions"])
    options = dict(spec.get("settings") or {})
    if "concurrency" in options and isinstance(options["concurrency"], list):
        options["concurrency"] = tuple(options["concurrency"])
    out = azr.complete(
        ds, spec["url"], API_KEY, api_type="serverless", model_kwargs={"max_tokens": _MAX_TOKENS}, **options
    )
    engine["started"] = time.perf_counter()
    _ray_count(out, counts)


def _ray_llm_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {"payload": {"model": "bench-model", "prompt": row["prompt"], "max_tokens": _MAX_TOKENS}}


def _ray_llm_output(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "output": row["http_response"]["choices"][0]["text"]}


def _ray_llm(spec: dict[str, Any], counts: _Counts, engine: dict[str, Any]) -> None:
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    settings = dict(spec.get("settings") or {})
    if isinstance(settings.get("concurrency"), list):
        settings["concurrency"] = tuple(settings["concurrency"])
    config = HttpRequestProcessorConfig(
        url=f"{spec['url']}/v1/completions", headers={"Authorization": f"Bearer {API_KEY}"}, **settings
    )
    processor = build_processor(config, preprocess=_ray_llm_payload, postprocess=_ray_llm_output)
    out = processor(_ray_input(spec["rows"], spec["partitions"]))
    engine["started"] = time.perf_counter()
    _ray_count(out, counts)


# --- one plain process -------------------------------------------------------------------------------------------


def _azml_process(spec: dict[str, Any], counts: _Counts, engine: dict[str, Any]) -> None:
    """Every row through one client in this process: what one limiter that sees all the traffic achieves."""
    import azml_client as az

    prompts = [_prompt(index) for index in range(spec["rows"])]
    with az.LLM(spec["url"], API_KEY, api_type="serverless", model_kwargs={"max_tokens": _MAX_TOKENS}) as llm:
        engine["started"] = time.perf_counter()
        for _, result in llm.batch_as_completed(prompts):
            if isinstance(result, BaseException):
                counts.add(0, 1, f"{type(result).__name__}: {result}")
            else:
                counts.add(1, 0, None)


_RUNNERS: dict[str, tuple[str, Callable[[dict[str, Any], _Counts, dict[str, Any]], None]]] = {
    "azml-process": ("process", _azml_process),
    "azml-spark": ("spark", _azml_spark),
    "glue-spark": ("spark", _glue_spark),
    "azml-ray": ("ray", _azml_ray),
    "ray-llm": ("ray", _ray_llm),
}


def engine_of(case: str) -> str:
    """The engine case ``case`` runs on: ``"spark"``, ``"ray"`` or ``"process"`` (none)."""
    return _RUNNERS[case][0]


def _abort_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for marker in ("RuntimeError: Reached maximum retries", "SystematicFailureError", "TimeoutError"):
        at = text.find(marker)
        if at >= 0:
            return text[at : at + 300].splitlines()[0]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def run_case(spec: dict[str, Any], kind: str, engine: dict[str, Any]) -> dict[str, Any]:
    """Run one case on the running engine and return its measurements (a failed job is a result, not an error)."""
    runner = _RUNNERS[spec["case"]][1]
    counts = _Counts()
    failure: list[BaseException] = []
    with _MemorySampler(kind) as memory:

        def job() -> None:
            try:
                runner(spec, counts, engine)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=job, daemon=True)
        start_wall = time.time()
        engine["started"] = time.perf_counter()
        thread.start()
        thread.join(spec["timeout"])
        elapsed = time.perf_counter() - engine["started"]
        end_wall = time.time()
    rows = spec["rows"]
    return {
        "key": spec.get("key", spec["case"]),
        "case": spec["case"],
        "engine": kind,
        "rows": rows,
        "workers": spec["workers"],
        "partitions": spec["partitions"],
        "settings": spec.get("settings") or {},
        "best_key": spec.get("best_key"),
        "start_wall": start_wall,
        "end_wall": end_wall,
        "elapsed_s": elapsed,
        "ok": counts.ok,
        "errored": counts.errored,
        "missing": rows - counts.ok - counts.errored,
        "first_error": counts.first_error,
        "aborted": bool(failure),
        "abort_error": _abort_text(failure[0]) if failure else None,
        "timed_out": thread.is_alive(),
        **memory.report(),
    }


def best_of(spec: dict[str, Any], done: list[dict[str, Any]]) -> dict[str, Any]:
    """``spec`` with the settings of the fastest earlier case of its ``best_of`` prefix that lost no row."""
    tried = [r for r in done if r["key"].startswith(spec["best_of"])]
    if not tried:
        return {**spec, "settings": {}, "workers": 1}
    complete = [r for r in tried if r["ok"] == r["rows"]] or tried
    best = max(complete, key=lambda r: r["ok"] / r["elapsed_s"] if r["elapsed_s"] > 0 else 0.0)
    settings = best["settings"]
    return {**spec, "settings": settings, "workers": settings.get("concurrency", 1), "best_key": best["key"]}


def run(plan: dict[str, Any]) -> None:
    """Start the plan's engine, run its cases one after the other, print one JSON line per case.

    A case that times out ends the plan: its job may still hold the engine, so the later cases are not run.
    """
    kind = plan["engine"]
    begun = time.perf_counter()
    engine: dict[str, Any] = {}
    if kind == "spark":
        engine["spark"] = _spark_session(plan["workers"])
        _spark_warm(engine["spark"])
    elif kind == "ray":
        _ray_start()
    startup = time.perf_counter() - begun
    done: list[dict[str, Any]] = []
    for spec in plan["cases"]:
        if spec.get("best_of"):
            spec = best_of(spec, done)
        result = run_case(spec, kind, engine)
        done.append(result)
        result["startup_s"] = startup
        print(json.dumps(result), flush=True)
        if result["timed_out"]:
            return
        gap = plan.get("gap_s", 0.0)
        if gap:
            time.sleep(gap)  # an idle moment at the endpoint between two cases: their windows never overlap
    _shutdown(kind, engine)


def _shutdown(kind: str, engine: dict[str, Any]) -> None:
    if kind == "process":
        return
    try:
        if kind == "spark":
            engine["spark"].stop()
        else:
            import ray

            ray.shutdown()
    except Exception as exc:  # the numbers are taken: a failed shutdown only leaves processes to kill
        print(f"engine shutdown failed: {exc!r}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run the plan given as a JSON argument (an engine and its cases) and leave without waiting for the engine."""
    args = sys.argv[1:] if argv is None else argv
    run(json.loads(args[0]))
    sys.stderr.flush()
    os._exit(0)  # a timed-out job's thread is still running, and shutting an engine down can hang


if __name__ == "__main__":
    main()
