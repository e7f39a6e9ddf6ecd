"""Type-checked, never run: the public API's types as a user's code sees them (mypy --strict in `make test`)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable, Iterator

import ray.data
from pyspark.sql import DataFrame

import azml_client as az
from azml_client import ray as azr
from azml_client import spark as azs

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # typing_extensions' stubs ship with mypy
    from typing_extensions import assert_type


async def async_surface(llm: az.LLM, chat: az.ChatModel, client: az.EndpointClient) -> None:
    text: str = await llm.ainvoke("prompt", stop=["\n"], temperature=0.2)
    completion: az.Completion = await llm.acomplete("prompt", timeout=30)
    usage: az.Usage | None = completion.usage
    results: list[str | Exception] = await llm.abatch(["a", "b"], max_concurrency=8, return_exceptions=True)
    strict_results: list[str] = await llm.abatch(["a", "b"])
    chat_results: list[az.ChatResult] = await chat.abatch(["a"])
    pairs: AsyncIterator[tuple[int, object]] = llm.abatch_as_completed(iter(["a"]))
    pieces: AsyncIterator[str] = llm.astream("prompt")
    answer: az.ChatResult = await chat.ainvoke([("system", "Be brief."), ("user", "Hi")], max_tokens=5)
    calls: tuple[az.ToolCall, ...] = answer.tool_calls
    content: str = answer.content
    chunks: AsyncIterator[az.ChatChunk] = chat.astream(az.Message("user", "Hi"))
    response: az.Response = await client.post({"inputs": {"input_string": ["x"]}})
    status: int = response.status
    attempts: int = response.attempts
    del text, usage, results, strict_results, chat_results, pairs, pieces, calls, content, chunks, status, attempts


def sync_surface(llm: az.LLM, chat: az.ChatModel) -> None:
    text: str = llm.invoke("prompt")
    completion: az.Completion = llm.complete("prompt")
    texts: list[str] = llm.batch(["a"])
    maybe: list[str | Exception] = llm.batch(["a"], return_exceptions=True)
    assert_type(llm.batch(["a"], stop_on_systematic_failure=True, deadline=30.0), list[str])
    assert_type(chat.batch(["Hi"], return_exceptions=True, deadline=30), list[az.ChatResult | Exception])
    assert_type(llm.batch_as_completed(["a"], stop_on_systematic_failure=True), Iterable[tuple[int, str | Exception]])
    answers: list[az.ChatResult] = chat.batch(["Hi"])
    full: list[az.Completion | Exception] = llm.complete_batch(["a"])
    pieces: Iterator[str] = llm.stream("prompt")
    answer: az.ChatResult = chat.invoke("Hi")
    chunks: Iterator[az.ChatChunk] = chat.stream("Hi")
    model: az.LLM | az.ChatModel = az.load("model.json", api_key="k")
    policy: az.RetryPolicy = az.RetryPolicy(max_retries=5).none()
    timeout: az.Timeout = az.Timeout(total=60, connect=5, read=30)
    names: list[str] = az.list_formatters()
    formatter: az.ContentFormatterBase = az.get_formatter("gpt2", legacy_escaping=True)
    del text, completion, texts, maybe, answers, full, pieces, answer, chunks, model, policy, timeout, names, formatter


def precise_enough_to_fail(llm: az.LLM, chat: az.ChatModel) -> None:
    # Each line must be a type error: with --strict an unused "type: ignore" fails the check, so the day one of
    # these types loosens to Any this file says so.
    wrong_texts: list[int] = llm.batch(["a"])  # type: ignore[assignment]
    wrong_answers: list[str] = chat.batch(["Hi"])  # type: ignore[assignment]
    wrong_call: int = llm.complete("a").call  # type: ignore[assignment]
    del wrong_texts, wrong_answers, wrong_call


def call_info_and_events(completion: az.Completion, answer: az.ChatResult, client: az.EndpointClient) -> None:
    call: az.CallInfo | None = completion.call or answer.call
    if call is not None:
        status: int = call.status
        attempts: int = call.attempts
        request_id: str | None = call.request_id
        del status, attempts, request_id
    stats: az.ClientStats = client.stats()
    in_flight: int = stats.in_flight

    def hook(event: az.Attempt) -> None:
        kind: str = event.kind
        delay: float | None = event.delay
        del kind, delay

    az.EndpointClient("https://x/score", "k", on_attempt=hook)
    del call, in_flight


def errors(exc: az.AzureMLError) -> None:
    if isinstance(exc, az.RateLimitError):
        wait: float | None = exc.retry_after
        code: int = exc.status_code
        body: bytes = exc.body
        request_id: str | None = exc.request_id
        del wait, code, body, request_id


def scale_out(df: DataFrame, ds: ray.data.Dataset) -> None:
    # assert_type fails on Any too: the day one of these returns loosens, this file says so.
    url, key = "https://x/score", "k"
    assert_type(azs.complete(df, url, key, prompt_col="prompt", model_kwargs={"max_tokens": 8}), DataFrame)
    assert_type(azs.chat(df, url, key, messages_col="messages", api_type="serverless"), DataFrame)
    assert_type(azs.pending(df, df, id_col="id"), DataFrame)
    assert_type(azr.complete(ds, url, key, batch_size=64, concurrency=(1, 4), num_cpus=0.5), ray.data.Dataset)
    assert_type(azr.chat(ds, url, credential=lambda: None, params_col="params"), ray.data.Dataset)
    assert_type(azr.pending(ds, ds, id_col="id"), ray.data.Dataset)
    stopped: type[az.SystematicFailureError] = azs.SystematicFailureError
    assert azr.SystematicFailureError is stopped
