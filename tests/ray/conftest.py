from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import ray


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local 2-CPU Ray cluster, with no usage stats and no dashboard."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()
