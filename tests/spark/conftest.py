from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("pyarrow")

from pyspark.sql import SparkSession


def _session(master: str) -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    return (
        SparkSession.builder.master(master)
        .appName("azml-scale-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One ``local[2,3]`` session (2 cores; a failed task is retried up to 3 times, as on a cluster)."""
    session = _session("local[2,3]")
    yield session
    session.stop()
