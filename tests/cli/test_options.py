"""Each command's flags come from its options dataclass: every field is a flag with help, the flags
parse back into the dataclass's defaults, and the serving commands share their app options instead
of re-declaring them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from parity_ray.actors.options import AppOptions, Deployment, ModePolicy, ServeOptions, SimulationOptions, SweepOptions
from parity_ray.cli import build_parser
from parity_ray.cli.export import ExportOptions
from parity_ray.cli.options import option_fields, options_from_args
from parity_ray.cli.quickstart import QuickstartOptions
from parity_ray.cli.report import ReportOptions
from parity_ray.tune.options import TuneOptions

COMMANDS = {  # command -> (its options class, the arguments it requires)
    "simulate": (SimulationOptions, ["--experiment", "e"]),
    "serve": (ServeOptions, ["--experiment", "e"]),
    "sweep": (SweepOptions, ["--experiment", "e"]),
    "tune": (TuneOptions, ["quick", "--name", "n"]),
    "report": (ReportOptions, ["e"]),
    "export": (ExportOptions, ["--out", "o"]),
    "quickstart": (QuickstartOptions, []),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_is_a_flag_with_help(command):
    cls, _required = COMMANDS[command]
    sub = _subparser(command)
    by_dest = {a.dest: a for a in sub._actions}
    for field in option_fields(cls):
        assert field.name in by_dest, f"{command}: field {field.name} has no flag"
        assert (by_dest[field.name].help or "").strip(), f"{command}: --{field.name} has no help (a comment on its line)"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_parse_back_into_the_defaults(command):
    cls, required = COMMANDS[command]
    args = build_parser().parse_args([command, *required])
    options = options_from_args(cls, args)
    fresh = cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING})
    assert options == fresh


def test_a_flag_sets_its_field():
    args = build_parser().parse_args(["sweep", "--experiment", "e", "--rate", "10,20", "--k", "2,3", "--mode", "all",
                                      "--straggler", "none;slow:replica=0", "--run", "none", "--no-progress"])
    options = options_from_args(SweepOptions, args)
    assert options.rates == [10.0, 20.0] and options.ks == [2, 3] and options.run is None and not options.progress
    assert options.stragglers == ["none", "slow:replica=0"] and "coded-hedged" in options.modes
    tune = options_from_args(TuneOptions, build_parser().parse_args(["tune", "quick", "--name", "n", "--set", "k=3",
                                                                      "--set", "r=2"]))
    assert tune.overrides == ["k=3", "r=2"]


def test_serving_commands_build_on_one_app_options_class():
    """The policy and deployment fields are declared once; the commands inherit them."""
    shared = {f.name for f in dataclasses.fields(Deployment)}
    for cls in (AppOptions, ServeOptions, SimulationOptions):
        assert shared <= {f.name for f in dataclasses.fields(cls)}
        own = set(vars(cls).get("__annotations__", {}))
        assert not own & shared, f"{cls.__name__} re-declares {own & shared}"
    assert not set(vars(SweepOptions)["__annotations__"]) & {f.name for f in dataclasses.fields(ModePolicy)}


def test_smoke_tests_belong_to_the_engines():
    sim = SimulationOptions(experiment="e").smoke_test()
    assert sim.queries < 100 and len(sim.modes) == 2
    assert SweepOptions(experiment="e").smoke_test().workers == 0
