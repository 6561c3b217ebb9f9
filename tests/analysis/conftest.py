"""A small real experiment for the analysis and report tests: trained through Tune, served on Ray Serve.

Session-scoped, on the session's Ray (``local_ray``); Serve is shut down again once the tables are written.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import pytest


@dataclass
class SmallExperiment:
    uri: str  # tuned and simulated: every table filled
    no_simulation: str  # the same experiment's tables as they were before the simulation
    seconds: float  # what producing it took


@pytest.fixture(scope="session")
def small_experiment(tmp_path_factory, local_ray) -> SmallExperiment:
    """digits, k=2, addition and concatenation, 8 epochs, plus two cells of a dataset whose files are
    not in the test data roots (speech-commands: UNAVAILABLE rows); then 100 measured queries in coded and replication modes with a straggler."""
    from ray import serve

    from parity_ray.tune.experiment import TuneOptions, run_experiment
    from parity_ray.actors.simulation import SimulationOptions, run_simulation

    started = time.perf_counter()
    storage = tmp_path_factory.mktemp("analysis-results")
    try:
        options = TuneOptions(space="quick", name="small", storage=str(storage), progress=False,
                              overrides=["dataset=['digits','speech-commands']", "base_epochs=20", "k=2", "epochs=8"])
        run_experiment(options, log=lambda _m: None)
        no_simulation = storage / "no-simulation"
        shutil.copytree(os.path.join(options.uri, "tables"), no_simulation / "tables")
        run_simulation(SimulationOptions(experiment=options.uri, modes=["coded", "replication"], rate=40, queries=100,
                                         warmup=10, straggler="slow:replica=0,p=0.3,delay_ms=80", deadline_ms=40,
                                         timeout_s=5, progress=False), log=lambda _m: None)
    finally:
        serve.shutdown()
    return SmallExperiment(options.uri, str(no_simulation), time.perf_counter() - started)
