"""A small trained experiment shared by the serving tests: digits, k=2, addition/subtraction, through Tune.

Session-scoped and self-contained: it starts a Ray of its own for training and shuts it down again
before the first test that uses it runs, so it never meets a module's ``local_ray``.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def trained_experiment(tmp_path_factory) -> str:
    import ray

    from parity_ray.experiment import TuneOptions, run_experiment

    storage = tmp_path_factory.mktemp("serve-results")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        opts = TuneOptions(space="quick", name="served", storage=str(storage), progress=False,
                           overrides=["dataset=digits", "base_epochs=20", "encoder=addition", "k=2", "epochs=40"])
        run_experiment(opts, log=lambda _m: None)
    finally:
        if owns_ray:
            ray.shutdown()
    return opts.uri
