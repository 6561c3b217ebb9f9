"""How often the Berrut error locator finds the Byzantine workers, against r, for E = 1, 2, 3.

Each group of k queries is coded with the registered Berrut encoder; every worker runs F; all
k + r outputs return (no stragglers) and E of them, drawn uniformly, get Gaussian noise of
``trainer.BYZANTINE_NOISE`` standard deviations of the outputs (the trainer's injection). The
locating rate is the share of injected outputs the locator names. Two F's:

* ``identity``: F(x) = x on random 10-dimensional queries. The code is then exact, so a correct
  locator must find every error whenever r >= 2E.
* ``lenet5``: the LeNet-5 MNIST base the platform trains (cached), on validation images.

Reference, measured in the same run: the locator of the previous release (one rational fit on the
raw outputs, numerator degree m - 2E - 1), kept below for that purpose only.

Where r reaches the locator's bound (``locator_min_r``), the rate is measured again with stragglers
(uniformly drawn workers that never return): as many as the Berrut decoder's
``tolerated_stragglers`` (what the trainer's ``byzantine_*`` figures use), and all of r beyond the
bound (the earlier rule, reference).

    python benchmarks/locator.py --data-root ../shared/data [--k 4 12] [--groups 200] [--json]
    python benchmarks/locator.py --smoke-test        # identity and a digits MLP, few groups
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity_ray.coders.berrut import (BerrutDecoder, _chebyshev_basis, berrut_points, berrut_weights,  # noqa: E402
                                     locate_errors, locator_min_r)
from parity_ray.evaluation import BYZANTINE_NOISE  # noqa: E402


def previous_locator(outputs: torch.Tensor, points, errors: int) -> torch.Tensor:
    """The previous release's locator (reference only): ``P = y Q`` on raw outputs, deg P = m - 2E - 1."""
    b, m, c = outputs.shape
    z = torch.tensor(list(points), dtype=torch.float64)
    degree_p = max(0, m - 2 * errors - 1)
    basis_p, basis_q = _chebyshev_basis(z, degree_p), _chebyshev_basis(z, errors)
    y = outputs.double()
    y = (y - y.mean(dim=(1, 2), keepdim=True)) / y.std(dim=(1, 2), keepdim=True).clamp_min(1e-9)
    eye = torch.eye(c, dtype=torch.float64)
    p_block = torch.einsum("id,ce->iced", basis_p, eye).reshape(m * c, c * (degree_p + 1)).unsqueeze(0).expand(b, -1, -1)
    q_block = -(y.unsqueeze(-1) * basis_q[:, :errors].unsqueeze(0).unsqueeze(2)).reshape(b, m * c, errors)
    rhs = (y * basis_q[:, errors].view(1, m, 1)).reshape(b, m * c, 1)
    solution = torch.linalg.lstsq(torch.cat([p_block, q_block], dim=2), rhs, driver="gelsd").solution[:, -errors:, 0]
    q_values = basis_q[:, errors].unsqueeze(0) + torch.einsum("id,bd->bi", basis_q[:, :errors], solution)
    return q_values.abs().topk(errors, dim=1, largest=False).indices


@torch.no_grad()
def locating_rates(model, inputs: torch.Tensor, k: int, r: int, errors: int, groups: int, seed: int) -> dict:
    """``{"now": rate, "previous": rate}`` over ``groups`` groups drawn from ``inputs``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + k * 1009 + r * 101 + errors)
    query, workers = berrut_points(k, r, False)
    picks = torch.randperm(len(inputs), generator=generator)[: groups * k].view(-1, k)
    coded = torch.einsum("mk,bk...->bm...", berrut_weights(query, workers).float(), inputs[picks])
    outputs = model(coded.flatten(0, 1)).view(len(picks), k + r, -1).double()
    bad = torch.rand(len(picks), k + r, generator=generator).topk(errors, dim=1, largest=False).indices
    noise = torch.randn(len(picks), errors, outputs.shape[-1], generator=generator, dtype=torch.float64)
    corrupted = outputs.scatter_add(1, bad.unsqueeze(-1).expand(-1, -1, outputs.shape[-1]), noise * BYZANTINE_NOISE * outputs.std())

    def rate(found: torch.Tensor) -> float:
        return float((found.unsqueeze(2) == bad.unsqueeze(1)).any(dim=1).double().mean())

    started = time.perf_counter()
    now = rate(locate_errors(corrupted, workers, errors, query))
    seconds = time.perf_counter() - started
    rates = {"now": now, "previous": rate(previous_locator(corrupted, workers, errors)), "now_ms_per_group": 1e3 * seconds / len(picks)}
    if r >= locator_min_r(k, errors):
        spare = r - locator_min_r(k, errors)
        rates["stragglers"] = BerrutDecoder(k, r, systematic=False, byzantine=errors).tolerated_stragglers
        rates["with_stragglers"] = rate_with_stragglers(outputs, workers, query, errors, rates["stragglers"], generator)
        rates["all_spare_stragglers"] = spare
        rates["with_all_spare_stragglers"] = rate_with_stragglers(outputs, workers, query, errors, spare, generator)
    return rates


def rate_with_stragglers(outputs: torch.Tensor, workers, query, errors: int, stragglers: int, generator) -> float:
    """The locating rate when ``stragglers`` workers of each group, drawn uniformly, never return and E of
    the rest are wrong (what the trainer's ``byzantine_located`` measures)."""
    b, n, c = outputs.shape
    hits = 0
    for group in range(b):
        returned = torch.randperm(n, generator=generator)[stragglers:].sort().values
        y = outputs[group, returned].unsqueeze(0).clone()
        bad = torch.randperm(len(returned), generator=generator)[:errors]
        y[0, bad] += torch.randn(errors, c, generator=generator, dtype=torch.float64) * BYZANTINE_NOISE * outputs.std()
        found = locate_errors(y, [workers[i] for i in returned.tolist()], errors, query)[0].tolist()
        hits += sum(int(i in found) for i in bad.tolist())
    return hits / (b * errors)


def trained_base(dataset: str, model: str, data_root, smoke: bool):
    from parity_ray.base import prepare_base_model
    from parity_ray.config import TrainConfig
    from parity_ray.data import load_data

    config = TrainConfig.from_dict({"dataset": dataset, "model": model, "data_root": data_root,
                                    **({"base_epochs": 2} if smoke else {})}).validate().resolved()
    data = load_data(dataset, data_root=config.data_root, val_size=config.val_size, split_seed=config.seed)
    base, info = prepare_base_model(config, data, torch.device("cpu"), log=lambda m: print(m, file=sys.stderr))
    return base, data.split_tensors("val")[0], info.val_accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None, help="folder holding mnist (default: $PARITY_RAY_DATA)")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 12], help="group sizes to measure")
    parser.add_argument("--errors", type=int, nargs="+", default=[1, 2, 3], help="Byzantine counts E")
    parser.add_argument("--extra-r", type=int, default=None, help="r runs from 2E to 2E + this, step 2 (default: up to 2k)")
    parser.add_argument("--groups", type=int, default=200, help="groups per (F, k, r, E)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--smoke-test", action="store_true", help="few groups, a digits MLP for the trained F")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.k, args.errors, args.extra_r, args.groups = [4], [1], 2, 20
    torch.manual_seed(args.seed)
    models = {"identity": (lambda x: x.flatten(1), torch.randn(5000, 10), None)}
    name = "base-mlp on digits" if args.smoke_test else "lenet5 on mnist"
    base, inputs, accuracy = trained_base("digits" if args.smoke_test else "mnist",
                                          "base-mlp" if args.smoke_test else "lenet5", args.data_root, args.smoke_test)
    models[name] = (base, inputs, accuracy)
    rows = []
    for f_name, (model, inputs, accuracy) in models.items():
        for k in args.k:
            for errors in args.errors:
                top = 2 * k if args.extra_r is None else 2 * errors + args.extra_r
                for r in range(2 * errors, top + 1, 2):
                    rates = locating_rates(model, inputs, k, r, errors, args.groups, args.seed)
                    rows.append({"F": f_name, "k": k, "r": r, "E": errors, **rates})
                    if not args.json:
                        stragglers = (f"  with {rates['stragglers']} stragglers {rates['with_stragglers']:6.1%}, with all "
                                      f"{rates['all_spare_stragglers']} spare {rates['with_all_spare_stragglers']:6.1%}"
                                      if "stragglers" in rates else "  (below the locator's r: refused)")
                        print(f"{f_name:>18}  k={k:<3} E={errors} r={r:<3} located {rates['now']:6.1%}  "
                              f"(previous locator {rates['previous']:6.1%})  {rates['now_ms_per_group']:.2f} ms/group"
                              + stragglers, flush=True)
    identity_ok = all(row["now"] == 1.0 for row in rows if row["F"] == "identity")
    report = {"rows": rows, "groups": args.groups, "noise_sd": BYZANTINE_NOISE, "identity_exact": identity_ok,
              "base_val_accuracy": models[name][2]}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"F = identity located every injected error at every r >= 2E: {identity_ok}")
    return 0 if identity_ok else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
