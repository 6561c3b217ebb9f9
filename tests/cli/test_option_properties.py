"""Every config value either runs or is refused in one line (issue 24, item 2).

Property tests over every field of every command's options (parametrized over the options classes,
so a new field is tested for free): right and wrong types, huge, tiny, negative, NaN and infinite
numbers, empty and odd strings, several fields at once. Each value goes through the parser and the
checks the command runs before any work; it is either accepted or refused with one line (a
:class:`UsageError` without a newline) that names the flag, the field or the value. ``train``, the
cheap command, is also run end to end: a refused value exits 2 with one stderr line and no folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity_ray.actors.options import ServeOptions, SimulationOptions, SweepOptions
from parity_ray.bounds import bound_text, check_output_dir, violated
from parity_ray.cli import build_parser
from parity_ray.cli.common import config_from_args
from parity_ray.cli.export import ExportOptions
from parity_ray.cli.options import flag_of, option_fields, options_from_args
from parity_ray.cli.quickstart import QuickstartOptions
from parity_ray.cli.report import ReportOptions
from parity_ray.config import TrainConfig, field_docs
from parity_ray.errors import UsageError
from parity_ray.tune.options import TuneOptions

from .runner import assert_usage_error, cli

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --------------------------------------------------------------------------- what each command checks first


def _simulate(options):
    from parity_ray.actors.simulation import validate

    validate(options)


def _sweep(options):
    from parity_ray.actors.sweep import validate

    validate(options)


def _serve(options):
    from parity_ray.actors.serve import run_serve

    run_serve(options)  # the experiment does not exist: refused at the latest when the run is looked up


def _tune(options):
    from parity_ray.tune.experiment import _check_name
    from parity_ray.tune.spaces import expand

    options.check()
    _check_name(options.name)
    if options.overrides:
        expand(options.space, options.overrides, options.smoke_test)


def _report(options):
    check_output_dir(options.out, "--out")


def _quickstart(options):
    check_output_dir(options.storage, "--storage")


# command -> (its options class, the arguments it requires, the checks its run makes before any work)
COMMANDS = {
    "simulate": (SimulationOptions, ["--experiment", "e"], _simulate),
    "serve": (ServeOptions, ["--experiment", "e"], _serve),
    "sweep": (SweepOptions, ["--experiment", "e", "--service", "lognormal:median_ms=3,sigma=0.3"], _sweep),
    "tune": (TuneOptions, ["quick", "--name", "n"], _tune),
    "report": (ReportOptions, ["e"], _report),
    "export": (ExportOptions, ["--out", "o"], lambda options: options.check()),
    "quickstart": (QuickstartOptions, [], _quickstart),
}


@contextmanager
def _inside(folder: Path):
    """Relative paths the checks probe land (and are removed) in ``folder``."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


# --------------------------------------------------------------------------- values

NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3), st.sampled_from([10**6, 10**12, 2**63, 10**30, -(10**18)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-300, 5e-324, 1e308, -0.0]),
)
WORDS = st.sampled_from(["", " ", "none", "None", "auto", "all", "nan", "inf", "-inf", "1e400", "-1", "0", "x" * 300,
                         "a,b", ",", ";", "=", "k=", "k=1000000", "r=0", "lr=nan", "seed=-1", "/proc/1/x", "a/b", "..",
                         "é", "{}", "[]", '{"cls": "x"}', "0x10", "1_000", "coded", "slow:replica=0,p=2"])
TEXTS = st.text(alphabet="abcxyz0129.,:;=-_+ ", max_size=12)


def _flag_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def flag_values():
    """What a user can type after a flag: numbers in every form, words, odd text."""
    return st.one_of(NUMBERS.map(_flag_text), WORDS, TEXTS)


def _fields(cls):
    return [f for f in option_fields(cls) if "positional" not in f.metadata]


def _argv(field: dataclasses.Field, text: str) -> list:
    """The flag giving ``text`` to ``field`` (an on/off field: its flag alone)."""
    if field.metadata.get("negate"):
        return [field.metadata["negate"]]
    if field.type in (bool, "bool"):
        return [flag_of(field)]
    return [f"{flag_of(field)}={text}"]


def _mentions(message: str, fields_and_texts) -> bool:
    for field, text in fields_and_texts:
        flag = flag_of(field).lstrip("-")
        names = {flag, flag.replace("-", "_"), flag.replace("-", " "), field.name, field.name.replace("_", " ")}
        if text.strip():
            names.add(text.strip()[:40])
        if any(name and name in message for name in names):
            return True
    return False


def _check_one_line(exc: UsageError, fields_and_texts, baseline: str) -> None:
    message = str(exc)
    assert "\n" not in message and message.strip(), repr(message)
    assert message == baseline or _mentions(message, fields_and_texts), (message, [(f.name, t) for f, t in fields_and_texts])


@functools.lru_cache(maxsize=1)
def _parser():
    return build_parser()


def _refusal(command: str, argv: list, folder: Path):
    """Parse ``command argv`` and run its checks: None if accepted, else the :class:`UsageError`."""
    cls, required, check = COMMANDS[command]
    with _inside(folder):
        try:
            options = options_from_args(cls, _parser().parse_args([command, *required, *argv]))
            check(options)
        except UsageError as exc:
            return exc
    return None


# --------------------------------------------------------------------------- every command's every field


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_of_every_command_runs_or_is_refused_in_one_line(command, tmp_path):
    cls, _, _ = COMMANDS[command]
    fields = _fields(cls)
    assert fields
    baseline = _refusal(command, [], tmp_path)  # the options as given (the experiment 'e' does not exist)
    baseline = str(baseline) if baseline else ""

    @PROPERTY
    @given(st.lists(st.tuples(st.sampled_from(fields), flag_values()), min_size=1, max_size=3,
                    unique_by=lambda pair: pair[0].name))
    def check(picked):
        argv = [arg for field, text in picked for arg in _argv(field, text)]
        refusal = _refusal(command, argv, tmp_path)
        if refusal is not None:
            _check_one_line(refusal, picked, baseline)

    check()
    for field in fields:  # and each field alone at its edges, so none is left to chance
        for text in ("-1", "0", "nan", "inf", "1e400", "", str(10**30), "x" * 300):
            refusal = _refusal(command, _argv(field, text), tmp_path)
            if refusal is not None:
                _check_one_line(refusal, [(field, text)], baseline)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a check left something behind"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_declared_range_is_in_the_help_and_refuses_its_edges(command, tmp_path):
    """The range a field declares is what ``--help`` shows and what checking refuses: one source."""
    cls, _, _ = COMMANDS[command]
    docs = field_docs(cls)
    for field in _fields(cls):
        text = bound_text(field.metadata)
        if not text:
            continue
        assert f"({text})" in docs[field.name], field.name
        for value in _outside(field.metadata):
            refusal = _refusal(command, _argv(field, str(value)), tmp_path)
            expected = f"{flag_of(field)} must be {violated(value, field.metadata)}, got"
            assert refusal is not None and str(refusal).startswith(expected), (field.name, refusal)


# --------------------------------------------------------------------------- train: every config key, typed


def _config_values():
    """What a --config file can hold: numbers, booleans, null, strings, lists, mappings."""
    return st.one_of(NUMBERS, st.booleans(), st.none(), WORDS, TEXTS, st.just([2, 3]), st.just({"cls": "x"}),
                     st.just({}), st.sampled_from(["digits", "mnist", "berrut", "concatenation", "conv", "mlp",
                                                   "base", "cpu", "cuda:7", "step", "cosine", "crop-flip", "\0"]))


TRAIN_FIELDS = [f for f in dataclasses.fields(TrainConfig) if f.name not in ("download",)]


def _train_check(values: dict, folder: Path):
    """What ``parity-ray train --config FILE`` checks before it reads data: the config and its --out."""
    with _inside(folder):
        try:
            config = TrainConfig.from_dict({"dataset": "digits", "download": False, **values}).validate()
            check_output_dir(config.out, "--out")
        except UsageError as exc:
            return exc
    return None


@PROPERTY
@given(st.dictionaries(st.sampled_from(TRAIN_FIELDS), _config_values(), min_size=1, max_size=3))
def test_every_train_config_key_runs_or_is_refused_in_one_line(tmp_path_factory, picked):
    folder = tmp_path_factory.mktemp("train")
    values = {field.name: value for field, value in picked.items()}
    refusal = _train_check(values, folder)
    if refusal is not None:
        texts = [(field, json.dumps(value, default=str) if not isinstance(value, str) else value) for field, value in picked.items()]
        _check_one_line(refusal, texts, "")
    assert not any(folder.iterdir())


def _outside(metadata) -> list:
    """Values just outside a declared range."""
    values = [metadata["min"] - 1] if "min" in metadata else [metadata["gt"]] if "gt" in metadata else []
    return values + ([metadata["max"] + 1] if "max" in metadata else [metadata["lt"]] if "lt" in metadata else [])


def test_a_declared_train_range_is_in_the_help_and_refuses_its_edges(tmp_path):
    docs = field_docs(TrainConfig)
    ranged = [f for f in TRAIN_FIELDS if bound_text(f.metadata)]
    assert {"k", "r", "lr", "seed", "ema_decay"} <= {f.name for f in ranged}
    for field in ranged:
        text = bound_text(field.metadata)
        assert f"({text})" in docs[field.name], field.name
        for value in _outside(field.metadata):
            refusal = _train_check({field.name: value}, tmp_path)
            expected = f"{field.name} must be {violated(value, field.metadata)}, got"
            assert refusal is not None and str(refusal).startswith(expected), (field.name, refusal)


@pytest.mark.parametrize("field", TRAIN_FIELDS, ids=lambda f: f.name)
def test_each_train_key_at_its_edges(field, tmp_path):
    for value in (-1, 0, 10**30, -(10**30), math.nan, math.inf, -math.inf, 1e-300, True, "", "x" * 300, None, [1], {}):
        refusal = _train_check({field.name: value}, tmp_path)
        if refusal is not None:
            _check_one_line(refusal, [(field, str(value))], "")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- train end to end


def _smoke(tmp_path, *argv):
    return cli("train", "--smoke-test", "--no-progress", "--dataset", "digits", "--no-download", *argv, cwd=tmp_path)


@pytest.mark.parametrize("how", ["config", "flag"])
def test_train_with_k_beyond_the_data_is_one_line_and_writes_nothing(tmp_path, how):
    out = tmp_path / "runs"
    if how == "config":
        (tmp_path / "c.json").write_text(json.dumps({"k": 1000000}))
        result = _smoke(tmp_path, "--config", "c.json", "--out", str(out))
    else:
        result = _smoke(tmp_path, "--k", "1000000", "--out", str(out))
    line = assert_usage_error(result, "k must be <= ", "got 1000000")
    assert "test split" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == (["c.json"] if how == "config" else [])


@pytest.mark.parametrize("out", ["/proc/1/x", "{file}/sub", "{file}"])
def test_train_with_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, out):
    (tmp_path / "afile").write_text("")
    out = out.format(file=tmp_path / "afile")
    result = _smoke(tmp_path, "--out", out)
    assert_usage_error(result, f"--out '{out}' cannot be")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == ""


@pytest.mark.parametrize("argv, fragment", [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--seed", "-1"], "seed must be >= 0, got -1"),
    (["--num-threads", "100000"], "num_threads must be <= 1024, got 100000"),
    (["--ema-decay", "1"], "ema_decay must be < 1, got 1.0"),
    (["--name", "../elsewhere"], "name must be a plain folder name"),
])
def test_train_refuses_a_bad_value_in_one_line_and_writes_nothing(tmp_path, argv, fragment):
    assert_usage_error(_smoke(tmp_path, "--out", str(tmp_path / "runs"), *argv), fragment)
    assert not any(tmp_path.iterdir())


def test_an_accepted_edge_value_runs_the_first_step(tmp_path):
    """The largest k the data allows and the largest seed are accepted, and the run's first epoch runs."""
    from parity_ray.config import SEED_MAX

    result = _smoke(tmp_path, "--out", str(tmp_path / "runs"), "--seed", str(SEED_MAX), "--k", "4",
                    "--batch-size", str(10**9), "--eval-batch-size", str(10**9), "--max-eval-groups", "4")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.parametrize("argv, flag", [
    (["report", "e", "--out", "/proc/1/x"], "--out"),
    (["export", "run", "--out", "/proc/1/x"], "--out"),
    (["tune", "quick", "--name", "n", "--storage", "/proc/1/x"], "--storage"),
])
def test_every_output_folder_that_cannot_be_made_is_one_line(tmp_path, argv, flag):
    assert_usage_error(cli(*argv, cwd=tmp_path), f"{flag} '/proc/1/x' cannot be created")
    assert not any(tmp_path.iterdir())
