"""The engine-neutral core of :mod:`azml_client.spark` and :mod:`azml_client.ray`.

It scores Arrow record batches with one :class:`~azml_client.LLM` or :class:`~azml_client.ChatModel` per worker
process: the model is built on first use from a :class:`ScoreConfig` and kept in a module-level cache keyed by the
config, so every partition or batch that a Python worker runs reuses its client (and that client's adaptive
limiter). Each batch runs on the client's own loop thread (the sync twins' runner): one asyncio loop per worker.

Every input row gives one output row: the input's columns plus :data:`RESULT_FIELDS`. A row that fails after its
retries gets ``error`` = ``"ErrorType: message"``; only a systematic failure stops the job: the rule every batch
surface shares (:class:`~azml_client._models._batch.FailFast`, one per partition or actor: 20 consecutive finished
calls refused the same way no retry fixes, a wrong key, URL or deployment) raises
:class:`~azml_client.SystematicFailureError`.

pyarrow is imported here, never by ``import azml_client``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import importlib.util
import json
import os
import pickle
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from azml_client._exceptions import APIConnectionError, ConfigurationError, SystematicFailureError
from azml_client._models._batch import DEFAULT_BATCH_CONCURRENCY, FailFast, run_as_completed
from azml_client._models._sync import runner_for, wait

if TYPE_CHECKING:
    import pyarrow as pa

    from azml_client._models._base import ModelBase

__all__ = [
    "PIPELINE_DEPTH",
    "RESULT_FIELDS",
    "ScoreConfig",
    "SystematicFailureError",
    "ascore_batch",
    "make_config",
    "result_arrow_fields",
    "score_batch",
    "score_batches",
]

#: The columns added to every input row, in order, with their Arrow / Spark types.
RESULT_FIELDS: tuple[tuple[str, str], ...] = (
    ("output", "string"),
    ("finish_reason", "string"),
    ("prompt_tokens", "int64"),
    ("completion_tokens", "int64"),
    ("error", "string"),
    ("attempts", "int64"),
    ("request_id", "string"),
)


@attrs.frozen(repr=False)
class ScoreConfig:
    """Everything a worker needs to build its model; pickled into the engine's function closure.

    Its repr never shows the key, so neither a query plan nor a log can. Build it with :func:`make_config`.
    """

    kind: Literal["completion", "chat"]
    input_col: str
    endpoint_url: str | None
    api_key: str | None
    credential: Callable[[], Any] | None
    formatter: Any
    model_kwargs: Mapping[str, Any]
    client_options: Mapping[str, Any]
    params_col: str | None
    batch_concurrency: int
    cache_key: str

    def __repr__(self) -> str:
        return f"ScoreConfig(kind={self.kind!r}, input_col={self.input_col!r}, key={self.cache_key[:12]})"

    def build_model(self) -> ModelBase[Any, Any]:
        """A new model for this config (called once per worker process)."""
        from azml_client._models import LLM, ChatModel

        options = dict(self.client_options)
        if self.credential is not None:
            options["credential"] = self.credential()
        cls: type[ModelBase[Any, Any]] = LLM if self.kind == "completion" else ChatModel
        return cls(
            self.endpoint_url,
            self.api_key,
            formatter=self.formatter,
            model_kwargs=dict(self.model_kwargs),
            max_batch_concurrency=self.batch_concurrency,
            **options,
        )


def make_config(
    kind: Literal["completion", "chat"],
    input_col: str,
    endpoint_url: str | None,
    api_key: str | None,
    credential: Callable[[], Any] | None,
    formatter: Any,
    model_kwargs: Mapping[str, Any] | None,
    params_col: str | None,
    client_options: Mapping[str, Any],
) -> ScoreConfig:
    """Check the arguments on the driver and resolve what the workers cannot see (the environment's URL and key)."""
    if credential is not None and not callable(credential):
        raise ConfigurationError(
            "credential must be a zero-argument factory called on each worker (e.g. DefaultAzureCredential), "
            f"not a {type(credential).__name__} object: credentials cannot be sent to workers"
        )
    if credential is not None and api_key is not None:
        raise ConfigurationError("pass either api_key or credential, not both")
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise ConfigurationError(f"model_kwargs must be a mapping, got {type(model_kwargs).__name__}")
    options = dict(client_options)
    concurrency = options.pop("max_batch_concurrency", None) or DEFAULT_BATCH_CONCURRENCY
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"max_batch_concurrency must be a positive int, got {concurrency!r}")
    url = endpoint_url if endpoint_url is not None else os.environ.get("AZUREML_ENDPOINT_URL")
    key = api_key
    if key is None and credential is None:
        key = os.environ.get("AZUREML_ENDPOINT_API_KEY")
    for name in ("AZUREML_ENDPOINT_API_TYPE", "AZUREML_DEPLOYMENT_NAME"):
        option = "api_type" if name.endswith("TYPE") else "deployment_name"
        if option not in options and os.environ.get(name):
            options[option] = os.environ[name]
    if url is None:
        raise ConfigurationError("no endpoint URL: pass endpoint_url= or set AZUREML_ENDPOINT_URL")
    try:
        ident = pickle.dumps((kind, url, key, formatter, sorted(dict(model_kwargs or {}).items()), options, credential))
        cache_key = hashlib.sha256(ident).hexdigest()
    except Exception:  # an unpicklable formatter or a lambda factory: one client per call of complete/chat
        cache_key = uuid.uuid4().hex
    config = ScoreConfig(
        kind=kind,
        input_col=input_col,
        endpoint_url=url,
        api_key=key,
        credential=credential,
        formatter=formatter,
        model_kwargs=dict(model_kwargs or {}),
        client_options=options,
        params_col=params_col,
        batch_concurrency=concurrency,
        cache_key=cache_key,
    )
    if credential is None:
        config.build_model().close()  # a wrong option, formatter or URL fails here, on the driver
    return config


_models: dict[str, ModelBase[Any, Any]] = {}
_models_lock = threading.Lock()


def model_for(config: ScoreConfig) -> ModelBase[Any, Any]:
    """This process's model for ``config``: built once, reused by every later batch and partition.

    A model whose client was closed is built again.
    """
    with _models_lock:
        model = _models.get(config.cache_key)
        if model is None or model.client.closed:
            model = _models[config.cache_key] = config.build_model()
            _warm_arrow()
        return model


_arrow_warmed = threading.Event()


def _warm_arrow() -> None:
    """Build pyarrow's first array from Python values in the background, once per process.

    pyarrow imports pandas (about a second) the first time it converts Python values, which a worker's first
    output batch would otherwise wait for with nothing in flight: done here, it overlaps the first batch's calls.
    """
    if _arrow_warmed.is_set():
        return
    _arrow_warmed.set()
    if "pandas" in sys.modules or importlib.util.find_spec("pandas") is None:
        return  # nothing to import: pyarrow converts at once

    def warm() -> None:
        try:
            import pyarrow as pa

            pa.array([0], pa.int64())
        except Exception:  # only a head start: the first output batch does the same and reports what fails
            return

    threading.Thread(target=warm, name="azml-arrow-warm-up", daemon=True).start()


def result_arrow_fields() -> list[pa.Field]:
    """The Arrow fields of :data:`RESULT_FIELDS`."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64()}
    return [pa.field(name, types[kind]) for name, kind in RESULT_FIELDS]


def check_input_columns(names: Iterable[str], config: ScoreConfig) -> None:
    """Refuse a frame without the input column or one that already has a result column (checked on the driver)."""
    present = set(names)
    if config.input_col not in present:
        raise ConfigurationError(f"no column {config.input_col!r} in the input (columns: {sorted(present)})")
    if config.params_col is not None and config.params_col not in present:
        raise ConfigurationError(f"no column {config.params_col!r} (params_col) in the input")
    clash = sorted(present & {name for name, _ in RESULT_FIELDS})
    if clash:
        raise ConfigurationError(f"the input already has result column(s) {clash}: rename or drop them first")


def _message(error: BaseException | None) -> str:
    return str(error).splitlines()[0] if error is not None and str(error) else ""


def error_string(error: BaseException) -> str:
    """A row's ``error``: ``"ErrorType: message"``."""
    return f"{type(error).__name__}: {_message(error)}".rstrip(": ") if _message(error) else type(error).__name__


def _row_params(value: Any) -> dict[str, Any]:
    """Per-row model kwargs from a JSON string, a struct (a dict) or a map (a list of pairs); nulls dropped."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if isinstance(value, list):
        value = dict(value)
    if not isinstance(value, dict):
        raise ValueError(f"params must be a JSON object, a struct or a map, got {type(value).__name__}")
    return {k: v for k, v in value.items() if v is not None}


def _messages(value: Any) -> Any:
    """A chat row's conversation: a string is one user message; structs arrive as dicts (nulls dropped)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in value]
    return value


def _rows_refused(error: SystematicFailureError) -> SystematicFailureError:
    """The shared rule's error, told in rows: what a data engineer reads in the engine's job failure."""
    return SystematicFailureError(
        error.kind,
        count=error.count,
        sent=error.sent,
        error=error.error,
        message=f"stopped: {error.count} consecutive rows failed with {error.kind}: {_message(error.error)}. Every "
        "row is refused the same way: check the endpoint URL, key or credential, deployment and formatter.",
    )


class _Rows:
    """One record batch being scored: its calls, and the result columns they fill in."""

    __slots__ = (
        "attempts",
        "batch",
        "completion_tokens",
        "errors",
        "finish",
        "jobs",
        "outputs",
        "prompt_tokens",
        "request_ids",
    )

    def __init__(self, config: ScoreConfig, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        self.batch = batch
        values = batch.column(config.input_col).to_pylist()
        params = batch.column(config.params_col).to_pylist() if config.params_col else [None] * n
        self.outputs: list[str | None] = [None] * n
        self.finish: list[str | None] = [None] * n
        self.prompt_tokens: list[int | None] = [None] * n
        self.completion_tokens: list[int | None] = [None] * n
        self.errors: list[str | None] = [None] * n
        self.attempts: list[int | None] = [None] * n
        self.request_ids: list[str | None] = [None] * n
        self.jobs: list[tuple[int, Any, dict[str, Any]]] = []
        for i, (value, raw) in enumerate(zip(values, params, strict=True)):
            if value is None:
                self.errors[i], self.attempts[i] = f"ValueError: {config.input_col} is null", 0
                continue
            try:
                self.jobs.append((i, value if config.kind == "completion" else _messages(value), _row_params(raw)))
            except (ValueError, TypeError) as exc:
                self.errors[i], self.attempts[i] = f"{type(exc).__name__}: {exc}", 0

    def record(self, row: int, kind: str, result: Any) -> None:
        """Fill in row ``row`` from its call's result or exception."""
        if isinstance(result, BaseException):
            self.errors[row] = error_string(result)
            self.attempts[row] = getattr(result, "attempts", None) or 1
            return
        self.outputs[row] = result.text if kind == "completion" else result.content
        self.finish[row] = result.finish_reason
        usage = result.usage
        if usage is not None:
            self.prompt_tokens[row], self.completion_tokens[row] = usage.prompt_tokens, usage.completion_tokens
        info = result.call
        if info is not None:
            self.attempts[row], self.request_ids[row] = info.attempts, info.request_id

    def output(self) -> pa.RecordBatch:
        """The input's columns plus the result columns."""
        import pyarrow as pa

        arrays = [
            pa.array(self.outputs, pa.string()),
            pa.array(self.finish, pa.string()),
            pa.array(self.prompt_tokens, pa.int64()),
            pa.array(self.completion_tokens, pa.int64()),
            pa.array(self.errors, pa.string()),
            pa.array(self.attempts, pa.int64()),
            pa.array(self.request_ids, pa.string()),
        ]
        schema = pa.schema([*self.batch.schema, *result_arrow_fields()])
        return pa.RecordBatch.from_arrays([*self.batch.columns, *arrays], schema=schema)


_gates: dict[tuple[str, int], tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}


def _gate(config: ScoreConfig) -> asyncio.Semaphore:
    """The worker's cap on calls in flight for ``config``, shared by every batch it scores at once (on its loop).

    Keyed by the model and the cap: a later job on a reused worker with another ``max_batch_concurrency`` gets
    its own.
    """
    loop = asyncio.get_running_loop()
    key = (config.cache_key, config.batch_concurrency)
    held = _gates.get(key)
    if held is None or held[0] is not loop:
        held = _gates[key] = (loop, asyncio.Semaphore(config.batch_concurrency))
    return held[1]


async def _score(config: ScoreConfig, model: ModelBase[Any, Any], rows: _Rows, guard: FailFast) -> None:
    """Run one batch's calls on the model's loop (at most ``batch_concurrency`` of the worker's calls at once)."""
    gate = _gate(config)
    jobs = rows.jobs

    async def call(job: tuple[int, Any, dict[str, Any]]) -> Any:
        _, item, kwargs = job
        async with gate:
            if guard.error is not None:  # tripped by another batch while this call waited for a slot: not sent
                raise guard.error
            if config.kind == "completion":
                return await model.acomplete(item, **kwargs)  # type: ignore[attr-defined]
            return await model.ainvoke(item, **kwargs)  # type: ignore[attr-defined]

    stream = run_as_completed(call, jobs, max_concurrency=config.batch_concurrency, fail_fast=guard)
    try:
        async for index, result in stream:
            if guard.tripped:  # stop now, not after the calls still running
                break
            rows.record(jobs[index][0], config.kind, result)
    except SystematicFailureError:  # tripped on the batch's last calls: the stream raises guard.error
        pass
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    if guard.error is not None:
        raise _rows_refused(guard.error) from guard.error.error


def score_batch(config: ScoreConfig, batch: pa.RecordBatch, guard: FailFast | None = None) -> pa.RecordBatch:
    """Score one record batch: its columns plus the result columns, one output row per input row, in order.

    ``guard`` is the partition's (or actor's) systematic-failure rule, kept across its batches; once it trips,
    :class:`~azml_client.SystematicFailureError` is raised and the calls still running are cancelled.
    """
    rows = _Rows(config, batch)
    if rows.jobs:
        model = model_for(config)
        checked = guard if guard is not None else FailFast()
        runner_for(model.client).run(lambda: _score(config, model, rows, checked))
    return rows.output()


async def ascore_batch(config: ScoreConfig, batch: pa.RecordBatch, guard: FailFast) -> pa.RecordBatch:
    """:func:`score_batch` awaited from any event loop (Ray's): the calls run on the model's own loop.

    Several batches awaited at once share the worker's client, its limiter and its ``batch_concurrency`` cap, so
    the worker never idles on one batch's slowest rows. Cancelling the await cancels the calls; a model closed under
    the batch raises :class:`~azml_client.APIConnectionError`.
    """
    rows = _Rows(config, batch)
    if rows.jobs:
        model = model_for(config)
        future = runner_for(model.client).submit(lambda: _score(config, model, rows, guard))
        running = asyncio.wrap_future(future)
        try:
            await asyncio.wait({running})
        except asyncio.CancelledError:  # this await was cancelled: so are the batch's calls
            future.cancel()
            raise
        if running.cancelled():  # the model's loop stopped under the batch (its client was closed)
            raise APIConnectionError("the model or its client was closed while this batch was in flight")
        running.result()
    return rows.output()


#: Record batches of a partition scored at once: the next one starts while the last one's slowest rows finish.
PIPELINE_DEPTH = 2


def score_batches(config: ScoreConfig, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Score a partition's record batches, yielded in order (one systematic-failure rule for the partition).

    Up to :data:`PIPELINE_DEPTH` batches are in flight at once, sharing the worker's ``batch_concurrency`` cap;
    closing the generator early (a cancelled task) cancels their calls.
    """
    guard = FailFast()
    window: collections.deque[tuple[_Rows, concurrent.futures.Future[None] | None]] = collections.deque()
    try:
        for batch in batches:
            rows = _Rows(config, batch)
            future = None
            if rows.jobs:
                model = model_for(config)
                future = runner_for(model.client).submit(functools.partial(_score, config, model, rows, guard))
            window.append((rows, future))
            while len(window) >= PIPELINE_DEPTH or (window and window[0][1] is None):
                yield _finished(window.popleft())
        while window:
            yield _finished(window.popleft())
    finally:
        for _, future in window:
            if future is not None:
                future.cancel()


def _finished(entry: tuple[_Rows, concurrent.futures.Future[None] | None]) -> pa.RecordBatch:
    rows, future = entry
    if future is not None:
        wait(future)
    return rows.output()
