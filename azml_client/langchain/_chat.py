"""``AzureMLChatOnlineEndpoint``: a LangChain chat model on azml-client's async :class:`~azml_client.ChatModel`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel

from azml_client._config import ApiType
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import ContentFormatterBase
from azml_client._models import ChatModel
from azml_client._types import ChatChunk
from azml_client.langchain._formatters import lc_chat_formatter
from azml_client.langchain._llm import per_input_configs
from azml_client.langchain._messages import chat_result, stream_chunk, to_core_messages
from azml_client.langchain._settings import EndpointSettings, PreparedCall

__all__ = ["AzureMLChatOnlineEndpoint"]

#: How :meth:`AzureMLChatOnlineEndpoint.with_structured_output` asks for a shape: a forced tool or a response_format.
StructuredOutputMethod = Literal["function_calling", "json_mode", "json_schema"]


def _tool_choice(choice: str | bool | dict[str, Any], tools: Sequence[Mapping[str, Any]]) -> str | dict[str, Any]:
    """LangChain's ``tool_choice`` spellings in the OpenAI form: ``"any"`` / True force some tool, a name one."""
    if isinstance(choice, dict):
        return choice
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return str(choice)
    names = [tool["function"]["name"] for tool in tools]
    if isinstance(choice, str) and choice in names:
        return {"type": "function", "function": {"name": choice}}
    raise ConfigurationError(
        f"tool_choice {choice!r} is neither 'auto', 'none', 'any', 'required' nor the name of a bound tool "
        f"({', '.join(names) or 'none bound'})"
    )


class AzureMLChatOnlineEndpoint(BaseChatModel, EndpointSettings):
    """A chat model behind an Azure ML online endpoint: a drop-in for the seed's class of the same name.

    It takes the seed's fields and env vars (see :class:`EndpointSettings`) and runs on azml-client: real
    async calls, retries, concurrency, SSE streaming with usage, tool calling and structured output on
    serverless endpoints, and typed errors (:class:`azml_client.APIStatusError` and friends).

    Example::

        from azml_client.langchain import AzureMLChatOnlineEndpoint, AzureMLEndpointApiType

        chat = AzureMLChatOnlineEndpoint(
            endpoint_url="https://<endpoint>.<region>.models.ai.azure.com/v1/chat/completions",
            endpoint_api_type=AzureMLEndpointApiType.serverless,
            endpoint_api_key="my-api-key",
            model_kwargs={"temperature": 0.8},
        )
        chat.invoke("Will the Collatz conjecture ever be solved?", max_tokens=512)
    """

    _kind: ClassVar[Literal["completion", "chat"]] = "chat"

    streaming: bool = False
    """Whether ``invoke`` streams the answer under the hood (callbacks then see each token)."""

    stream_usage: bool = False
    """Ask a serverless stream for token usage (``stream_options={"include_usage": True}``); off by default
    because some endpoints reject ``stream_options``."""

    # ------------------------------------------------------------------ identity

    @property
    def _llm_type(self) -> str:
        """The seed's type name, also written by :meth:`save`."""
        return "azureml_chat_endpoint"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """The full configuration, without the key."""
        return self._config()

    def _llm_type_name(self) -> str:
        return self._llm_type

    def _config(self, *, strict: bool = False) -> dict[str, Any]:
        config = super()._config(strict=strict)
        config["streaming"] = self.streaming
        config["stream_usage"] = self.stream_usage
        return config

    def _core_formatter(self) -> ContentFormatterBase:
        """The formatter, or a chat formatter written for the seed wrapped to get LangChain messages."""
        formatter = self._formatter()
        slot = self._own_slot()
        cached = slot.adapted
        if cached is not None and cached[0] is formatter:
            return cached[1]
        adapted = lc_chat_formatter(formatter)
        slot.adapted = (formatter, adapted)
        return adapted

    def _build_core(self, formatter: ContentFormatterBase, options: dict[str, Any]) -> ChatModel:
        return ChatModel(formatter=formatter, **options)

    def _chat_core(self) -> ChatModel:
        core = self._core()
        assert isinstance(core, ChatModel)
        return core

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Standard tracing parameters (provider ``azureml``; a call's ``model`` names the model)."""
        return self._ls_params("chat", stop, kwargs)

    # ------------------------------------------------------------------ batches

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Answer every input, at most ``max_concurrency`` (the config's, else the model's, else 32) at once."""
        if not inputs:
            return []
        configs = per_input_configs(config, len(inputs), self.max_concurrency)
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Answer every input concurrently, at most ``max_concurrency`` (config's, model's, else 32) at once."""
        if not inputs:
            return []
        configs = per_input_configs(config, len(inputs), self.max_concurrency)
        return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    # ------------------------------------------------------------------ calls

    def _prepare_chat(self, stop: list[str] | None, kwargs: Mapping[str, Any], *, stream: bool) -> PreparedCall:
        call_kwargs = dict(kwargs)
        stream_usage = call_kwargs.pop("stream_usage", None)
        call = self._prepare(stop, call_kwargs)
        wants_usage = self.stream_usage if stream_usage is None else bool(stream_usage)
        if (
            stream
            and wants_usage
            and self.endpoint_api_type.api_type is ApiType.serverless
            and "stream_options" not in call.body
        ):
            call.body["stream_options"] = {"include_usage": True}
        return call

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Send the conversation through the core model's own event-loop thread and wait for the answer."""
        call = self._prepare_chat(stop, kwargs, stream=False)
        result = self._chat_core().invoke(to_core_messages(messages), timeout=call.timeout, **call.body)
        return chat_result(result, self.deployment_name or None)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Send the conversation on the caller's event loop."""
        call = self._prepare_chat(stop, kwargs, stream=False)
        result = await self._chat_core().ainvoke(to_core_messages(messages), timeout=call.timeout, **call.body)
        return chat_result(result, self.deployment_name or None)

    def _stream_metadata(self) -> Callable[[ChatChunk], dict[str, Any] | None]:
        """Return a function giving the metadata for the first chunk of a stream and None after."""
        sent = False
        deployment = self.deployment_name or None

        def first(chunk: ChatChunk) -> dict[str, Any] | None:
            nonlocal sent
            if sent:
                return None
            sent = True
            raw = chunk.raw
            model = raw.get("model") if isinstance(raw, dict) else None
            metadata: dict[str, Any] = {}
            name = model if isinstance(model, str) and model else deployment
            if name:
                metadata["model_name"] = name
            if deployment:
                metadata["deployment"] = deployment
            return metadata

        return first

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream through the core model's sync twin (serverless: SSE; dedicated: the answer in one chunk)."""
        core = self._chat_core()
        call = self._prepare_chat(stop, kwargs, stream=True)
        stops = call.body.pop("stop", None)
        metadata = self._stream_metadata()
        for chunk in core.stream(to_core_messages(messages), stop=stops, timeout=call.timeout, **call.body):
            if chunk.index == 0:
                yield stream_chunk(chunk, metadata(chunk))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Stream on the caller's event loop (serverless: SSE; dedicated: the answer in one chunk)."""
        core = self._chat_core()
        call = self._prepare_chat(stop, kwargs, stream=True)
        stops = call.body.pop("stop", None)
        metadata = self._stream_metadata()
        async for chunk in core.astream(to_core_messages(messages), stop=stops, timeout=call.timeout, **call.body):
            if chunk.index == 0:
                yield stream_chunk(chunk, metadata(chunk))

    # ------------------------------------------------------------------ tools and structured output

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (functions, pydantic models, TypedDicts, JSON schemas, LangChain tools) in the OpenAI form.

        Args:
            tools: what the model may call; each goes through ``convert_to_openai_tool``.
            tool_choice: ``"auto"``, ``"none"``, ``"any"`` / ``"required"`` / ``True`` (call some tool), a bound
                tool's name (call that one), or an OpenAI ``tool_choice`` dict.
            strict: ask for strict schema adherence where the endpoint supports it.
            parallel_tool_calls: allow or forbid several calls in one answer.
            **kwargs: more parameters bound to every call.

        Raises:
            azml_client.ConfigurationError: a ``tool_choice`` that names no bound tool.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice(tool_choice, formatted)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        include_raw: bool = False,
        method: StructuredOutputMethod = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return a runnable whose output follows ``schema`` (a pydantic class, a TypedDict or a JSON schema).

        Args:
            schema: the output's schema; a pydantic class gives instances, anything else dicts. ``json_mode``
                may go without one (any JSON object).
            include_raw: return ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead.
            method: ``"function_calling"`` (default: the schema as a forced tool, for serverless endpoints
                with tool calling), ``"json_mode"`` (``response_format={"type": "json_object"}``; say in the
                prompt that JSON is wanted) or ``"json_schema"`` (``response_format`` with the schema).
            strict: strict schema adherence, where the endpoint supports it.

        Raises:
            ValueError: an unknown ``method``, unknown keyword arguments, or no schema where one is needed.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        llm: Runnable[LanguageModelInput, AIMessage]
        parser: Runnable[Any, Any]
        if method == "function_calling":
            if schema is None:
                raise ValueError("method='function_calling' needs a schema")
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools(
                [schema],
                tool_choice=name,
                strict=strict,
                ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method in ("json_mode", "json_schema"):
            if method == "json_mode":
                response_format: dict[str, Any] = {"type": "json_object"}
            else:
                if schema is None:
                    raise ValueError("method='json_schema' needs a schema")
                function = convert_to_openai_tool(schema, strict=strict)["function"]
                json_schema: dict[str, Any] = {"name": function["name"], "schema": function.get("parameters", {})}
                if function.get("description"):
                    json_schema["description"] = function["description"]
                if strict is not None:
                    json_schema["strict"] = strict
                response_format = {"type": "json_schema", "json_schema": json_schema}
            bound: dict[str, Any] = {"response_format": response_format}
            if schema is not None:  # what LangChain shows to tracers; it needs a schema
                bound["ls_structured_output_format"] = {"kwargs": {"method": method}, "schema": schema}
            llm = self.bind(**bound)
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if is_pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(f"unknown method {method!r}: use 'function_calling', 'json_mode' or 'json_schema'")
        if include_raw:
            parse_raw = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
            no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
            return RunnableMap(raw=llm) | parse_raw.with_fallbacks([no_parse], exception_key="parsing_error")
        return llm | parser
