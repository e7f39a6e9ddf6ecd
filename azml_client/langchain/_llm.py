"""``AzureMLOnlineEndpoint``: a LangChain LLM on azml-client's async :class:`~azml_client.LLM`."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list

from azml_client import LLM, Completion, CompletionChoice, ContentFormatterBase, Usage
from azml_client._models._batch import DEFAULT_BATCH_CONCURRENCY
from azml_client.langchain._messages import usage_metadata
from azml_client.langchain._settings import EndpointSettings

__all__ = ["AzureMLOnlineEndpoint"]

#: The ``max_concurrency`` of the batch call running now: LangChain would cut the batch into rounds of that
#: size; the adapter keeps that many requests in flight over the whole batch instead.
_BATCH_LIMIT: Final[contextvars.ContextVar[int | None]] = contextvars.ContextVar("azml_batch_limit", default=None)


@contextlib.contextmanager
def _batch_window(config: RunnableConfig | list[RunnableConfig] | None, count: int) -> Iterator[list[RunnableConfig]]:
    """Take ``max_concurrency`` out of the configs (no rounds) and make it this batch's in-flight cap."""
    configs = get_config_list(config, count)
    limit = configs[0].get("max_concurrency") if configs else None
    if limit is not None:
        configs = [{**each, "max_concurrency": None} for each in configs]
    token = _BATCH_LIMIT.set(limit)
    try:
        yield configs
    finally:
        _BATCH_LIMIT.reset(token)


def per_input_configs(
    config: RunnableConfig | list[RunnableConfig] | None, count: int, default: int | None
) -> list[RunnableConfig]:
    """The configs of a batch run one input at a time (each its own result or exception), with a width.

    The width is the config's ``max_concurrency``, else the model's, else the core default
    (:data:`~azml_client._models._batch.DEFAULT_BATCH_CONCURRENCY`, 32): the same bound for ``batch`` and
    ``abatch`` of both adapters as for the core models' ``abatch``. The client's adaptive limit may keep fewer
    in flight (it starts at 8 and grows on healthy answers).
    """
    configs = get_config_list(config, count)
    limit = configs[0].get("max_concurrency") if configs else None
    width = limit or default or DEFAULT_BATCH_CONCURRENCY
    return [{**each, "max_concurrency": width} for each in configs]


class AzureMLOnlineEndpoint(BaseLLM, EndpointSettings):
    """A completion model behind an Azure ML online endpoint: a drop-in for the seed's class of the same name.

    It takes the seed's fields and env vars (see :class:`EndpointSettings`) and runs on azml-client: real
    async calls, concurrent batches, retries, streaming from serverless endpoints, a full :meth:`save`, and
    typed errors (:class:`azml_client.APIStatusError` and friends).

    Example::

        from azml_client.langchain import AzureMLEndpointApiType, AzureMLOnlineEndpoint, CustomOpenAIContentFormatter

        llm = AzureMLOnlineEndpoint(
            endpoint_url="https://<endpoint>.<region>.inference.ml.azure.com/score",
            endpoint_api_type=AzureMLEndpointApiType.dedicated,
            endpoint_api_key="my-api-key",
            content_formatter=CustomOpenAIContentFormatter(),
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        )
        llm.invoke("Write me a song about sparkling water:", temperature=0.5)
    """

    _kind: ClassVar[Literal["completion", "chat"]] = "completion"

    # ------------------------------------------------------------------ identity

    @property
    def _llm_type(self) -> str:
        """The seed's type name, also written by :meth:`save`."""
        return "azureml_endpoint"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The full configuration, without the key."""
        return self._config()

    def _llm_type_name(self) -> str:
        return self._llm_type

    def save(self, file_path: str | Path) -> None:
        """Write the full configuration (never the key) to a ``.json`` or ``.yaml`` file; see :func:`load_llm`.

        Raises:
            azml_client.ConfigurationError: another file suffix, an unregistered formatter, or model_kwargs
                that are not JSON values.
        """
        EndpointSettings.save(self, file_path)

    def _build_core(self, formatter: ContentFormatterBase, options: dict[str, Any]) -> LLM:
        return LLM(formatter=formatter, **options)

    def _llm_core(self) -> LLM:
        core = self._core()
        assert isinstance(core, LLM)
        return core

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Standard tracing parameters (provider ``azureml``; a call's ``model`` names the model)."""
        return self._ls_params("llm", stop, kwargs)

    # ------------------------------------------------------------------ batches

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Complete every input; ``max_concurrency`` in the config caps requests in flight over the whole batch.

        The default cap is the model's ``max_concurrency``, else 32 (as the core ``abatch``). With
        ``return_exceptions=True`` each input is its own call, so a failing prompt gets its exception and the
        others their answers.
        """
        if return_exceptions and inputs:
            configs = per_input_configs(config, len(inputs), self.max_concurrency)
            return Runnable.batch(self, inputs, configs, return_exceptions=True, **kwargs)
        with _batch_window(config, len(inputs)) as configs:
            return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Complete every input concurrently; ``max_concurrency`` caps requests in flight (a sliding window).

        The default cap is the model's ``max_concurrency``, else 32 (as the core ``abatch``). With
        ``return_exceptions=True`` each input is its own call, so a failing prompt gets its exception and the
        others their answers.
        """
        if return_exceptions and inputs:
            configs = per_input_configs(config, len(inputs), self.max_concurrency)
            return await Runnable.abatch(self, inputs, configs, return_exceptions=True, **kwargs)
        with _batch_window(config, len(inputs)) as configs:
            return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    # ------------------------------------------------------------------ calls

    def _limit(self) -> int | None:
        return _BATCH_LIMIT.get() or self.max_concurrency

    def _result(self, outcomes: Sequence[Completion]) -> LLMResult:
        generations: list[list[Generation]] = []
        prompt_tokens = completion_tokens = total_tokens = 0
        counted = False
        model: str | None = None
        deployment: str | None = None
        for completion in outcomes:
            choices = completion.choices or (CompletionChoice(completion.text, completion.finish_reason),)
            generations.append(
                [
                    Generation(
                        text=choice.text,
                        generation_info={"finish_reason": choice.finish_reason, "logprobs": choice.logprobs},
                    )
                    for choice in choices
                ]
            )
            usage = usage_metadata(completion.usage)
            if usage is not None:
                counted = True
                prompt_tokens += usage["input_tokens"]
                completion_tokens += usage["output_tokens"]
                total_tokens += usage["total_tokens"]
            raw_model = completion.raw.get("model") if isinstance(completion.raw, dict) else None
            model = model or (raw_model if isinstance(raw_model, str) else None)
            deployment = deployment or (completion.call.deployment if completion.call is not None else None)
        deployment = deployment or self.deployment_name or None
        llm_output: dict[str, Any] = {}
        if counted:
            llm_output["token_usage"] = Usage(prompt_tokens, completion_tokens, total_tokens).to_dict()
        if model or deployment:
            llm_output["model_name"] = model or deployment
        if deployment:
            llm_output["deployment"] = deployment
        return LLMResult(generations=generations, llm_output=llm_output)

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Complete the prompts concurrently on the core model's own event-loop thread."""
        call = self._prepare(stop, kwargs)
        outcomes = self._llm_core().complete_batch(
            prompts, max_concurrency=self._limit(), timeout=call.timeout, **call.body
        )
        return self._result([outcome for outcome in outcomes if not isinstance(outcome, Exception)])

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """Complete the prompts concurrently on the caller's event loop."""
        call = self._prepare(stop, kwargs)
        outcomes = await self._llm_core().acomplete_batch(
            prompts, max_concurrency=self._limit(), timeout=call.timeout, **call.body
        )
        return self._result(outcomes)

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        """Stream through the core model's sync twin (a dedicated endpoint answers in one piece)."""
        core = self._llm_core()
        call = self._prepare(stop, kwargs)
        stops = call.body.pop("stop", None)
        for piece in core.stream(prompt, stop=stops, timeout=call.timeout, **call.body):
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        """Stream on the caller's event loop (a dedicated endpoint answers in one piece)."""
        core = self._llm_core()
        call = self._prepare(stop, kwargs)
        stops = call.body.pop("stop", None)
        async for piece in core.astream(prompt, stop=stops, timeout=call.timeout, **call.body):
            chunk = GenerationChunk(text=piece)
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
