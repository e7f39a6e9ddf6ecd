"""``python -m azml_client.testing``: run the endpoint emulator from the command line until Ctrl-C."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from azml_client.testing._payloads import AUTO, DEPLOYMENTS
from azml_client.testing._pushback import LATENCY_DISTRIBUTIONS
from azml_client.testing._server import run_mock_server


def _number(convert: Callable[[str], float], expected: str, accept: Callable[[float], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, "an integer >= 1", lambda value: value >= 1)
_count = _number(int, "an integer >= 0", lambda value: value >= 0)
_seconds = _number(float, "a number of seconds >= 0", lambda value: value >= 0)
_positive_seconds = _number(float, "a positive number of seconds", lambda value: value > 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the emulator; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m azml_client.testing",
        description="Run a local emulator of Azure ML online endpoints (deterministic echo text, not a model).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require 'Authorization: Bearer <key>' with the key read from this environment variable",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept before each answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    parser.add_argument(
        "--deployment",
        default="gpt2",
        metavar="NAME",
        help=f"deployment of /score requests without an azureml-model-deployment header: {', '.join(DEPLOYMENTS)} "
        f"(or one of them with a -suffix), or {AUTO} (picked from each body's shape); default gpt2",
    )
    pushback = parser.add_argument_group("push-back (see MockEndpoint's docstring)")
    pushback.add_argument(
        "--latency-distribution",
        choices=LATENCY_DISTRIBUTIONS,
        default="fixed",
        help="fixed (default), or lognormal with --latency as the median",
    )
    pushback.add_argument(
        "--latency-sigma", type=_seconds, default=0.5, metavar="SIGMA", help="lognormal sigma (default 0.5)"
    )
    pushback.add_argument(
        "--capacity", type=_positive_int, metavar="N", help="requests processed at once (default: no limit)"
    )
    pushback.add_argument(
        "--queue", type=_count, metavar="M", help="requests waiting beyond --capacity before a 429 (default N)"
    )
    pushback.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="S",
        help="seconds in the queue before a 408 (default 5)",
    )
    pushback.add_argument(
        "--capacity-retry-after",
        type=_seconds,
        metavar="S",
        help="Retry-After of the capacity 429 (default: none, as Azure)",
    )
    pushback.add_argument("--rpm", type=_positive_int, metavar="N", help="serverless requests per minute")
    pushback.add_argument("--tpm", type=_positive_int, metavar="N", help="serverless tokens per minute")
    pushback.add_argument(
        "--quota-window",
        type=_positive_seconds,
        default=1.0,
        metavar="S",
        help="seconds of the sliding quota window (default 1)",
    )
    pushback.add_argument(
        "--remaining-header-noise",
        action="store_true",
        help="report -1 in about one x-ratelimit-remaining-* header in ten",
    )
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"environment variable {args.api_key_env} is not set or empty")
    try:
        run_mock_server(
            host=args.host,
            port=args.port,
            api_key=api_key,
            latency=args.latency,
            fault_rate=args.fault_rate,
            seed=args.seed,
            default_deployment=args.deployment,
            latency_distribution=args.latency_distribution,
            latency_sigma=args.latency_sigma,
            capacity=args.capacity,
            queue=args.queue,
            request_timeout=args.request_timeout,
            capacity_retry_after=args.capacity_retry_after,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
            quota_window=args.quota_window,
            remaining_header_noise=args.remaining_header_noise,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
