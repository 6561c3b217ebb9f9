"""``parity-ray simulate`` bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from tests.cli.runner import assert_usage_error, cli


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--straggler", "slowish:p=1"], ["unknown straggler model 'slowish'"]),
        (["--straggler", "slow:p"], ["expected key=value"]),
        (["--mode", "coded,teleport"], ["unknown mode 'teleport'"]),
        (["--rate", "0"], ["--rate must be > 0"]),
        (["--repeat", "0"], ["--repeat must be > 0"]),
        (["--deadline-ms", "soon"], ["takes milliseconds or 'auto'"]),
        (["--deadline-ms", "auto", "--deadline-quantile", "1.5"], ["--deadline-quantile must be in (0, 1)"]),
    ],
)
def test_bad_simulate_flags(tmp_path, args, fragments):
    # the flags are checked before the experiment is even read
    result = cli("simulate", "--experiment", str(tmp_path), *args)
    assert_usage_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_unknown_experiment(tmp_path):
    result = cli("simulate", "--experiment", str(tmp_path / "nope"))
    assert_usage_error(result, "holds no experiment tables")
    assert not (tmp_path / "nope").exists()


def test_repetitions_move_the_seeds_and_rotate_the_modes():
    from parity_ray.actors.options import SimulationOptions

    options = SimulationOptions(experiment="e", modes=["coded", "replication", "hedged"], seed=7, repeat=3)
    reps = [options.repetition(i) for i in range(3)]
    assert [r.seed for r in reps] == [7, 8, 9] and all(r.repeat == 1 for r in reps)
    assert [r.modes for r in reps] == [["coded", "replication", "hedged"], ["replication", "hedged", "coded"],
                                       ["hedged", "coded", "replication"]]


def test_spread_is_the_median_and_range_over_repetitions():
    from parity_ray.actors.simulation import spread

    rows = [{"mode": "coded", "p50_ms": p50, "p99_ms": 2 * p50, "p999_ms": p999, "accuracy": 0.9, "throughput_qps": 30.0}
            for p50, p999 in ((10.0, 40.0), (12.0, 100.0), (11.0, 50.0))]
    figures = spread(rows)["coded"]
    assert figures["p50_ms"] == {"median": 11.0, "min": 10.0, "max": 12.0}
    assert figures["gap_ms"] == {"median": 39.0, "min": 30.0, "max": 88.0}


def test_the_adaptive_deadline_follows_a_high_quantile_of_recent_direct_answers():
    from parity_ray.actors.modes import AdaptiveDeadline, get_mode

    deadline = AdaptiveDeadline(0.95, start_s=0.05)
    for ms in range(1, 20):
        deadline.observe(ms / 1000)
    assert deadline.value == 0.05  # too few answers yet: the start value
    for ms in range(20, 401):
        deadline.observe(ms / 1000)
    assert deadline.value == pytest.approx(0.39, abs=0.002)  # p95 of the last 200 (201..400 ms)
    # the modes read it per query; modes that never wait on a deadline have none to adapt
    assert get_mode("hedged").uses_deadline and not get_mode("coded-eager").uses_deadline
    assert not get_mode("replication").uses_deadline
