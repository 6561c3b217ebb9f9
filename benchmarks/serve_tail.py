"""Tail latency under a straggler: every serving mode (coded, coded-eager, coded-hedged, replication, hedged, none), on this machine.

Workload (the published headline's set-up, scaled to one machine): the MNIST k=2 parity run of
the quick grid (addition/subtraction), one base replica slowed on 30% of its batches by +100 ms,
open-loop Poisson load. Steps:

1. for each of ``--tail-rates``: calibrate (replication, no straggler -> its p90; the deadline is
   1.2x it), then the five modes with the straggler: p50, p99, p99.9, (p99.9 - p50), accuracy;
2. the highest rate each mode sustains (throughput >= 90% of the rate actually offered, nothing
   failed, p50 under 4x its lowest-rate p50), stepping through ``--rates``;
3. the frontend's own encode + decode time per query (all of it, divided by the queries served).

The modes of one comparison are deployed at once and take turns of ``--interleave-s`` seconds
(each the same seeded queries at the same times of its own clock), so the background load of a
shared machine falls on every mode alike instead of on whichever ran during a busy minute.

Targets, judged at the first tail rate (the exit status) and printed for every one: coded's
(p99.9 - p50) >= 3.5x smaller than replication's with p50 within 10% of it, coded's p99.9 below
hedged's, the frontend's encode + decode <= 0.3 ms a query, and the highest rate coded sustains
>= 0.9x replication's.

With ``--repeat N`` (3 or more to judge) the tail comparison runs N repetitions (fresh seeds, the
modes' order rotated); every figure is the median over them, every repetition is printed, and the
targets are judged for the better coded policy (``coded`` or the paper's ``coded-eager``).

    python benchmarks/serve_tail.py [--experiment results/q1] [--repeat 3] [--json]
    python benchmarks/serve_tail.py --smoke-test     # digits, one epoch, a few queries, three modes: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity_ray.actors.modes import presented_modes  # noqa: E402
from parity_ray.actors.simulation import SimulationOptions, run_simulation  # noqa: E402
from parity_ray.actors.sweep.presets import coded_policies  # noqa: E402

STRAGGLER = "slow:replica=0,p=0.3,delay_ms=100"
MODES = tuple(presented_modes())  # every registered mode, coded ones first
# The coded policies the targets are judged for (the better of them): coded modes that send no duplicates.
CODED_POLICIES = tuple(coded_policies())


def ensure_experiment(path: str | None, data_root: str, dataset: str = "mnist", epochs: int = 10) -> str:
    """The given experiment, or a fresh quick-grid k=2 run trained here (a minute or two for MNIST)."""
    if path:
        return path
    from parity_ray.tune.experiment import TuneOptions, run_experiment

    os.environ.setdefault("PARITY_RAY_DATA", data_root)
    storage = tempfile.mkdtemp(prefix="serve-tail-")
    options = TuneOptions(space="quick", name="q1", storage=storage, progress=False,
                          overrides=[f"dataset={dataset}", "k=2", "encoder=addition", f"epochs={epochs}"])
    run_experiment(options, log=lambda m: print(m, file=sys.stderr))
    return options.uri


FIGURES = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "mean_ms", "throughput_qps", "offered_qps", "accuracy",
           "decoded_accuracy", "frontend_coder_ms", "frontend_coder_cpu_ms")


def simulate(experiment: str, modes, straggler: str, rate: float, queries: int, deadline_ms: float, data_root: str,
             interleave_s: float = 0.0, dataset: str = "mnist", repeat: int = 1):
    """One simulation (``repeat`` repetitions: fresh seeds, the modes' order rotated); per mode its figures,
    each the median over the repetitions, with every repetition's row under ``repetitions``.

    With ``interleave_s`` (and several modes) every mode's app is up at once and the modes take turns,
    so the background load of a shared machine falls on each alike (replicas then ask for a token 0.05
    CPU each, so that every app fits)."""
    import numpy as np

    interleave = interleave_s if interleave_s and len(modes) > 1 else None
    options = SimulationOptions(experiment=experiment, dataset=dataset, k=2, modes=list(modes), straggler=straggler,
                                rate=rate, queries=queries, warmup=max(min(50, queries), queries // 10), deadline_ms=deadline_ms,
                                data_root=data_root, progress=False, interleave_s=interleave, repeat=repeat,
                                cpus_per_replica=0.05 if interleave else 0.25)
    rows = run_simulation(options, log=lambda _m: None)["modes"]
    merged = {}
    for mode in modes:
        reps = [r for r in rows if r["mode"] == mode]
        median = {f: (float(np.median([r[f] for r in reps])) if all(r[f] is not None for r in reps) else None)
                  for f in FIGURES}
        counts = {c: int(sum(r[c] for r in reps)) for c in ("sent", "measured", "direct", "decoded", "failed", "hedged",
                                                           "groups_encoded", "groups_skipped") if all(r[c] is not None for r in reps)}
        merged[mode] = {**reps[0], **median, **counts, "repetitions": [
            {f: r[f] for f in ("repeat", "p50_ms", "p99_ms", "p999_ms", "accuracy", "failed")} for r in reps]}
    return merged


def tail_comparison(experiment: str, rate: float, args) -> dict:
    """Calibrate the deadline at ``rate`` (no straggler), then the modes under the straggler."""
    if args.deadline_ms is None:
        calm = simulate(experiment, ["replication"], "none", rate, max(min(400, args.queries), args.queries // 4), 1000.0,
                        args.data_root, dataset=args.dataset)
        p90 = calm["replication"]["p90_ms"]
        deadline = args.deadline_factor * p90
        print(f"{rate:g} qps: no-straggler replication p90 {p90:.1f} ms -> deadline {deadline:.1f} ms", file=sys.stderr)
    else:  # given: no calibration run
        p90, deadline = None, args.deadline_ms
    tail = simulate(experiment, list(args.modes), STRAGGLER, rate, args.queries, deadline, args.data_root, args.interleave_s,
                    args.dataset, args.repeat)
    gap = {mode: tail[mode]["p999_ms"] - tail[mode]["p50_ms"] for mode in tail}
    # Judged for the better coded policy (the smaller median tail gap): coded or the paper's coded-eager.
    policy = min((m for m in CODED_POLICIES if m in tail), key=lambda m: gap[m])
    coded, repl, hedged = tail[policy], tail["replication"], tail["hedged"]
    targets = {
        "gap_3_5x_smaller_than_replication": gap["replication"] / max(gap[policy], 1e-9) >= 3.5,
        "p50_within_10pct_of_replication": abs(coded["p50_ms"] - repl["p50_ms"]) <= 0.10 * repl["p50_ms"],
        "p999_below_hedged": coded["p999_ms"] < hedged["p999_ms"],
        "frontend_coder_at_most_0_3ms": (coded["frontend_coder_ms"] or 0.0) <= 0.3,
    }
    return {"rate": rate, "deadline_ms": deadline, "no_straggler_p90_ms": p90, "tail": tail, "gap_ms": gap, "targets": targets,
            "judged_policy": policy, "repeat": args.repeat}


def sustained_rates(experiment: str, deadline: float, args) -> dict:
    """The highest offered rate each mode keeps up with under the straggler (modes interleaved per rate)."""
    sustained = {mode: None for mode in args.modes}
    base_p50: dict = {}
    going = list(args.modes)
    for rate in (float(r) for r in args.rates.split(",")):
        if not going:
            break
        runs = simulate(experiment, going, STRAGGLER, rate, args.rate_queries, deadline, args.data_root, args.interleave_s,
                        args.dataset)
        for mode in list(going):
            m = runs[mode]
            base_p50.setdefault(mode, m["p50_ms"])
            # Sustained: answers keep pace with what was actually offered (Poisson draws vary), nothing
            # failed, and the median has not blown up against the lowest rate's.
            ok = m["failed"] == 0 and (m["throughput_qps"] or 0) >= 0.9 * (m["offered_qps"] or rate) \
                and m["p50_ms"] <= 4 * base_p50[mode]
            print(f"  {mode:<12} {rate:6.0f} qps offered: {m['throughput_qps'] or 0:6.1f} served, p50 {m['p50_ms']:.1f} ms"
                  f" {'ok' if ok else 'saturated'}", file=sys.stderr)
            if ok:
                sustained[mode] = rate
            else:
                going.remove(mode)
    return sustained


def print_comparison(result: dict, sustained: dict, queries: int) -> None:
    tail, gap = result["tail"], result["gap_ms"]
    policy = result["judged_policy"]
    coded, repl, hedged = tail[policy], tail["replication"], tail["hedged"]
    calibrated = ("given" if result["no_straggler_p90_ms"] is None
                  else f"1.2 x no-straggler p90 {result['no_straggler_p90_ms']:.1f} ms")
    print(f"\nstraggler {STRAGGLER}, {result['rate']:g} qps Poisson, {queries} queries a mode, "
          f"deadline {result['deadline_ms']:.1f} ms ({calibrated}); "
          f"{'each figure the median of ' + str(result['repeat']) + ' repetitions; ' if result['repeat'] > 1 else ''}"
          f"targets judged for {policy}, the coded policy with the smaller tail gap")
    print(f"{'mode':<12}{'p50':>8}{'p99':>8}{'p99.9':>8}{'p99.9-p50':>11}{'accuracy':>10}{'decoded':>9}{'max qps':>9}")
    for mode, m in tail.items():
        print(f"{mode:<12}{m['p50_ms']:8.1f}{m['p99_ms']:8.1f}{m['p999_ms']:8.1f}{gap[mode]:11.1f}{m['accuracy']:10.4f}"
              f"{m['decoded']:9d}{sustained.get(mode) or 0:9.0f}")
    if result["repeat"] > 1:
        print("every repetition (p50 / p99 / p99.9 ms):")
        for mode, m in tail.items():
            reps = "; ".join(f"#{r['repeat'] + 1} {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:.1f}"
                             for r in m["repetitions"])
            print(f"  {mode:<12} {reps}")
    mark = {True: "met", False: "MISSED"}
    t = result["targets"]
    print(f"tail gap, replication / {policy}: {gap['replication'] / max(gap[policy], 1e-9):.2f}x (>= 3.5x: "
          f"{mark[t['gap_3_5x_smaller_than_replication']]}); p50 {policy} vs replication: "
          f"{100 * (coded['p50_ms'] / repl['p50_ms'] - 1):+.1f}% (within 10%: {mark[t['p50_within_10pct_of_replication']]}); "
          f"p99.9 {policy} {coded['p999_ms']:.1f} vs hedged {hedged['p999_ms']:.1f} ms ({mark[t['p999_below_hedged']]})")
    print(f"frontend encode + decode per coded query: {coded['frontend_coder_ms']:.3f} ms wall "
          f"({coded['frontend_coder_cpu_ms']:.3f} ms CPU; {coded['groups_encoded']} groups encoded, "
          f"{coded['groups_skipped']} answered before their seal, {mark[t['frontend_coder_at_most_0_3ms']]} <= 0.3 ms); "
          f"decoded-answer accuracy "
          f"{'n/a (none decoded)' if coded['decoded_accuracy'] is None else format(coded['decoded_accuracy'], '.4f')}")
    if sustained.get("coded") and sustained.get("replication"):
        ratio = sustained["coded"] / sustained["replication"]
        print(f"highest rate sustained, coded / replication: {sustained['coded']:g} / {sustained['replication']:g} qps "
              f"= {ratio:.2f} (>= 0.9: {mark[ratio >= 0.9]})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", help="an experiment holding an MNIST k=2 run (default: train one now)")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--tail-rates", default="10,30",
                        help="queries/s for the tail comparison; the targets are judged at the first")
    parser.add_argument("--queries", type=int, default=1500)
    parser.add_argument("--rates", default="10,20,40,80", help="offered rates for the sustainable-rate search")
    parser.add_argument("--rate-queries", type=int, default=300)
    parser.add_argument("--deadline-factor", type=float, default=1.2, help="deadline = factor x no-straggler p90")
    parser.add_argument("--interleave-s", type=float, default=2.0,
                        help="modes take turns of this many seconds on apps deployed at once (0: one mode after another)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions of the tail comparison (fresh seeds, modes' order rotated): figures and "
                             "targets are their medians; 3 or more to judge the targets")
    parser.add_argument("--deadline-ms", type=float, default=None,
                        help="the modes' deadline (default: --deadline-factor x a no-straggler run's p90, measured first)")
    parser.add_argument("--mode", dest="modes", default=",".join(MODES),
                        help="comma-separated modes (default: every registered one); at least the ones the targets "
                             "compare (the module's docstring names them)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke-test", action="store_true",
                        help="digits, one epoch, 10 qps, a few queries, the three modes the targets compare, a fixed "
                             "50 ms deadline: checks the script, judges nothing")
    args = parser.parse_args(argv)
    args.dataset = "mnist"
    if args.smoke_test:
        # no sustained-rate search (its code is the tail comparison's, at more rates), no calibration run
        args.dataset, args.tail_rates, args.queries, args.rates, args.rate_queries, args.interleave_s = \
            "digits", "10", 40, "", 30, 1.0
        args.modes = f"{CODED_POLICIES[0]},replication,hedged"  # the first coded policy and what it is compared with
        args.deadline_ms = 50.0 if args.deadline_ms is None else args.deadline_ms
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    compared = "replication" in args.modes and "hedged" in args.modes  # what the targets compare a coded policy with
    if unknown or not compared or not set(args.modes) & set(CODED_POLICIES):
        parser.error(f"--mode needs replication, hedged and one of {', '.join(CODED_POLICIES)}, from {', '.join(MODES)}"
                     f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}")

    from ray import serve

    from parity_ray.ray_session import ray_running

    experiment = ensure_experiment(args.experiment, args.data_root, args.dataset, 1 if args.smoke_test else 10)
    with ray_running(log_to_driver=False, **({"num_cpus": 2} if args.smoke_test else {})):
        try:
            comparisons = [tail_comparison(experiment, float(rate), args) for rate in args.tail_rates.split(",")]
            sustained = sustained_rates(experiment, comparisons[0]["deadline_ms"], args) if args.rates else {}
        finally:
            serve.shutdown()

    for result in comparisons:
        print_comparison(result, sustained, args.queries)
    headline = dict(comparisons[0]["targets"])
    if sustained.get("coded") is not None or sustained.get("replication") is not None:
        headline["sustained_rate_at_least_0_9x_replication"] = \
            (sustained.get("coded") or 0) >= 0.9 * (sustained.get("replication") or float("inf"))
    if args.json:
        print(json.dumps({"comparisons": comparisons, "max_sustained_qps": sustained, "targets": headline,
                          "experiment": experiment}, default=str))
    return 0 if args.smoke_test or all(headline.values()) else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
