"""The endpoint options of the calling commands (flags over the ``AZUREML_*`` variables) and what is built from them.

The key is read only from ``AZUREML_ENDPOINT_API_KEY`` or from the file ``--api-key-file`` names, never from a
flag's value (which would land in the shell history and the process list), and is never printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

import attrs
import orjson

from azml_client._config import DEFAULT_MAX_CONNECTIONS, ApiType, RateLimit, RetryPolicy
from azml_client._exceptions import ConfigurationError
from azml_client._formatters import DEFAULT_CHAT_FORMATTER, default_formatter_name, get_formatter
from azml_client._models import LLM, ChatModel
from azml_client._transport import EndpointClient
from azml_client.cli._argtypes import non_negative_int, positive_seconds

__all__ = [
    "DEFAULT_CHAT_FORMATTER",
    "EndpointSettings",
    "add_endpoint_arguments",
    "default_completion_formatter",
    "parse_param",
]


def default_completion_formatter(api_type: ApiType) -> str:
    """The completion formatter used without ``--formatter``: ``gpt2`` (dedicated) or ``openai`` (serverless)."""
    return default_formatter_name("completion", api_type)


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``--param key=value``: the value is JSON when it parses as JSON (``0.2``, ``true``, ``["a"]``),
    else the text as it is.

    Raises:
        argparse.ArgumentTypeError: no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return key, value


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the endpoint options shared by ``complete``, ``chat`` and ``batch``."""
    group = parser.add_argument_group(
        "endpoint",
        "Flags override the environment: AZUREML_ENDPOINT_URL, AZUREML_ENDPOINT_API_TYPE,\n"
        "AZUREML_DEPLOYMENT_NAME, AZUREML_TIMEOUT. The key comes from AZUREML_ENDPOINT_API_KEY\n"
        "or --api-key-file, never from a flag.",
    )
    group.add_argument("--endpoint-url", metavar="URL", help="the scoring URL (dedicated) or base URL (serverless)")
    group.add_argument("--api-type", metavar="TYPE", help="dedicated (default) or serverless")
    group.add_argument("--deployment", metavar="NAME", help="pin requests to this deployment")
    group.add_argument(
        "--formatter",
        metavar="NAME",
        help="the formatter (default: gpt2 on dedicated, openai on serverless; openai-chat for chat)",
    )
    group.add_argument(
        "--chat-formatter",
        metavar="NAME",
        help=f"batch: the formatter of 'messages' lines (default {DEFAULT_CHAT_FORMATTER})",
    )
    group.add_argument(
        "--param",
        metavar="KEY=VALUE",
        type=parse_param,
        action="append",
        default=[],
        help="a model parameter sent with every request; VALUE is JSON when it parses (repeatable)",
    )
    group.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, help="total time allowed per request")
    group.add_argument("--max-retries", metavar="N", type=non_negative_int, help="retries per request (default 2)")
    group.add_argument("--api-key-file", metavar="PATH", help="read the key from this file (first line)")
    proxy = group.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="send every request through this http(s) proxy (default: HTTPS_PROXY / HTTP_PROXY / NO_PROXY)",
    )
    proxy.add_argument("--no-proxy", action="store_true", help="connect directly, ignoring HTTP_PROXY / HTTPS_PROXY")


def read_key_file(path: str) -> str:
    """Return the key stored in ``path`` (its first line, stripped).

    Raises:
        ConfigurationError: the file cannot be read or holds no key. The message never holds file content.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(f"cannot read the key file {path!r}: {reason}") from None
    lines = text.strip().splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise ConfigurationError(f"the key file {path!r} is empty")
    return key


@attrs.frozen(slots=True)
class EndpointSettings:
    """The endpoint options of one command line (``None``: the environment or the default decides)."""

    endpoint_url: str | None = None
    api_type: str | None = None
    deployment: str | None = None
    formatter: str | None = None
    chat_formatter: str | None = None
    params: dict[str, Any] = attrs.Factory(dict)
    timeout: float | None = None
    max_retries: int | None = None
    api_key_file: str | None = None
    proxy: str | None = None
    no_proxy: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EndpointSettings:
        """Collect the options :func:`add_endpoint_arguments` defined."""
        return cls(
            endpoint_url=args.endpoint_url,
            api_type=args.api_type,
            deployment=args.deployment,
            formatter=args.formatter,
            chat_formatter=args.chat_formatter,
            params=dict(args.param),
            timeout=args.timeout,
            max_retries=args.max_retries,
            api_key_file=args.api_key_file,
            proxy=args.proxy,
            no_proxy=args.no_proxy,
        )

    @property
    def proxy_setting(self) -> str | Literal[False] | None:
        """The client's ``proxy=``: the ``--proxy`` URL, False for ``--no-proxy``, else None (the environment's)."""
        if self.no_proxy:
            return False
        return self.proxy

    def client(
        self,
        *,
        concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
        batch: bool = False,
    ) -> EndpointClient:
        """Build the transport; the pool is made large enough for ``concurrency`` requests in flight.

        ``rate_limit`` is the quota the client keeps (``azml batch --rpm/--tpm``); ``batch`` builds the client
        of ``azml batch``, whose 429s wait their turn (``on_throttle="wait"``) instead of failing a line.

        Raises:
            ConfigurationError: a missing or bad URL, api type, timeout or key file.
        """
        key = read_key_file(self.api_key_file) if self.api_key_file else None
        retry = RetryPolicy(max_retries=self.max_retries) if self.max_retries is not None else None
        if not self.endpoint_url and not os.environ.get("AZUREML_ENDPOINT_URL"):
            raise ConfigurationError(
                "an endpoint URL is required: pass --endpoint-url or set AZUREML_ENDPOINT_URL "
                "(for example https://my-endpoint.eastus2.inference.ml.azure.com/score)"
            )
        return EndpointClient(
            self.endpoint_url,
            key,
            api_type=self.api_type,
            deployment_name=self.deployment,
            timeout=self.timeout,
            retry=retry,
            max_connections=max(DEFAULT_MAX_CONNECTIONS, concurrency or 0),
            proxy=self.proxy_setting,
            rate_limit=rate_limit,
            on_throttle="wait" if batch else None,
        )

    def llm(self, client: EndpointClient) -> LLM:
        """The completion model of ``azml complete``."""
        name = self.formatter or default_completion_formatter(client.api_type)
        return LLM(client=client, formatter=name, model_kwargs=self.params)

    def chat(self, client: EndpointClient) -> ChatModel:
        """The chat model of ``azml chat``."""
        name = self.chat_formatter or self.formatter or DEFAULT_CHAT_FORMATTER
        return ChatModel(client=client, formatter=name, model_kwargs=self.params)

    def batch_models(self, client: EndpointClient, completion: bool, chat: bool) -> tuple[LLM | None, ChatModel | None]:
        """The models of ``azml batch``, built only for the kinds of lines the input has.

        ``--formatter`` names the formatter of prompt lines, or of chat lines when it is a chat formatter and
        ``--chat-formatter`` is not given.
        """
        completion_name, chat_name = self.formatter, self.chat_formatter
        if completion_name is not None and get_formatter(completion_name).kind == "chat":
            chat_name = chat_name or completion_name
            completion_name = None
        llm = chat_model = None
        if completion:
            llm = LLM(
                client=client,
                formatter=completion_name or default_completion_formatter(client.api_type),
                model_kwargs=self.params,
            )
        if chat:
            chat_model = ChatModel(
                client=client, formatter=chat_name or DEFAULT_CHAT_FORMATTER, model_kwargs=self.params
            )
        return llm, chat_model
