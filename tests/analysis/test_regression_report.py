"""The report and the analysis tables on a regression (box localisation) experiment: a tiny real CUB run
(tiny files in the CUB_200_2011 layout, each image's box painted in), its real predictions and metrics, as
experiment tables; the explorer's box overlays checked in a real headless browser."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from parity_ray import results, storage
from parity_ray.config import TrainConfig
from parity_ray.trainer import train
from tests.conftest import write_cub


def _table(df: pd.DataFrame, folder, name: str) -> None:
    storage.write_parquet(df, str(folder / "tables" / f"{name}.parquet"),
                          {results.VERSION_KEY: results.SCHEMA_VERSION, "parity_ray.table": name})


@pytest.fixture(scope="module")
def regression_experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub-report")
    _, records = write_cub(root, n_images=12, paint=True)
    folder = tmp_path_factory.mktemp("regression-experiment")
    config = TrainConfig.from_dict(dict(dataset="cub-localization", model="lenet5", k=2, val_size=2, base_epochs=1,
                                        epochs=2, batch_size=2, eval_batch_size=8, device="cpu", num_threads=1,
                                        download=False, data_root=str(root), out=str(folder / "runs"), name="boxes"))
    run = train(config, progress=False, log=lambda _m: None)
    summary, run_id = run.summary, "cub-localization-lenet5-k2-boxes"
    resolved = config.resolved().to_dict()
    row = {**{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in resolved.items()},
           "experiment": "regression", "run_id": run_id, "status": "COMPLETED", "error": None,
           "config_json": json.dumps(config.to_dict()), "space": "test", "base_model_id": summary["base_model_id"],
           "task": "regression", "available_accuracy": summary["available_accuracy"],
           "degraded_accuracy": summary["degraded_accuracy"], "reconstruction_accuracy": summary["reconstruction_accuracy"],
           "degraded_top5": None, "degraded_mean_iou": summary["degraded_mean_iou"],
           "code_family": "parity-models", "systematic": True, "worker": "trained", "redundancy": 0.5,
           "degraded_accuracy_e1": summary["degraded_accuracy_e1"], "all_accuracy_e1": summary["all_accuracy_e1"],
           "best_epoch": summary["best_epoch"], "best_val_reconstruction": summary["best_val_reconstruction"],
           "final_degraded_accuracy": summary["final_degraded_accuracy"],
           "final_reconstruction_accuracy": summary["final_reconstruction_accuracy"], "epochs_done": summary["epochs"],
           "train_seconds": summary["train_seconds"], "wall_seconds": summary["train_seconds"],
           "versions": json.dumps({"parity_ray": "0.1.0"}), "checkpoint_uri": None, "trial_id": "t0",
           "schema_version": results.SCHEMA_VERSION}
    epochs = [{"run_id": run_id, "epoch": r["epoch"], "split": r["split"], "metric": m, "value": float(v)}
              for r in run.history for m, v in r.items() if m not in ("epoch", "split")]
    predictions = pd.read_parquet(run.run_dir / "predictions.parquet").assign(run_id=run_id)
    base_models = pd.DataFrame([{"base_model_id": summary["base_model_id"], "dataset": "cub-localization", "arch": "lenet5",
                                 "seed": 0, "source": "trained", "val_accuracy": 0.0, "test_accuracy": 0.0,
                                 "train_accuracy": 0.0, "train_seconds": 1.0, "epochs": 1,
                                 "input_norm": json.dumps({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
                                 "weights_uri": ""}])
    _table(pd.DataFrame([row]), folder, "runs")
    _table(pd.DataFrame(epochs), folder, "epochs")
    _table(predictions, folder, "predictions")
    _table(base_models, folder, "base_models")
    return folder, str(root), records


def test_the_report_of_a_regression_experiment_builds_without_class_columns(regression_experiment):
    from parity_ray.analysis.report import build_report

    folder, data_root, _ = regression_experiment
    summary = build_report(str(folder), data_root=data_root)
    page = (folder / "report" / "index.html").read_text()
    assert summary["runs"] == 1
    assert "cub-localization" in page
    assert "IoU" in page  # boxes are scored by IoU, not by class


def test_analysis_tables_score_boxes_by_iou(regression_experiment):
    from parity_ray import analysis

    folder, _, _ = regression_experiment
    tables = results.load(str(folder))
    assert {"decoded_box", "iou_decoded_true"} <= set(tables.predictions.columns)
    agreement = analysis.tables.agreement(tables) if hasattr(analysis.tables, "agreement") else None
    assert agreement is None or len(agreement) == 1


def _frame_box(record) -> list:
    """A record's box as the dataset gives it to the runs: in the 224 x 224 frame its image is resized to
    (computed here from the file's own size, independently of parity_ray.boxes.resize_boxes)."""
    _, _, (width, height), (x, y, w, h), _ = record
    return [x * 224 / width, y * 224 / height, w * 224 / width, h * 224 / height]


OVERLAYS = """Array.from(document.querySelectorAll('#ex-list .card')).map(function (card, n) {
    return {row: +card.dataset.row, tiles: Array.from(card.querySelectorAll('figure.tile.boxed')).map(function (fig) {
        var canvas = fig.querySelector('canvas'), c = canvas.getBoundingClientRect(), boxes = {};
        fig.querySelectorAll('rect[data-box]').forEach(function (rect) {
            var b = rect.getBoundingClientRect();
            boxes[rect.dataset.box] = [b.left - c.left, b.top - c.top, b.width, b.height];
        });
        return {ti: +fig.dataset.testIndex, target: fig.classList.contains('target'), drawn: canvas.dataset.drawn === '1',
                size: [c.width, c.height], boxes: boxes};
    })};
})"""


def test_the_explorer_draws_the_true_base_and_decoded_boxes_over_the_images(regression_experiment, tmp_path):
    """A regression run in the explorer: its decodes with their boxes drawn where they are on the image (checked
    against the dataset's own boxes and against the painted pixels), filters that change the count, no error."""
    import io

    import numpy as np
    from PIL import Image

    from parity_ray.analysis import tables as analysis_tables
    from parity_ray.analysis.report import build_report
    from tests.analysis.browser import Browser
    from tests.analysis.test_report import CHROMIUM, _count, _require_browser, _set

    _require_browser()
    folder, data_root, records = regression_experiment
    out = tmp_path / "report"
    summary = build_report(str(folder), out=str(out), data_root=data_root)
    assert summary["explorer_runs"] == 1 and summary["thumbnail_sheets"] == 2  # the CUB test images + coded queries
    boxes = analysis_tables.with_box_outcomes(results.load(str(folder)).predictions)
    differing = boxes[boxes["outcome"] != "both_hit"]
    assert len(differing) > 0
    test_records = [r for r in records if not r[4]]  # the test split, in image-id order: test_index 0, 1, ...
    expected_true = {i: _frame_box(r) for i, r in enumerate(test_records)}
    by_index = boxes.drop_duplicates("test_index").set_index("test_index")

    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        browser.wait_for("document.body.dataset.explorerCount !== undefined")
        browser.wait_for("document.querySelectorAll('#ex-list canvas').length > 0 && "
                         "document.querySelectorAll('#ex-list canvas:not([data-drawn])').length === 0")
        assert _count(browser) == len(differing)
        assert browser.evaluate("document.querySelector('label[data-task=regression]').hidden") is False
        assert browser.evaluate("document.getElementById('ex-class') === null")  # no classes in this report

        # Every box sits where the dataset puts it: frame (224 x 224) coordinates scaled to the thumbnail's pixels.
        cards = browser.evaluate(OVERLAYS)
        assert len(cards) == len(differing)
        seen_partner = False
        for card in cards:
            assert len(card["tiles"]) == 2  # k = 2: the rebuilt image and its partner
            for tile in card["tiles"]:
                assert tile["drawn"]
                scale = tile["size"][0] / 224
                expected = {"true": expected_true[tile["ti"]]}
                row = by_index.loc[tile["ti"]]
                expected["base"] = [float(v) for v in row["base_box"]]
                if tile["target"]:
                    expected["decoded"] = [float(v) for v in row["decoded_box"]]  # k=2, r=1: one decode per image
                else:
                    seen_partner = True
                for kind, box in expected.items():
                    left, top = max(box[0], 0), max(box[1], 0)  # the overlay clips at the image's edge
                    right, bottom = min(box[0] + box[2], 224), min(box[1] + box[3], 224)
                    want = [left * scale, top * scale, (right - left) * scale, (bottom - top) * scale]
                    got = tile["boxes"][kind]
                    assert np.allclose(got, want, atol=1.01), (tile["ti"], kind, got, want)
                assert set(tile["boxes"]) == set(expected)
        assert seen_partner

        # ... and over the pixels it names: hide the overlays, find the painted box in the drawn thumbnail.
        first = cards[0]["tiles"]
        target = next(t for t in first if t["target"])
        # Plotly draws the charts after the explorer is usable, and each taller than its placeholder moves the
        # explorer down: the picture is taken once they are drawn (and element_png checks the canvas held still).
        browser.wait_for("document.body.dataset.charts !== undefined")
        browser.evaluate("document.querySelectorAll('svg.boxes').forEach(function (s) { s.style.visibility = 'hidden'; })")
        shot = np.asarray(Image.open(io.BytesIO(browser.element_png("#ex-list .card figure.target canvas"))).convert("RGB"))
        browser.evaluate("document.querySelectorAll('svg.boxes').forEach(function (s) { s.style.visibility = ''; })")
        painted = (shot[..., 0] > 170) & (shot[..., 1] > 140) & (shot[..., 2] < 110)
        rows, cols = np.nonzero(painted)
        assert len(rows) > 20
        found = [cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()]
        assert np.allclose(found, target["boxes"]["true"], atol=4), (found, target["boxes"]["true"])

        # The legend is beside the images, never over them.
        overlaps = browser.evaluate("""Array.from(document.querySelectorAll('#ex-list .card')).filter(function (card) {
            var legend = card.querySelector('.box-legend').getBoundingClientRect();
            return Array.from(card.querySelectorAll('canvas')).some(function (c) {
                var b = c.getBoundingClientRect();
                return legend.left < b.right && b.left < legend.right && legend.top < b.bottom && b.top < legend.bottom;
            });
        }).length""")
        assert overlaps == 0
        browser.evaluate("document.getElementById('explorer').scrollIntoView()")
        browser.screenshot(tmp_path / "boxes-explorer.png", full_page=False)

        # Filters: rebuilt slot, outcome, IoU range; the visible count follows pandas.
        _set(browser, "ex-position", 1)
        assert _count(browser) == int((differing["position"] == 1).sum()) < len(differing)
        _set(browser, "ex-position", "")
        cut = float(np.median(differing["iou_decoded_true"]))
        _set(browser, "ex-iou-min", cut)
        want = int((differing["iou_decoded_true"].round(3) >= cut).sum())
        assert _count(browser) == want < len(differing)
        _set(browser, "ex-iou-which", "iou_bt")
        assert _count(browser) == int((differing["iou_base_true"].round(3) >= cut).sum())
        _set(browser, "ex-outcome", "lost_by_decoding")
        assert _count(browser) == int(((differing["outcome"] == "lost_by_decoding")
                                       & (differing["iou_base_true"].round(3) >= cut)).sum())
        browser.evaluate("document.getElementById('ex-reset').click()")
        assert _count(browser) == len(differing)
        shown = browser.evaluate("document.getElementById('ex-status').textContent")
        assert f"{len(differing)} decodes differ" in shown
        # Sorted by IoU decoded vs true, lowest first.
        _set(browser, "ex-sort", "dt-asc")
        order = browser.evaluate("Array.from(document.querySelectorAll('#ex-list .card')).map(function (c) { "
                                 "return +c.dataset.testIndex; })")
        ious = by_index.loc[order, "iou_decoded_true"].round(3).tolist()
        assert ious == sorted(ious)
        browser.screenshot(tmp_path / "boxes-page.png")
        assert browser.errors() == []
    for name in ("boxes-explorer.png", "boxes-page.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_run_vs_run_of_two_regression_experiments(regression_experiment, tmp_path):
    """A report of two experiments of box runs (the same run id in both): run vs run joins their test images
    by hit (IoU >= 0.75 with the true box), lists the flips with the boxes drawn, and links them to the explorer."""
    import shutil

    import numpy as np

    from parity_ray.analysis.report import build_report
    from tests.analysis.browser import Browser
    from tests.analysis.test_report import CHROMIUM, _count, _require_browser

    _require_browser()
    folder, data_root, _ = regression_experiment
    other = tmp_path / "boxes-fixed"
    shutil.copytree(folder / "tables", other / "tables")
    p = pd.read_parquet(other / "tables" / "predictions.parquet")
    fixed = (p["position"] == 0).to_numpy()  # in the second experiment, slot 0's decoded boxes are the true ones
    p["decoded_box"] = [t if f else d for t, d, f in zip(p["true_box"], p["decoded_box"], fixed)]
    p["iou_decoded_true"] = np.where(fixed, np.float32(1.0), p["iou_decoded_true"]).astype("float32")
    _table(p, other, "predictions")
    out = tmp_path / "report"
    summary = build_report([str(folder), str(other)], out=str(out), data_root=data_root)
    assert [e["runs"] for e in summary["experiments"]] == [1, 1] and summary["explorer_runs"] == 2

    first = results.load(str(folder)).predictions
    hit_a = first.groupby("test_index")["iou_decoded_true"].apply(lambda s: (s >= 0.75).mean() > 0.5)
    hit_b = p.groupby("test_index")["iou_decoded_true"].apply(lambda s: (s >= 0.75).mean() > 0.5)
    only_b = int((hit_b & ~hit_a).sum())
    only_a = int((hit_a & ~hit_b).sum())
    assert only_b > 0
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open((out / "index.html").as_uri())
        browser.wait_for("document.body.dataset.compareCount !== undefined")
        assert browser.evaluate("[document.getElementById('cmp-a').value, document.getElementById('cmp-b').value]") == ["0", "1"]
        cells = browser.evaluate("Array.from(document.querySelectorAll('#comparison-table td')).map(function (td) { "
                                 "return [td.dataset.outcome, +td.textContent.split(' ')[0]]; })")
        assert dict(cells)["only_b"] == only_b and dict(cells)["only_a"] == only_a
        assert _count(browser, "compareCount") == only_a + only_b
        assert browser.evaluate("document.getElementById('cmp-class-label').hidden") is True  # no classes to filter
        browser.wait_for("document.querySelectorAll('#cmp-list canvas[data-drawn]').length > 0")
        assert browser.evaluate("document.querySelectorAll('#cmp-list .card rect[data-box=true]').length") == only_a + only_b
        assert "hit" in browser.evaluate("document.querySelector('#cmp-list .card').textContent")
        browser.evaluate("document.getElementById('compare').scrollIntoView()")
        browser.screenshot(tmp_path / "boxes-compare.png", full_page=False)
        assert browser.errors() == []
