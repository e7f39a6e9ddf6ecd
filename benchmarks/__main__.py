"""``python -m benchmarks``: run every benchmark and write the results (see ``benchmarks/README.md``)."""

import sys

from benchmarks._main import main

sys.exit(main())
