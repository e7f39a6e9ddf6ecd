"""``python -m azml_client.cli``: the same as the ``azml`` command."""

import sys

from azml_client.cli._main import main

if __name__ == "__main__":
    sys.exit(main())
