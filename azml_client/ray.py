"""Score a Ray Dataset through azml-client (extra ``azml-client[ray]``).

:func:`complete` and :func:`chat` return a lazy ``ray.data.Dataset`` with every input column plus ``output``,
``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``error`` (null when the row succeeded, else
``"ErrorType: message"``), ``attempts`` and ``request_id``, built with ``map_batches`` over a pool of actors (an
async callable class, ``batch_format="pyarrow"``): one client per actor, reused across its batches, each running
the client's adaptive limiter. An actor scores several batches at once (:data:`CALLS_PER_ACTOR` tasks, each up to
4 batches), sharing one cap of ``max_batch_concurrency`` calls, so an actor never idles on a batch's slowest
rows. Actors ask ``num_cpus=0.25`` by default: they wait on the network, and an actor asking a
whole CPU starves the read stage of a small cluster.

An actor that dies (its process killed, its node lost) is restarted and the tasks it had in flight (their input
blocks) are sent again, as often as it takes (Ray Data's defaults for an actor pool: ``max_restarts=-1``,
``max_task_retries=-1``); a batch that raises is never retried. The key travels inside the pickled class, never
in the runtime environment, the task names or the dataset's repr. :func:`pending` keeps the rows a previous run
has not answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from azml_client._exceptions import SystematicFailureError
from azml_client._models._batch import FailFast
from azml_client._scale import ScoreConfig, ascore_batch, check_input_columns, make_config

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

__all__ = ["SystematicFailureError", "chat", "complete", "pending"]

#: Rows per batch handed to an actor: enough to keep its client's limiter busy between batches.
DEFAULT_BATCH_SIZE = 256
#: Actors in the pool by default: a (min, max) autoscaling range.
DEFAULT_CONCURRENCY = (1, 2)
#: Tasks an actor runs at once (each up to 4 batches, Ray Data's default for an async callable class): the next
#: task's batches start while the last one's slowest rows finish.
CALLS_PER_ACTOR = 2
#: CPUs each actor asks: a fraction, as it mostly waits on the endpoint.
DEFAULT_NUM_CPUS = 0.25


def _scorer_class(config: ScoreConfig) -> type:
    """The callable class ``map_batches`` pickles to the actors: the config (and key) lives in its closure only."""

    class AzmlScorer:
        """One actor: its model (from the process cache) and its systematic-failure rule.

        ``__call__`` is a coroutine, so Ray Data scores several of the actor's batches at once (on its own loop;
        the calls run on the model's), sharing the actor's slots: it never idles on one batch's slowest rows.
        """

        def __init__(self) -> None:
            self._guard = FailFast()

        async def __call__(self, batch: pa.Table) -> pa.Table:
            import pyarrow as pa

            parts = batch.to_batches() or [pa.RecordBatch.from_pylist([], schema=batch.schema)]
            return pa.Table.from_batches([await ascore_batch(config, part, self._guard) for part in parts])

    return AzmlScorer


def _map(
    ds: ray.data.Dataset,
    config: ScoreConfig,
    batch_size: int,
    concurrency: int | tuple[int, int],
    num_cpus: float,
) -> ray.data.Dataset:
    check_input_columns(ds.schema().names, config)
    import ray.data

    low, high = (concurrency, concurrency) if isinstance(concurrency, int) else concurrency
    return ds.map_batches(
        _scorer_class(config),
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high, max_concurrent_calls_per_actor=CALLS_PER_ACTOR),
        num_cpus=num_cpus,
        zero_copy_batch=True,
    )


def complete(
    ds: ray.data.Dataset,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    *,
    credential: Callable[[], Any] | None = None,
    prompt_col: str = "prompt",
    formatter: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    params_col: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int | tuple[int, int] = DEFAULT_CONCURRENCY,
    num_cpus: float = DEFAULT_NUM_CPUS,
    **client_options: Any,
) -> ray.data.Dataset:
    """Complete each row's ``prompt_col`` with an :class:`~azml_client.LLM` per actor; a lazy Dataset.

    Args:
        ds: the input; every column is kept.
        endpoint_url: the endpoint (default ``AZUREML_ENDPOINT_URL``, read on the driver).
        api_key: the key (default ``AZUREML_ENDPOINT_API_KEY``, read on the driver); shipped inside the pickled
            class, never in the runtime environment.
        credential: a zero-argument factory returning an Entra ID credential, called once in each actor.
        prompt_col: the string column to complete.
        formatter: the formatter name or object, as for :class:`~azml_client.LLM`.
        model_kwargs: model parameters for every row.
        params_col: a column of per-row model kwargs (a JSON string, a struct or a map).
        batch_size: rows per batch handed to an actor.
        concurrency: the actor pool: a size, or a ``(min, max)`` autoscaling range.
        num_cpus: CPUs each actor asks (keep it below 1 on small clusters).
        **client_options: :class:`~azml_client.EndpointClient` options per actor and ``max_batch_concurrency``.

    Raises:
        SystematicFailureError: (when the dataset runs) 20 consecutive rows of an actor refused the same way no
            retry fixes (the rule of every batch surface, ``FailFast``), e.g. a wrong key.
    """
    config = make_config(
        "completion", prompt_col, endpoint_url, api_key, credential, formatter, model_kwargs, params_col, client_options
    )
    return _map(ds, config, batch_size, concurrency, num_cpus)


def chat(
    ds: ray.data.Dataset,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    *,
    credential: Callable[[], Any] | None = None,
    messages_col: str = "messages",
    formatter: Any = "openai-chat",
    model_kwargs: Mapping[str, Any] | None = None,
    params_col: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int | tuple[int, int] = DEFAULT_CONCURRENCY,
    num_cpus: float = DEFAULT_NUM_CPUS,
    **client_options: Any,
) -> ray.data.Dataset:
    """Answer each row's conversation with a :class:`~azml_client.ChatModel` per actor; a lazy Dataset.

    ``messages_col`` holds a list of ``{"role", "content"}`` structs or a string (one user message); the other
    arguments are those of :func:`complete`.
    """
    config = make_config(
        "chat", messages_col, endpoint_url, api_key, credential, formatter, model_kwargs, params_col, client_options
    )
    return _map(ds, config, batch_size, concurrency, num_cpus)


def pending(ds: ray.data.Dataset, done: ray.data.Dataset, id_col: str = "id") -> ray.data.Dataset:
    """The rows of ``ds`` whose ``id_col`` is not in ``done``: what a resumed job still sends.

    The ids of ``done`` are read on the driver (one column) and shipped to the filter as an Arrow array.
    To retry failed rows too, pass ``done.filter(expr="error IS NULL")``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    tables = [t for t in ray.get(done.select_columns([id_col]).to_arrow_refs()) if t.num_rows]
    ids = pa.concat_arrays([c for t in tables for c in t.column(id_col).chunks]) if tables else pa.array([])
    ids = pc.unique(ids)

    def keep(batch: pa.Table) -> pa.Table:
        if len(ids) == 0:
            return batch
        return batch.filter(pc.invert(pc.is_in(batch.column(id_col), value_set=ids.cast(batch.column(id_col).type))))

    return ds.map_batches(keep, batch_format="pyarrow", zero_copy_batch=True)
