from __future__ import annotations

import os

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for in-process experiments; workers import `tests.*` class-specs through PYTHONPATH."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
