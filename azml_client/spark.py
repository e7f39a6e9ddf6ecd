"""Score a Spark DataFrame through azml-client (extra ``azml-client[spark]``).

:func:`complete` and :func:`chat` return a DataFrame with every input column plus ``output``, ``finish_reason``,
``prompt_tokens``, ``completion_tokens``, ``error`` (null when the row succeeded, else ``"ErrorType: message"``),
``attempts`` and ``request_id``, built lazily with ``mapInArrow``: one client per Python worker, reused across
partitions, each worker running the client's adaptive limiter. The key travels inside the pickled function, never
in the Spark conf, the plan or the environment. :func:`pending` keeps the rows a previous run has not answered yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from azml_client._exceptions import SystematicFailureError
from azml_client._scale import RESULT_FIELDS, ScoreConfig, check_input_columns, make_config, score_batches

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

__all__ = ["SystematicFailureError", "chat", "complete", "pending"]


def _scorer(config: ScoreConfig) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` pickles to the workers: the config (and key) lives in its closure only."""

    def azml_score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return score_batches(config, batches)

    return azml_score


def _map(df: DataFrame, config: ScoreConfig) -> DataFrame:
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    check_input_columns(df.columns, config)
    types = {"string": StringType(), "int64": LongType()}
    schema = StructType([*df.schema.fields, *(StructField(name, types[kind], True) for name, kind in RESULT_FIELDS)])
    return df.mapInArrow(_scorer(config), schema)


def complete(
    df: DataFrame,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    *,
    credential: Callable[[], Any] | None = None,
    prompt_col: str = "prompt",
    formatter: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    params_col: str | None = None,
    **client_options: Any,
) -> DataFrame:
    """Complete each row's ``prompt_col`` with an :class:`~azml_client.LLM` per worker; a lazy DataFrame.

    Args:
        df: the input; every column is kept.
        endpoint_url: the endpoint (default ``AZUREML_ENDPOINT_URL``, read on the driver).
        api_key: the key (default ``AZUREML_ENDPOINT_API_KEY``, read on the driver); shipped inside the pickled
            function, never in the conf or plan.
        credential: a zero-argument factory returning an Entra ID credential, called once on each worker.
        prompt_col: the string column to complete.
        formatter: the formatter name or object, as for :class:`~azml_client.LLM`.
        model_kwargs: model parameters for every row.
        params_col: a column of per-row model kwargs (a JSON string, a struct or a map), merged over
            ``model_kwargs``.
        **client_options: :class:`~azml_client.EndpointClient` options per worker (``api_type``, ``deployment_name``,
            ``timeout``, ``retry``, ``max_concurrency``, ``rate_limit``, ...) and ``max_batch_concurrency``.

    Raises:
        SystematicFailureError: (when the job runs) 20 consecutive rows of a partition refused the same way no
            retry fixes (the rule of every batch surface, ``FailFast``), e.g. a wrong key.
    """
    config = make_config(
        "completion", prompt_col, endpoint_url, api_key, credential, formatter, model_kwargs, params_col, client_options
    )
    return _map(df, config)


def chat(
    df: DataFrame,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    *,
    credential: Callable[[], Any] | None = None,
    messages_col: str = "messages",
    formatter: Any = "openai-chat",
    model_kwargs: Mapping[str, Any] | None = None,
    params_col: str | None = None,
    **client_options: Any,
) -> DataFrame:
    """Answer each row's conversation with a :class:`~azml_client.ChatModel` per worker; a lazy DataFrame.

    ``messages_col`` is an array of ``struct<role, content, ...>`` or a string (one user message). The other
    arguments are those of :func:`complete`; the output's ``output`` is the answer's content.
    """
    config = make_config(
        "chat", messages_col, endpoint_url, api_key, credential, formatter, model_kwargs, params_col, client_options
    )
    return _map(df, config)


def pending(df: DataFrame, done: DataFrame, id_col: str = "id") -> DataFrame:
    """The rows of ``df`` whose ``id_col`` is not in ``done`` (a left-anti join): what a resumed job still sends.

    ``done`` is what earlier runs wrote (e.g. ``spark.read.parquet(out_dir)``); to retry failed rows too, pass
    ``done.where("error IS NULL")``.
    """
    return df.join(done.select(id_col).distinct(), on=id_col, how="left_anti")
