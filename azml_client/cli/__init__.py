"""The ``azml`` command line: one-off completions and chats, resumable batch jobs, the emulator and a demo.

``azml complete``, ``azml chat``, ``azml batch``, ``azml mock-server`` and ``azml demo`` (see ``azml --help``).
It sits on top of the library: nothing in ``azml_client`` imports it.
"""

from azml_client.cli._main import main

__all__ = ["main"]
