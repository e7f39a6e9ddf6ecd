"""The emulator's command-line flags: one definition for ``azml mock-server`` and ``python -m azml_client.testing``.

:func:`add_server_arguments` adds them to a parser, :func:`server_options` turns the parsed flags into
:func:`~azml_client.testing.run_mock_server`'s keyword arguments. Each command line adds its own key flags and
reports errors its own way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from azml_client.testing._faults import RANDOM_FAULT_KINDS
from azml_client.testing._payloads import AUTO, DEPLOYMENTS
from azml_client.testing._pushback import LATENCY_DISTRIBUTIONS

__all__ = ["DEFAULT_FAULT_KINDS", "add_server_arguments", "server_options"]

#: ``--fault-kinds`` unless told otherwise (MockEndpoint's default).
DEFAULT_FAULT_KINDS = "429,503,drop,truncate"


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
_probability = _number(float, "a number between 0 and 1", lambda value: 0 <= value <= 1)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every flag of the emulator but the key's to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--latency", type=_seconds, default=0.0, help="seconds slept before each answer")
    parser.add_argument(
        "--fault-rate", type=_probability, default=0.0, help="probability of a random fault per request"
    )
    parser.add_argument(
        "--fault-kinds",
        metavar="KINDS",
        default=DEFAULT_FAULT_KINDS,
        help="comma-separated random faults: HTTP statuses, or "
        f"{', '.join(kind for kind in RANDOM_FAULT_KINDS if not kind.isdigit())} (default {DEFAULT_FAULT_KINDS})",
    )
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


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`~azml_client.testing.run_mock_server`'s keyword arguments (all but ``api_key``) from the flags."""
    return {
        "host": args.host,
        "port": args.port,
        "latency": args.latency,
        "fault_rate": args.fault_rate,
        "fault_kinds": tuple(kind.strip() for kind in args.fault_kinds.split(",") if kind.strip()),
        "seed": args.seed,
        "default_deployment": args.deployment,
        "latency_distribution": args.latency_distribution,
        "latency_sigma": args.latency_sigma,
        "capacity": args.capacity,
        "queue": args.queue,
        "request_timeout": args.request_timeout,
        "capacity_retry_after": args.capacity_retry_after,
        "requests_per_minute": args.rpm,
        "tokens_per_minute": args.tpm,
        "quota_window": args.quota_window,
        "remaining_header_noise": args.remaining_header_noise,
    }
