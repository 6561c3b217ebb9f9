"""What every command module shares: the one-line parser, the run-config flags and the summary
output. Options classes become flags through ``cli.options``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any, Dict, Optional

from ..config import TrainConfig
from ..errors import UsageError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage text is under --help).

    Abbreviated flags are refused: ``--epoch`` silently meaning ``--epochs`` hides typos.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- config flags


def _flag_type(field: dataclasses.Field):
    text = str(field.type)
    inner = text[len("Optional[") : -1] if text.startswith("Optional[") else text
    return {"int": int, "float": float, "str": str, "SpecType": str, "bool": bool}[inner]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size`` for ``batch_size``); file values stay unless given."""
    from ..config import field_docs

    group = parser.add_argument_group("run configuration (override --config)")
    docs = field_docs()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _flag_type(field)
        # The field's comment in config.py is its documentation; argparse's % needs escaping.
        text = f"{docs.get(field.name, '')} (default: {field.default!r})".strip().replace("%", "%%")
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=text)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper(),
                               help=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """defaults < ``--recipe`` < ``--config`` file < flags."""
    from ..recipes import recipe_overrides

    recipe = getattr(args, "recipe", None)
    base = TrainConfig.from_dict(recipe_overrides(recipe)) if recipe else TrainConfig()
    config = TrainConfig.from_file(args.config, base) if args.config else base
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig.from_dict(overrides, base=config)


# --------------------------------------------------------------------------- output


def format_summary(summary: Dict[str, Any]) -> str:
    rows = [
        ("run", summary["run_dir"]),
        ("dataset / model", f"{summary['dataset']} / {summary['model']}"),
        ("code", f"k={summary['k']} r={summary['r']} {summary['encoder']} -> {summary['decoder']} ({summary['loss']}; "
                 f"{summary.get('code_family', '?')}, {'systematic' if summary.get('systematic', True) else 'non-systematic'}, "
                 f"worker {'F' if summary.get('worker') == 'base' else 'trained'})"),
        ("epochs (best)", f"{summary['epochs']} ({summary['best_epoch']})"),
        ("available accuracy", _pct(summary["available_accuracy"])),
        *([("no failure (all k+r back)", f"all-k {_pct(summary['all_accuracy_e0'])} through the code"
                                         + ("" if summary.get("systematic", True) else " (every answer decoded)"))]
          if summary.get("all_accuracy_e0") is not None else []),
        ("degraded-mode accuracy", _pct(summary["degraded_accuracy"])),
        ("reconstruction accuracy", _pct(summary["reconstruction_accuracy"])),
        *([("mean IoU (rebuilt vs true / base)", f"{_pct(summary['degraded_mean_iou'])} / {_pct(summary['reconstruction_mean_iou'])}")]
          if "degraded_mean_iou" in summary else []),
        *[(f"e={e} unavailable", f"degraded {_pct(summary.get(f'degraded_accuracy_e{e}'))}, all-k {_pct(summary.get(f'all_accuracy_e{e}'))}"
                                 + _below_base_rate(summary.get(f"degraded_accuracy_e{e}"), summary.get("majority_accuracy"))
                                 + _sampled(summary, e))
          for e in range(1, int(summary["r"]) + 1)],
        *([("byzantine workers", f"accuracy {_pct(summary['byzantine_accuracy'])} located, "
                                 f"{_pct(summary['byzantine_accuracy_unlocated'])} not; {_pct(summary['byzantine_located'])} found")]
          if "byzantine_accuracy" in summary else []),
        ("startup / training", f"{summary['startup_seconds']:.1f} s / {summary['train_seconds']:.1f} s"),
        ("base model", f"{summary['base_model_id']} ({summary['base_model_source']})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _sampled(summary, e: int) -> str:
    """`` (a sample of P of the C(n, e) patterns)`` where e was scored over a sample, else nothing."""
    scored = summary.get(f"patterns_scored_e{e}")
    total = math.comb(int(summary["k"]) + int(summary["r"]), e)
    return f" (a seeded sample of {int(scored)} of the {total} patterns)" if scored is not None and scored < total else ""


def _below_base_rate(rebuilt, majority) -> str:
    """A warning when rebuilt answers are worse than always answering the most frequent class."""
    if rebuilt is None or majority is None or rebuilt >= majority:
        return ""
    return f"  (WARNING: rebuilt answers below the base rate {_pct(majority)} of always answering the most frequent class)"


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def json_text(summary: Any) -> str:
    """What ``--json`` prints, for every command: one JSON object, the tables' JSON columns (``config``,
    ``replica_nodes``, ``versions``, ``settings``, ...) nested as objects, not as escaped strings."""
    from ..results import decode_json_columns

    return json.dumps(decode_json_columns(summary), sort_keys=True, default=str)


def print_json(summary: Any) -> None:
    print(json_text(summary))


def emit(summary: Dict[str, Any], as_json: bool) -> None:
    print(format_summary(summary))
    if as_json:
        print_json(summary)
    sys.stdout.flush()



def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    parser.add_argument("--smoke-test", action="store_true", help="one tiny epoch on CPU, to check the set-up")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def version_text() -> str:
    from .. import __version__

    return f"parity-ray {__version__}"
