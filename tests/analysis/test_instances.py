"""Fast checks of the report's building blocks: display conversion, thumbnail sheets, labels, the default pair."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from PIL import Image

from parity_ray.analysis import explorer, instances, tables
from parity_ray.analysis.thumbnails import CELLS, SHEET, SheetSet


def test_test_images_are_denormalised_and_coded_queries_stretched():
    x = torch.full((1, 1, 2, 2), (0.5 - 0.25) / 0.5)  # pixel 0.5 normalised with mean 0.25, std 0.5
    assert (instances.to_display(x, mean=[0.25], std=[0.5]) == 128).all()
    coded = torch.tensor([[[[-3.0, 1.0], [5.0, 1.0]]]])  # a sum of images: any range
    shown = instances.to_display(coded, stretch=True)
    assert shown.shape == (1, 2, 2, 3) and shown.min() == 0 and shown.max() == 255


def test_audio_draws_as_a_spectrogram_low_frequencies_at_the_bottom():
    assert instances.display_kind(SimpleNamespace(name="speech-commands")) == "spectrogram"
    assert instances.display_kind(SimpleNamespace(name="x", modality="audio")) == "spectrogram"
    assert instances.display_kind(SimpleNamespace(name="mnist")) == "image"
    x = torch.zeros(1, 1, 4, 3)
    x[0, 0, 0] = 1.0  # frequency row 0 (lowest) loud
    shown = instances.to_display(x, "spectrogram", stretch=True)
    assert shown.shape == (1, 4, 3, 3)
    assert (shown[0, -1] != shown[0, 0]).any() and (shown[0, -1] == shown[0, -1, 0]).all()  # bottom row is row 0


def test_thumbnail_sheets_put_each_image_in_its_cell(tmp_path):
    sheets = SheetSet("digits", 8, 8)
    for index in (0, 17, CELLS + 3):
        sheets.add(index, np.full((8, 8, 3), index % 250, dtype=np.uint8))
    assert sheets.write(tmp_path) == ["images/digits/s0.png", "images/digits/s1.png"]
    first = np.asarray(Image.open(tmp_path / "images/digits/s0.png"))
    assert first.shape == (SHEET * 8, SHEET * 8, 3)
    row, col = divmod(17, SHEET)
    assert (first[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] == 17).all()
    big = SheetSet("cifar-like", 256, 128)
    assert (big.height, big.width) == (64, 32)  # large inputs shrink to 64 px a side
    big.add(0, np.zeros((256, 128, 3), dtype=np.uint8))
    assert big.cells[0].shape == (64, 32, 3)


def test_bitset_marks_the_thumbnailed_test_images():
    bits = np.unpackbits(np.frombuffer(base64.b64decode(explorer._bitset([0, 9, 10], 12)), dtype=np.uint8),
                         bitorder="little")
    assert np.flatnonzero(bits).tolist() == [0, 9, 10]


def test_default_pair_prefers_two_codes_at_the_same_k_and_r():
    runs = [{"i": 0, "dataset": "mnist", "k": 2, "r": 1, "encoder": "addition", "code_family": "addition"},
            {"i": 1, "dataset": "mnist", "k": 4, "r": 1, "encoder": "concatenation", "code_family": "concatenation"},
            {"i": 2, "dataset": "mnist", "k": 2, "r": 1, "encoder": "concatenation", "code_family": "concatenation"},
            {"i": 3, "dataset": "cifar10", "k": 2, "r": 1, "encoder": "addition", "code_family": "addition"}]
    assert explorer.default_pair(runs) == [0, 2]
    assert explorer.default_pair(runs[3:]) is None


def test_run_labels_name_the_setting_that_tells_two_runs_apart():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "dataset": "mnist", "model": "mlp", "k": 2, "r": 1,
                         "encoder": ["addition", "addition", "concatenation"], "decoder": "subtraction",
                         "loss": "mse", "lr": [0.001, 0.0003, 0.001], "batch_size": 64})
    assert tables.run_labels(runs) == {"a": "addition lr=0.001", "b": "addition lr=0.0003", "c": "concatenation lr=0.001"}


def test_outcomes_of_a_v1_table_in_the_v2_shape():
    p = pd.DataFrame({"run_id": "r", "group_id": [0, 0, 1, 1], "position": np.array([0, 1, 0, 1], dtype="int16"),
                      "parity": np.int16(0), "test_index": [3, 4, 5, 6], "label": [1, 1, 2, 2],
                      "base_prediction": [1, 1, 2, 0], "decoded_prediction": [1, 0, 2, 3],
                      "kl_base_decoded": np.float32([0.1, 2.0, 0.2, 3.0])})
    out = tables.with_outcomes(p)
    assert out["outcome"].tolist() == ["both_correct", "lost_by_decoding", "both_correct", "different_mistake"]
    assert out["pattern"].tolist() == ["0", "1", "0", "1"] and (out["erasures"] == 1).all()
    assert instances.group_members(p, "r").to_numpy().tolist() == [[3, 4], [5, 6]]


def test_box_outcomes_score_each_decode_against_the_true_box():
    p = pd.DataFrame({"run_id": "r", "group_id": [0, 0, 1, 1], "position": np.array([0, 1, 0, 1], dtype="int16"),
                      "test_index": [3, 4, 5, 6],
                      "iou_base_true": np.float32([0.9, 0.9, 0.2, 0.3]), "iou_decoded_true": np.float32([0.8, 0.5, 0.75, 0.1]),
                      "iou_decoded_base": np.float32([0.9, 0.4, 0.1, 0.95])})
    out = tables.with_box_outcomes(p)
    assert out["outcome"].tolist() == ["both_hit", "lost_by_decoding", "fixed_by_decoding", "both_miss"]
    assert out["agrees"].tolist() == [True, False, False, True] and out["pattern"].tolist() == ["0", "1", "0", "1"]
    assert tables.BOX_DIFFERING == ["lost_by_decoding", "fixed_by_decoding", "both_miss"]


def test_runs_of_two_experiments_keep_apart_under_qualified_ids():
    from parity_ray.results import Tables

    runs = pd.DataFrame({"experiment": ["a", "b"], "run_id": ["same", "same"], "base_model_id": ["base", "base"],
                         "dataset": "mnist", "model": "mlp", "k": 2, "r": 1, "encoder": ["addition", "concatenation"],
                         "decoder": "subtraction", "loss": "mse", "status": "COMPLETED"})
    predictions = pd.DataFrame({"experiment": ["a", "b"], "run_id": ["same", "same"], "test_index": [0, 0]})
    simulations = pd.DataFrame({"experiment": ["a"], "simulation_id": ["s1"], "run_id": [None]})
    loaded = Tables(runs=runs, epochs=pd.DataFrame(), predictions=predictions, base_models=pd.DataFrame(
        {"experiment": ["a", "b"], "base_model_id": ["base", "base"]}), simulations=simulations)
    qualified = tables.qualify_ids(loaded)
    assert qualified.runs["run_id"].tolist() == ["a/same", "b/same"]
    assert qualified.runs["base_model_id"].tolist() == ["a/base", "b/base"]
    assert qualified.base_models["base_model_id"].tolist() == ["a/base", "b/base"]
    assert qualified.predictions["run_id"].tolist() == ["a/same", "b/same"]
    assert qualified.simulations["simulation_id"].tolist() == ["a/s1"] and qualified.simulations["run_id"].isna().all()
    assert loaded.runs["run_id"].tolist() == ["same", "same"]  # the tables given are left as they were
    assert tables.run_labels(qualified.runs) == {"a/same": "a: addition", "b/same": "b: concatenation"}
    one = Tables(runs=runs.iloc[:1], epochs=pd.DataFrame(), predictions=predictions.iloc[:1], base_models=pd.DataFrame())
    assert tables.qualify_ids(one) is one  # one experiment: its ids as they are


def test_default_pair_prefers_two_experiments_at_the_same_k_and_r():
    runs = [{"i": 0, "experiment": "a", "dataset": "mnist", "k": 2, "r": 1, "encoder": "addition", "code_family": "x"},
            {"i": 1, "experiment": "a", "dataset": "mnist", "k": 2, "r": 1, "encoder": "concatenation", "code_family": "x"},
            {"i": 2, "experiment": "b", "dataset": "mnist", "k": 2, "r": 1, "encoder": "berrut", "code_family": "berrut"},
            {"i": 3, "experiment": "b", "dataset": "mnist", "k": 4, "r": 1, "encoder": "addition", "code_family": "x"}]
    assert explorer.default_pair(runs) == [0, 2]
