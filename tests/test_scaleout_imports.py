"""``import azml_client`` (and importing the scale-out modules) loads neither pyspark, ray nor pyarrow."""

from __future__ import annotations

import subprocess
import sys


def test_import_azml_client_imports_neither_pyspark_nor_ray() -> None:
    code = (
        "import sys, azml_client, azml_client.spark, azml_client.ray, azml_client._scale\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'ray', 'pyarrow', 'py4j'))\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""
