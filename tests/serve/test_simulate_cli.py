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
