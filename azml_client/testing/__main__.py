"""``python -m azml_client.testing``: run the endpoint emulator from the command line until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from azml_client.testing._cli import add_server_arguments, server_options
from azml_client.testing._server import run_mock_server


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the emulator; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m azml_client.testing",
        description="Run a local emulator of Azure ML online endpoints (deterministic echo text, not a model).",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="require 'Authorization: Bearer <key>' with the key read from this environment variable",
    )
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"environment variable {args.api_key_env} is not set or empty")
    try:
        run_mock_server(api_key=api_key, **server_options(args))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
