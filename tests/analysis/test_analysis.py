"""The analysis package on a real experiment's tables: numbers cross-checked between tables, figures labelled."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from parity_ray import analysis
from parity_ray.analysis.tables import OUTCOMES


@pytest.fixture(scope="module")
def tables(small_experiment):
    return analysis.load(small_experiment.uri)


@pytest.fixture(scope="module")
def breakdown(tables):
    return analysis.erasure_breakdown(tables.predictions)


def test_load_accepts_the_tables_folder_too(small_experiment, tables):
    again = analysis.load(small_experiment.uri + "/tables")
    pd.testing.assert_frame_equal(again.runs, tables.runs)
    assert not tables.simulations.empty and not tables.queries.empty


def test_degraded_accuracy_table_keeps_unavailable_cells_marked(tables):
    table = analysis.degraded_accuracy_table(tables.runs)
    assert len(table) == len(tables.runs) == 4
    assert table[["dataset", "encoder"]].values.tolist() == [
        ["digits", "addition"], ["digits", "concatenation"], ["speech-commands", "addition"], ["speech-commands", "concatenation"]]
    done = table[table["status"] == "COMPLETED"]
    missing = table[table["status"] == "UNAVAILABLE"]
    assert len(done) == 2 and (done["note"] == "").all()
    assert missing["note"].str.contains("not found").all() and missing["degraded_accuracy"].isna().all()
    runs = tables.runs.set_index("run_id")
    for row in done.itertuples():
        assert row.degraded_accuracy == runs.loc[row.run_id, "degraded_accuracy"]
        assert row.accuracy_drop == pytest.approx(row.available_accuracy - row.degraded_accuracy)
    dropped = analysis.degraded_accuracy_table(tables.runs, failed="drop")
    assert dropped["run_id"].tolist() == done["run_id"].tolist()


def test_learning_curves_end_at_the_recorded_best_epoch(tables):
    curves = analysis.learning_curves(tables.epochs)
    done = tables.runs[tables.runs["status"] == "COMPLETED"]
    assert len(curves) == len(done) * 3 * 8  # runs x splits x epochs
    for run in done.itertuples():
        test = curves[(curves["run_id"] == run.run_id) & (curves["split"] == "test")].set_index("epoch")
        assert list(test.index) == list(range(1, 9))
        assert test.loc[run.best_epoch, "overall_top1"] == pytest.approx(run.degraded_accuracy)
    only = analysis.learning_curves(tables.epochs, splits=["val"], metrics=["loss"])
    assert set(only["split"]) == {"val"} and list(only.columns) == ["run_id", "split", "epoch", "loss"]


def test_erasure_breakdown_agrees_with_the_runs_table(tables, breakdown):
    runs = tables.runs.set_index("run_id")
    agreement = breakdown.agreement.set_index("run_id")
    for run_id, row in agreement.iterrows():
        # predictions.parquet and runs.parquet are written by different code paths: same decodes, same numbers.
        assert row["degraded_accuracy"] == pytest.approx(runs.loc[run_id, "degraded_accuracy"], abs=1e-6)
        assert row["agreement_with_base"] == pytest.approx(runs.loc[run_id, "reconstruction_accuracy"], abs=1e-6)
        assert row["base_accuracy"] == pytest.approx(runs.loc[run_id, "available_accuracy"], abs=0.01)
        assert row[OUTCOMES].sum() == row["decodes"]
        assert row["instances"] == 297  # every digits test image is decoded (the last group wraps around)
    assert breakdown.by_class.groupby("run_id")["decodes"].sum().to_dict() == agreement["decodes"].to_dict()
    assert set(breakdown.by_class["label"]) == set(range(10))
    failing = breakdown.by_class[breakdown.by_class["failures"] > 0]
    assert failing["most_confused_with"].notna().all() and (failing["most_confused_with"] != failing["label"]).all()
    assert set(breakdown.by_position["position"]) == {0, 1} and set(breakdown.by_position["pattern"]) == {"0", "1"}
    assert len(breakdown.instances) == 2 * 297


def test_kl_separates_decodes_that_change_the_answer(breakdown):
    kl = breakdown.kl
    assert (kl[["mean_kl", "median_kl", "p90_kl", "p99_kl", "max_kl"]] >= 0).all().all()
    assert (kl["median_kl"] <= kl["p90_kl"]).all() and (kl["p99_kl"] <= kl["max_kl"]).all()
    assert (kl["mean_kl_disagreeing"] > kl["mean_kl_agreeing"]).all()


def test_latency_summary_and_cdf_match_the_simulation(tables):
    summary = analysis.latency_summary(tables.simulations)
    assert summary["mode"].tolist() == ["coded", "replication"]
    assert (summary["direct"] + summary["decoded"] + summary["failed"] == summary["measured"]).all()
    assert summary.loc[summary["mode"] == "coded", "decoded"].iloc[0] > 0  # the straggler was covered by decoding
    cdf = analysis.latency_cdf(tables.queries)
    for row in summary.itertuples():
        part = cdf[cdf["mode"] == row.mode]
        assert len(part) == row.direct + row.decoded
        assert np.all(np.diff(part["latency_ms"]) >= 0) and np.all(np.diff(part["fraction"]) > 0)
        assert part["fraction"].iloc[-1] == pytest.approx((row.direct + row.decoded) / row.measured)
        assert np.percentile(part["latency_ms"], 99) == pytest.approx(row.p99_ms)
    assert analysis.latency_cdf(tables.queries, simulation_ids=["no-such-simulation"]).empty


def test_latency_tables_of_an_experiment_without_simulations(small_experiment):
    bare = analysis.load(small_experiment.no_simulation)
    assert bare.simulations.empty and bare.queries.empty
    assert analysis.latency_summary(bare.simulations).empty
    assert "p99_ms" in analysis.latency_summary(bare.simulations).columns
    assert analysis.latency_cdf(bare.queries).empty


def test_run_labels_name_what_differs(tables):
    done = tables.runs[tables.runs["status"] == "COMPLETED"]
    assert sorted(analysis.run_labels(done).values()) == ["addition", "concatenation"]
    assert sorted(analysis.run_labels(tables.runs).values()) == [
        "digits addition", "digits concatenation", "speech-commands addition", "speech-commands concatenation"]


def _check_axes(fig, expected_panels: int) -> None:
    axes = fig.get_axes()
    assert len(axes) == expected_panels
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert "(" in ax.get_ylabel()  # every y axis names its unit
        assert ax.has_data()


def test_figures_are_labelled_and_render_to_png(tables, breakdown):
    done = tables.runs[tables.runs["status"] == "COMPLETED"]
    labels = analysis.run_labels(done)
    figs = {
        "accuracy": (analysis.degraded_accuracy_figure(analysis.degraded_accuracy_table(tables.runs)), 1),
        "curves": (analysis.learning_curves_figure(analysis.learning_curves(tables.epochs), labels, "mse"), 2),
        "erasures": (analysis.erasure_figure(breakdown, labels), 3),
        "latency": (analysis.latency_cdf_figure(analysis.latency_cdf(tables.queries)), 2),
    }
    for name, (fig, panels) in figs.items():
        _check_axes(fig, panels)
        png = analysis.to_png(fig)
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    curves = figs["curves"][0].get_axes()
    assert len(curves[0].get_lines()) == 2 * len(done)  # train + val loss per run
    assert figs["curves"][0].get_axes()[0].get_ylabel() == "mse loss (squared error)"
    # Legends sit outside the axes (one figure legend under the panels), never over data.
    assert {t.get_text() for t in figs["latency"][0].legends[0].get_texts()} == {"coded", "replication"}
    assert all(ax.get_legend() is None for ax in figs["latency"][0].get_axes() + figs["erasures"][0].get_axes())
    assert "ms" in figs["latency"][0].get_axes()[0].get_xlabel()


def test_code_comparison_marks_the_best_code_of_each_cell_at_equal_redundancy():
    import pandas as pd

    def run(run_id, k, r, encoder, decoder, family, systematic, worker, degraded, status="COMPLETED"):
        return {"run_id": run_id, "status": status, "dataset": "mnist", "model": "lenet5", "k": k, "r": r,
                "encoder": encoder, "decoder": decoder, "code_family": family, "systematic": systematic,
                "worker": worker, "available_accuracy": 0.99, "degraded_accuracy": degraded,
                "degraded_accuracy_e1": degraded, "all_accuracy_e1": None if degraded is None else (degraded + 0.99 * (k - 1)) / k,
                "degraded_accuracy_e2": degraded - 0.1 if r >= 2 and degraded else None,
                "val_degraded_accuracy": None if degraded is None else degraded - 0.01, "byzantine": 0,
                "majority_accuracy": 0.45, "all_accuracy_e0": 0.99 if systematic else 0.95}

    runs = pd.DataFrame([
        run("a", 8, 1, "addition", "subtraction", "parity-models", True, "trained", 0.41),
        run("b", 8, 1, "berrut", "berrut", "berrut", False, "base", 0.85),
        run("c", 4, 2, "mlp", "mlp", "learned", True, "base", 0.60),
        run("d", 4, 2, "berrut", "berrut", "berrut", True, "trained", 0.70),
        run("e", 4, 2, "addition", "subtraction", "parity-models", True, "trained", None, status="ERROR"),
    ])
    table = analysis.code_comparison_table(runs)
    assert list(table["run_id"]) == ["b", "a", "d", "c"]  # by redundancy (1/8 before 2/4), then family
    assert table.set_index("run_id")["best"].to_dict() == {"a": "", "b": "best", "c": "", "d": "best"}
    assert table.set_index("run_id").loc["b", "code"] == "berrut (non-systematic, F)"
    assert table.set_index("run_id").loc["a", "code"] == "addition (systematic, trained)"
    assert ["degraded_accuracy_e1", "all_accuracy_e1", "degraded_accuracy_e2"] == [
        c for c in table.columns if c.endswith(("_e1", "_e2"))]
    # rebuilt answers worse than always answering the most frequent class are flagged, per e
    assert table.set_index("run_id")["below_base_rate"].to_dict() == {"a": "e1", "b": "", "c": "", "d": ""}
    assert list(table.columns[table.columns.str.startswith("all_accuracy")]) == ["all_accuracy_e0", "all_accuracy_e1"]
    # chosen on validation only: with no validation figure there is no winner (never the test figure)
    unranked = analysis.code_comparison_table(runs.drop(columns="val_degraded_accuracy"))
    assert set(unranked["best"]) == {""}
    # a Byzantine run is its own cell, labelled as such, even when it scores lower
    byzantine = pd.DataFrame([{**runs.iloc[1].to_dict(), "run_id": "f", "byzantine": 1, "val_degraded_accuracy": 0.5}])
    table = analysis.code_comparison_table(pd.concat([runs, byzantine])).set_index("run_id")
    assert table.loc["f", "best"] == "best" and table.loc["b", "best"] == "best"
    assert table.loc["f", "code"] == "berrut (non-systematic, F, byzantine 1)"


def test_a_larger_parity_model_is_its_own_code_with_its_cost_beside_it():
    """Two addition codes in one cell, one with a parity model four times as wide: two codes, each
    with the parity architecture, parameters and FLOPs per coded query from the runs table."""
    from parity_ray.run_tables import parity_cost_columns

    rows = []
    for run_id, parity in (("own", "lenet5"), ("wide", "lenet5-wide")):
        config = {"dataset": "mnist", "model": "lenet5", "parity_model": parity, "k": 8, "r": 1}
        rows.append({**config, "run_id": run_id, "status": "COMPLETED", "encoder": "addition", "decoder": "subtraction",
                     "systematic": True, "worker": "trained", "code_family": "parity-models", "loss": "mse",
                     "available_accuracy": 0.99, "majority_accuracy": 0.11, "degraded_accuracy_e1": 0.5,
                     "val_degraded_accuracy": 0.5, **parity_cost_columns(config)})
    table = analysis.code_comparison_table(pd.DataFrame(rows)).set_index("run_id")
    assert table.loc["own", "code"] == "addition (systematic, trained)"
    assert table.loc["wide", "code"] == "addition (systematic, trained lenet5-wide)"
    assert table.loc["wide", "parity_params"] > 10 * table.loc["own", "parity_params"] > 0
    assert table.loc["wide", "parity_flops"] > 10 * table.loc["own", "parity_flops"] > 0
    columns = list(table.columns)
    assert columns.index("parity_flops") < columns.index("degraded_accuracy_e1")  # beside the accuracy

    # the report: one table per base architecture, each code with its cost
    from types import SimpleNamespace

    from parity_ray.analysis.report.sections import _codes_section

    vit = [{**row, "run_id": f"vit-{row['run_id']}", "model": "vit"} for row in rows]
    page = _codes_section(SimpleNamespace(runs=pd.DataFrame(rows + vit)))
    assert page.count('<h3 class="base-architecture">') == 2 and "F = lenet5" in page and "F = vit" in page
    assert page.index("F = lenet5") < page.index("F = vit") and "lenet5-wide" in page


# --------------------------------------------------------------------------- per-instance views


def test_differing_decodes_are_the_lost_fixed_and_different_ones(tables, breakdown):
    differing = analysis.differing_decodes(tables.predictions)
    agreement = breakdown.agreement.set_index("run_id")
    counts = differing.groupby("run_id")["outcome"].value_counts().unstack(fill_value=0)
    for run_id, row in agreement.iterrows():
        for outcome in ("lost_by_decoding", "fixed_by_decoding", "different_mistake"):
            assert counts.loc[run_id].get(outcome, 0) == row[outcome]
    assert (differing["decoded_prediction"] != differing["base_prediction"]).all()
    assert differing["kl_base_decoded"].is_monotonic_decreasing  # most surprising first
    assert set(differing["pattern"]) <= {"0", "1"} and (differing["erasures"] == 1).all()  # v1 read as v2


def test_compare_runs_counts_every_test_image_once(tables):
    done = tables.runs[tables.runs["status"] == "COMPLETED"]["run_id"].tolist()
    comparison = analysis.compare_runs(tables.predictions, done[0], done[1])
    table = comparison.table.set_index("outcome")
    assert table["instances"].sum() == len(comparison.instances) == 297
    assert table["fraction"].sum() == pytest.approx(1.0)
    assert len(comparison.flips) == table.loc["only_a", "instances"] + table.loc["only_b", "instances"]
    summary = analysis.instance_summary(tables.predictions).set_index(["run_id", "test_index"])
    for row in comparison.flips.head(20).itertuples():
        right_a = summary.loc[(done[0], row.test_index), "correct"] > 0.5
        right_b = summary.loc[(done[1], row.test_index), "correct"] > 0.5
        assert row.outcome == ("only_a" if right_a and not right_b else "only_b")
    swapped = analysis.compare_runs(tables.predictions, done[1], done[0]).table.set_index("outcome")["instances"]
    assert swapped["only_a"] == table.loc["only_b", "instances"] and swapped["both_right"] == table.loc["both_right", "instances"]
    with pytest.raises(ValueError, match="no decodes with 2 erasure"):
        analysis.compare_runs(tables.predictions, done[0], done[1], erasures=2)


def test_lineage_hangs_every_run_under_its_base_model(tables):
    tree = analysis.lineage(tables.runs, tables.base_models)
    assert len(tree) == len(tables.runs)
    done = tree[tree["status"] == "COMPLETED"]
    assert done["base_model_id"].notna().all() and done["base_test_accuracy"].between(0.5, 1).all()
    assert (done["code_family"] == "parity-models").all()  # addition and concatenation with trained parity models
    assert tree[tree["status"] == "UNAVAILABLE"]["base_model_id"].isna().all()


def test_instance_figure_shows_the_group_the_coded_query_and_the_scores(tables):
    decode = analysis.differing_decodes(tables.predictions).iloc[0]
    run = tables.runs.set_index("run_id", drop=False).loc[decode["run_id"]]
    fig = analysis.instance_figure(run, tables.predictions, decode)
    axes = fig.get_axes()
    assert len(axes) == 2 + 1 + 1  # k=2 group images, r=1 coded query, scores
    assert [ax.images[0].get_array().shape[:2] for ax in axes[:3]] == [(8, 8)] * 3
    assert "rebuilt" in axes[int(decode["position"])].get_title() and "worker 2" in axes[2].get_title()
    assert axes[3].get_ylabel().startswith("softmax probability (%)")
    assert analysis.to_png(fig).startswith(b"\x89PNG")


def _as_schema_v2(predictions: pd.DataFrame) -> pd.DataFrame:
    """The single-erasure rows in the v2 shape (a v1 table converted), plus made-up e=2 rows."""
    if "parity" in predictions:
        v2 = predictions.drop(columns=["parity"]).assign(erasures=np.int16(1), pattern=predictions["position"].astype(str))
    else:
        v2 = predictions[predictions["erasures"] == 1].reset_index(drop=True)
    top5 = lambda first: [np.array([c, (c + 1) % 10, (c + 2) % 10, (c + 3) % 10, (c + 4) % 10], dtype="int16") for c in first]
    probs = [np.array([0.6, 0.2, 0.1, 0.06, 0.04], dtype="float32")] * len(v2)
    v2 = v2.assign(base_top5=top5(v2["base_prediction"]), decoded_top5=top5(v2["decoded_prediction"]),
                   base_top5_probabilities=probs, decoded_top5_probabilities=probs)
    twice = v2.assign(erasures=np.int16(2), pattern="0,2", decoded_prediction=(v2["decoded_prediction"] + 1) % 10)
    return pd.concat([v2, twice], ignore_index=True)


def test_schema_v2_predictions_and_runs(tables, tmp_path):
    from parity_ray.analysis import explorer

    v2 = _as_schema_v2(tables.predictions)
    breakdown = analysis.erasure_breakdown(v2)
    assert {"erasures", "pattern", "position"} <= set(breakdown.by_position.columns)
    assert set(breakdown.by_position["pattern"]) == {"0", "1", "0,2"}
    differing = analysis.differing_decodes(v2)
    assert {"base_top5", "decoded_top5"} <= set(differing.columns) and set(differing["erasures"]) == {1, 2}
    done = tables.runs[tables.runs["status"] == "COMPLETED"]["run_id"].tolist()
    assert analysis.compare_runs(v2, done[0], done[1], erasures=2).table["instances"].sum() == 297

    runs = tables.runs.assign(code_family="parity-models", systematic=True, worker="trained",
                              redundancy=tables.runs["r"] / tables.runs["k"], degraded_accuracy_e1=tables.runs["degraded_accuracy"],
                              degraded_accuracy_e2=0.5, degraded_accuracy_e3=np.nan)
    tree = analysis.lineage(runs, tables.base_models)
    assert set(tree["code_family"]) == {"parity-models"} and "degraded_accuracy_e2" in tree

    class Loaded:  # what results.load returns, with the v2 tables
        pass

    loaded = Loaded()
    loaded.runs, loaded.predictions = runs, v2
    built = explorer.build(loaded, tmp_path, max_thumbnails=5)
    assert [r["erasures"] for r in built["manifest"]["runs"]] == [[1, 2], [1, 2]]
    text = (tmp_path / "data" / "run-0.js").read_text()
    data = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert data["patterns"] == ["0", "1", "0,2"] and len(data["rows"]["base_top5"]) == 5 * len(data["rows"]["group"])
    assert data["images"]["status"] == "ok" and data["images"]["shown"] == 5 and data["images"]["capped"]
    assert sum(data["rows"]["thumb"]) >= 5 and set(data["summaries"]) == {"1", "2"}


def test_latency_summary_keeps_the_order_the_modes_ran_in():
    """No hand-kept list of mode names orders the table: coded-hedged (once sorted last) stays where it ran."""
    rows = [{column: 0 for column in analysis.tables.LATENCY_COLUMNS} for _ in range(5)]
    for row, (sim, mode) in zip(rows, [("s2", "none"), ("s1", "coded"), ("s1", "coded-hedged"), ("s1", "replication"),
                                       ("s2", "coded-hedged")]):
        row.update(simulation_id=sim, mode=mode)
    summary = analysis.latency_summary(pd.DataFrame(rows))
    assert list(zip(summary.simulation_id, summary["mode"])) == [
        ("s1", "coded"), ("s1", "coded-hedged"), ("s1", "replication"), ("s2", "none"), ("s2", "coded-hedged")]


# --------------------------------------------------------------------------- analysis that keeps apart what differs


def _three_simulations():
    """Three simulations (other runs, rates and stragglers), each with the same two modes."""
    rng = np.random.default_rng(0)
    settings = [("sim-20260101-000000-aaaaaa-111111", "run-a", 40.0, "none", 100),
                ("sim-20260101-000001-bbbbbb-222222", "run-b", 80.0, "slow:replica=0,p=0.3,delay_ms=80", 150),
                ("sim-20260101-000002-cccccc-333333", "run-b", 160.0, "random:p=0.05,delay_ms=200", 200)]
    queries, simulations = [], []
    for simulation_id, run_id, rate, straggler, n in settings:
        for mode in ("coded", "replication"):
            path = rng.choice(["direct", "decoded", "failed"], size=n, p=[0.8, 0.15, 0.05]) if mode == "coded" else \
                np.array(["direct"] * n)
            queries.append(pd.DataFrame({"simulation_id": simulation_id, "mode": mode, "run_id": run_id,
                                         "query_id": np.arange(n), "warmup": np.arange(n) < 10, "path": path,
                                         "latency_ms": rng.lognormal(np.log(rate / 4), 0.5, n),
                                         "correct": rng.random(n) < 0.9}))
            simulations.append({"simulation_id": simulation_id, "repeat": 0, "mode": mode, "run_id": run_id,
                                "straggler": straggler, "rate": rate, "clients": None})
    simulations = pd.DataFrame(simulations)
    simulations["clients"] = simulations["clients"].astype("Int64")  # as stored: null (NA) in an open loop
    return pd.concat(queries, ignore_index=True), simulations


def test_answer_paths_are_per_simulation_never_summed_across_them():
    queries, simulations = _three_simulations()
    paths = analysis.answer_paths(queries, simulations)
    assert len(paths) == 3 * 2  # simulation x mode
    assert list(paths.columns[:6]) == ["simulation_id", "run_id", "rate", "clients", "straggler", "mode"]
    for row in paths.itertuples(index=False):
        own = queries[(queries.simulation_id == row.simulation_id) & (queries["mode"] == row.mode) & ~queries.warmup]
        assert row.direct + row.decoded + row.failed == len(own)  # its own simulation's queries, no other's
        sim = simulations[simulations.simulation_id == row.simulation_id].iloc[0]
        assert (row.run_id, row.rate, row.straggler) == (sim.run_id, sim.rate, sim.straggler)
    by_path = analysis.latency_by_path(queries, simulations)
    assert set(by_path.groupby(["simulation_id", "mode"]).ngroups for _ in [0]) == {6}
    assert by_path["rate"].notna().all() and by_path["straggler"].notna().all()
    labels = analysis.simulation_labels(simulations)
    assert len(set(labels.values())) == 3 and labels[simulations.simulation_id[0]] == "40 qps, none"


def _inside(fig) -> bool:
    fig.canvas.draw()
    box = fig.bbox
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None]
    assert legends
    return all(box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1
               for e in (legend.get_window_extent() for legend in legends))


def test_latency_figure_keys_lines_by_simulation_with_the_legend_inside_the_canvas():
    from parity_ray.analysis import figures

    queries, simulations = _three_simulations()
    cdf = analysis.latency_cdf(queries)
    labels = {sid: f"{label} — a long label that would not fit in four columns"
              for sid, label in analysis.simulation_labels(simulations).items()}
    fig = analysis.latency_cdf_figure(cdf, labels)
    assert _inside(fig)
    lines = fig.get_axes()[0].get_lines()
    assert len(lines) == 6
    styles = [(line.get_color(), str(line.get_linestyle()), str(line.get_dashes() if hasattr(line, "get_dashes") else ""))
              for line in lines]
    assert len({(c, s) for c, s, _ in styles}) == 6  # colour = mode, line style = simulation
    assert len({c for c, _, _ in styles}) == 2
    png = analysis.to_png(fig)
    assert png.startswith(b"\x89PNG")
    # the figures with legends of their own, long labels and all
    tail = _sweep_tail(modes=["none", "replication", "coded"], groups=2)
    assert _inside(figures.sweep_figure(tail, 100.0))
    fits = pd.DataFrame({"sweep_id": ["sweep-" + "x" * 60], "batch_size": [1], "ks": [0.02],
                         "qq_ms": [[[1.0, 1.1], [2.0, 2.2], [3.0, 2.9]]]})
    assert _inside(figures.service_qq_figure(fits))


def _sweep_tail(modes, groups, replicas=None):
    rows = []
    for g in range(groups):
        for mode in modes:
            for rate in (100.0, 200.0, 400.0):
                p999 = 10.0 + rate / 50 + modes.index(mode)
                rows.append({"sweep_id": "sweep-1", "k": 2 + g % 3, "r": 1, "straggler": f"random:p=0.0{g}",
                             "cluster_size": 20 + g // 3, "mode": mode, "rate": rate,
                             "replicas": (replicas or {}).get(mode, 20), "requests_per_query": 1.0, "p50_ms": 5.0,
                             "p99_ms": p999 / 2, "p999_ms": p999, "p999_ms_lo": p999 * 0.9, "p999_ms_hi": p999 * 1.1,
                             "failed": 0, "accuracy": None})
    return pd.DataFrame(rows)


def test_sweep_chart_never_repeats_a_colour_and_dash():
    from parity_ray.analysis import interactive

    modes = ["none", "replication", "coded", "hedged", "coded-hedged", "coded-eager"]
    tail = _sweep_tail(modes, groups=10)  # 60 series, as a user's sweep drew
    (chart,) = interactive.sweep_charts(tail, 100.0)
    series = [trace for trace in chart["data"] if not trace["name"].startswith("target")]
    assert len(series) == 60
    pairs = [(trace["line"]["color"], trace["line"].get("dash", "solid")) for trace in series]
    assert len(set(pairs)) == len(pairs)
    assert len({colour for colour, _ in pairs}) == len(modes)  # colour names the mode
    # past ten colour keys the colours repeat, so the dash moves on: still distinct
    many = [(f"mode{n}", "cell") for n in range(23)] + [(f"mode{n}", "other") for n in range(23)]
    from parity_ray.analysis.figures import series_styles

    assert len(set(series_styles(many).values())) == len(many)


def test_cheapest_mode_is_not_won_by_app_packing():
    """The user's case: none deploys 100 replicas, replication 99 (33 apps of 3 fit a cluster of 100),
    both meet the target with one request a query: the replica count must not decide."""
    from parity_ray.analysis.tables import cheapest_modes, format_cheapest

    tail = _sweep_tail(["replication", "none"], groups=1, replicas={"replication": 99, "none": 100})
    tail["cluster_size"] = 100
    tail.loc[tail["mode"] == "none", "p999_ms"] -= 5  # none is faster at 100 replicas
    tail["p999_ms_lo"], tail["p999_ms_hi"] = tail["p999_ms"] * 0.9, tail["p999_ms"] * 1.1
    tail["settings"] = json.dumps({"target_p999_ms": 100.0})
    cheapest = cheapest_modes(tail)
    assert len(cheapest) == 3 and set(cheapest["mode"]) == {"none"}  # not replication for one replica fewer
    assert set(cheapest["replicas"]) == {100} and not cheapest["equal_replicas"].any()
    assert set(cheapest["meeting"]) == {"none (100 replicas), replication (99 replicas)"}  # both counts shown
    assert "meets_by_interval" in cheapest and set(cheapest["meets_by_interval"]) == {"yes"}
    lines = format_cheapest(cheapest)
    assert "replica counts differ" in lines[1] and "none (100 replicas" in lines[1]
    # a tie on requests and p99.9: the mode with more replicas (closest to equal counts), never the fewer
    tie = tail.copy()
    tie["p999_ms"] = 20.0
    assert set(cheapest_modes(tie, 100.0)["mode"]) == {"none"}
    # fewer requests per query is a real saving: it wins whatever the replica counts
    work = tail.copy()
    work.loc[work["mode"] == "none", "requests_per_query"] = 1.5
    assert set(cheapest_modes(work, 100.0)["mode"]) == {"replication"}
    # at equal counts the comparison is plain
    equal = _sweep_tail(["replication", "none"], groups=1)
    assert cheapest_modes(equal, 100.0)["equal_replicas"].all()
