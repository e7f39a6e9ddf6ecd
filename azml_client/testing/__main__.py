"""``python -m azml_client.testing``: run the endpoint emulator from the command line until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from azml_client.testing._payloads import AUTO, DEPLOYMENTS
from azml_client.testing._server import run_mock_server


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
        )
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
