"""The ``azml`` command line: argument parsing and the commands complete, chat, batch, mock-server and demo.

Each command runs at most one ``asyncio.run``; below it everything is async. Exit codes: 0 success, 1 a request
(or some batch lines) failed, 2 a usage or input error found before anything was sent, 3 a batch stopped early
on a systematic failure, 128 + N after signal N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any, Final

import orjson

from azml_client._config import RateLimit
from azml_client._exceptions import AzureMLError, ConfigurationError
from azml_client._models._batch import SYSTEMATIC_FAILURE_THRESHOLD
from azml_client._version import __version__
from azml_client.cli._argtypes import non_negative_int, positive_int, probability, seconds
from azml_client.cli._batch import (
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    EXIT_SYSTEMATIC,
    BatchError,
    BatchJob,
    BatchOptions,
    exit_code,
)
from azml_client.cli._endpoint import EndpointSettings, add_endpoint_arguments, read_key_file
from azml_client.cli._output import OutputError
from azml_client.cli._report import BatchStats
from azml_client.testing._cli import add_server_arguments

__all__ = ["build_parser", "main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

_DESCRIPTION: Final = """\
Call Azure ML online endpoints (dedicated /score or serverless) from the shell.

  azml complete "Tell me a joke"                      one completion
  azml chat "What is Azure ML?" --system "Be brief."  one chat answer (--stream prints it as it comes)
  azml batch prompts.jsonl -o results.jsonl            a file of prompts, resumable (--resume)
  azml mock-server --port 8000                        a local endpoint emulator
  azml demo                                           a batch of 3000 prompts through the emulator
"""

_BATCH_EPILOG: Final = """\
Input lines (JSONL): "a prompt", {"id": ..., "prompt": ..., <param>: ...} or {"id": ..., "messages": [...]};
chat lines go to the chat formatter. Text input: one prompt per line. A line without an id gets its line number.
Ids must be unique: the input is checked before anything is sent (stdin is first copied to a temporary file).
Output: one JSON line per input with id, output, finish_reason, usage, error ({type, message} or null),
attempts and latency_ms, written (and flushed) as each finishes. After a crash or Ctrl-C, run again with
--resume: ids already in OUT are skipped and an unfinished last line is redone.
A batch whose last K (--fail-fast, 20) finished requests all failed the same way for a reason no retry fixes
(a wrong key or path, the same 400, a dead port) stops taking inputs and exits 3, summarising failures by kind;
fix the cause and finish it with --resume --retry-failed. 5xx, timeouts and 429s never stop it (429s wait).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``azml`` argument parser, with one sub-command per command."""
    parser = argparse.ArgumentParser(
        prog="azml", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"azml-client {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    complete = commands.add_parser("complete", help="complete one prompt", description="Complete one prompt.")
    complete.add_argument("prompt", metavar="PROMPT", help="the prompt ('-' reads it from stdin)")
    complete_mode = complete.add_mutually_exclusive_group()
    complete_mode.add_argument("--stream", action="store_true", help="print the text as it is generated")
    complete_mode.add_argument("--json", action="store_true", help="print output, finish_reason and usage as JSON")
    add_endpoint_arguments(complete)
    complete.set_defaults(handler=_complete)

    chat = commands.add_parser("chat", help="send one chat message", description="Send one chat message.")
    chat.add_argument("message", metavar="MESSAGE", help="the user message ('-' reads it from stdin)")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent before it")
    chat_mode = chat.add_mutually_exclusive_group()
    chat_mode.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    chat_mode.add_argument("--json", action="store_true", help="print output, finish_reason and usage as JSON")
    add_endpoint_arguments(chat)
    chat.set_defaults(handler=_chat)

    batch = commands.add_parser(
        "batch",
        help="send a file of prompts, writing one result line each",
        description="Send every line of IN and write one JSON result line per input to OUT.",
        epilog=_BATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch.add_argument("input", metavar="IN", help="JSONL or text input ('-' reads stdin)")
    batch.add_argument("-o", "--output", metavar="OUT", required=True, help="the JSONL output ('-' writes stdout)")
    batch.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    batch.add_argument("--resume", action="store_true", help="finish the run OUT holds, skipping ids already there")
    batch.add_argument("--retry-failed", action="store_true", help="with --resume: send the lines that failed again")
    batch.add_argument(
        "--ordered",
        action="store_true",
        help="write results in input order (OUT then stays in order across --resume); finished results wait "
        "behind a slower one, up to max(4 x N, 8192) lines in memory, so it costs about as much as unordered "
        "unless one request takes as long as thousands of others (a hung one stalls it until its timeout)",
    )
    batch.add_argument(
        "--fail-fast",
        metavar="K",
        type=non_negative_int,
        default=SYSTEMATIC_FAILURE_THRESHOLD,
        help=f"stop taking inputs once K finished requests in a row failed the same systematic way (401, 403, "
        f"404, the same 400, connection refused, DNS; never 5xx, timeouts or 429); exit {EXIT_SYSTEMATIC}; "
        f"0: never stop (default {SYSTEMATIC_FAILURE_THRESHOLD})",
    )
    batch.add_argument("--rpm", metavar="N", type=positive_int, help="the endpoint's requests-per-minute quota to keep")
    batch.add_argument("--tpm", metavar="N", type=positive_int, help="the endpoint's tokens-per-minute quota to keep")
    batch.add_argument("--skip-invalid", action="store_true", help="skip malformed input lines instead of stopping")
    batch.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    batch.add_argument(
        "--input-format",
        choices=("auto", "jsonl", "text"),
        default="auto",
        help="how to read IN (default auto: by suffix, else by its first line)",
    )
    batch.add_argument(
        "--grace",
        metavar="SECONDS",
        type=seconds,
        default=DEFAULT_GRACE,
        help=f"after Ctrl-C, how long requests in flight may finish (default {DEFAULT_GRACE:g})",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress line, even on a terminal")
    add_endpoint_arguments(batch)
    batch.set_defaults(handler=_batch)

    mock = commands.add_parser(
        "mock-server",
        help="run the local endpoint emulator",
        description="Run a local emulator of Azure ML online endpoints until Ctrl-C (it echoes; not a model).",
    )
    add_server_arguments(mock)
    keys = mock.add_mutually_exclusive_group()
    keys.add_argument("--api-key-env", metavar="VAR", help="require the key held by this environment variable")
    keys.add_argument("--api-key-file", metavar="PATH", help="require the key stored in this file")
    mock.set_defaults(handler=_mock_server)

    demo = commands.add_parser(
        "demo",
        help="run a batch through the built-in emulator",
        description="Start the endpoint emulator in-process, with injected transient faults, and push a batch "
        "of prompts through the real client: progress, summary and a few outputs.",
    )
    demo.add_argument("--count", type=positive_int, default=3000, help="prompts to send (default 3000)")
    demo.add_argument("--concurrency", type=positive_int, default=64, help="requests in flight (default 64)")
    demo.add_argument(
        "--fault-rate", type=probability, default=0.05, help="transient faults per request (default 0.05)"
    )
    demo.add_argument("--latency", type=seconds, default=0.01, help="emulator latency in seconds (default 0.01)")
    demo.add_argument("--output", metavar="OUT", help="keep the results in this JSONL file")
    demo.set_defaults(handler=_demo)
    return parser


def _error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"azml: error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``azml`` command line with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status: int = args.handler(args, arguments)
    except KeyboardInterrupt:
        sys.stderr.write("\nazml: interrupted\n")
        return EXIT_INTERRUPTED
    except (ConfigurationError, BatchError, OutputError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except AzureMLError as exc:
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from failing to flush stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        _error(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_FAILED
    return status


# ---------------------------------------------------------------------------------------------- commands


def _text_argument(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def _print_json(output: str, finish_reason: str | None, usage: Any) -> None:
    record = {"output": output, "finish_reason": finish_reason, "usage": usage}
    sys.stdout.write(orjson.dumps(record, default=_usage_default).decode() + "\n")


def _usage_default(value: Any) -> Any:
    from azml_client._types import Usage

    if isinstance(value, Usage):
        return value.to_dict()
    raise TypeError


def _complete(args: argparse.Namespace, _argv: list[str]) -> int:
    settings = EndpointSettings.from_args(args)
    prompt = _text_argument(args.prompt)

    async def run() -> None:
        async with settings.client() as client, settings.llm(client) as llm:
            if args.stream:
                async for piece in llm.astream(prompt):
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            elif args.json:
                completion = await llm.acomplete(prompt)
                _print_json(completion.text, completion.finish_reason, completion.usage)
            else:
                sys.stdout.write(await llm.ainvoke(prompt) + "\n")
            sys.stdout.flush()

    asyncio.run(run())
    return EXIT_OK


def _chat(args: argparse.Namespace, _argv: list[str]) -> int:
    settings = EndpointSettings.from_args(args)
    messages = [{"role": "user", "content": _text_argument(args.message)}]
    if args.system is not None:
        messages.insert(0, {"role": "system", "content": args.system})

    async def run() -> None:
        async with settings.client() as client, settings.chat(client) as chat:
            if args.stream:
                async for chunk in chat.astream(messages):
                    if chunk.content:
                        sys.stdout.write(chunk.content)
                        sys.stdout.flush()
                sys.stdout.write("\n")
            else:
                result = await chat.ainvoke(messages)
                if args.json:
                    _print_json(result.content, result.finish_reason, result.usage)
                else:
                    sys.stdout.write(result.content + "\n")
            sys.stdout.flush()

    asyncio.run(run())
    return EXIT_OK


def _resume_command(argv: list[str]) -> str:
    """The command line that resumes this batch: the same one with ``--resume`` (and no ``--overwrite``)."""
    words = [word for word in argv if word != "--overwrite"]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(["azml", *words])


def _batch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.retry_failed and not args.resume:
        raise BatchError("--retry-failed goes with --resume")
    if args.resume and args.overwrite:
        raise BatchError("--resume and --overwrite exclude each other")
    settings = EndpointSettings.from_args(args)
    options = BatchOptions(
        input=args.input,
        output=args.output,
        concurrency=args.concurrency,
        resume=args.resume,
        retry_failed=args.retry_failed,
        ordered=args.ordered,
        skip_invalid=args.skip_invalid,
        overwrite=args.overwrite,
        input_format=args.input_format,
        grace=args.grace,
        progress=False if args.no_progress else None,
        resume_command=_resume_command(argv),
        fail_fast=args.fail_fast,
    )
    rate_limit = None
    if args.rpm is not None or args.tpm is not None:
        rate_limit = RateLimit(requests_per_minute=args.rpm, tokens_per_minute=args.tpm)

    # The client checks the endpoint settings before the input is read; it opens no connection until run().
    client = settings.client(concurrency=options.concurrency, rate_limit=rate_limit, batch=True)
    with BatchJob(options) as job:
        job.prepare()
        llm, chat = settings.batch_models(client, job.needs_completion, job.needs_chat)
        job.open_output()

        async def run() -> BatchStats:
            async with client:
                try:
                    return await job.run(llm, chat)
                finally:
                    for model in (llm, chat):
                        if model is not None:
                            await model.aclose()

        try:
            stats = asyncio.run(run())
        finally:
            job.report()
    return exit_code(stats)


def _mock_server(args: argparse.Namespace, _argv: list[str]) -> int:
    from azml_client.testing import run_mock_server
    from azml_client.testing._cli import server_options

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ConfigurationError(f"environment variable {args.api_key_env} is not set or empty")
    elif args.api_key_file:
        api_key = read_key_file(args.api_key_file)
    try:
        run_mock_server(api_key=api_key, **server_options(args))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return EXIT_OK


def _demo(args: argparse.Namespace, _argv: list[str]) -> int:
    from azml_client.cli._demo import run_demo

    return asyncio.run(
        run_demo(
            count=args.count,
            concurrency=args.concurrency,
            fault_rate=args.fault_rate,
            latency=args.latency,
            output=args.output,
        )
    )
