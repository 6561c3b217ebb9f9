"""Search spaces: expansion, overrides, smoke tests, unavailable cells, spaces importing spaces."""

from __future__ import annotations

import pytest

from parity_ray import UsageError
from parity_ray.config import SMOKE_OVERRIDES
from parity_ray.tune.spaces import builtin_spaces, expand, parse_override


@pytest.mark.parametrize("space", builtin_spaces())
def test_every_builtin_space_expands_into_valid_cells(space):
    expanded = expand(space)
    assert expanded.runnable, space
    ids = [c.run_id for c in expanded.cells]
    assert len(ids) == len(set(ids))
    for cell in expanded.runnable:
        assert cell.config["k"] >= 2 and cell.config["dataset"]


def test_quick_grid_is_digits_and_mnist_k2_k3_both_coders():
    cells = expand("quick").cells
    combos = {(c.config["dataset"], c.config["k"], c.config["encoder"]) for c in cells}
    assert combos == {(d, k, e) for d in ("digits", "mnist") for k in (2, 3) for e in ("addition", "concatenation")}


def test_paper_grid_lists_cells_without_data_or_trainer_support_as_unavailable(tmp_path):
    expanded = expand("paper", [f"data_root={tmp_path}"])
    datasets = {c.config["dataset"] for c in expanded.cells}
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "speech-commands", "cats-v-dogs", "cub-localization"} <= datasets
    unavailable = {c.config["dataset"]: c.unavailable for c in expanded.cells if c.unavailable}
    assert set(unavailable) == {"speech-commands", "cats-v-dogs", "cub-localization"}
    # Missing files are named with every folder searched, in one line.
    assert "validation_list.txt" in unavailable["speech-commands"] and str(tmp_path) in unavailable["speech-commands"]
    assert "cat.<n>.jpg and dog.<n>.jpg" in unavailable["cats-v-dogs"] and "\n" not in unavailable["cats-v-dogs"]
    # The trainer runs regression now: CUB is unavailable only for its missing files, named.
    assert "bounding_boxes.txt" in unavailable["cub-localization"] and str(tmp_path) in unavailable["cub-localization"]
    assert {c.config["k"] for c in expanded.cells} == {2, 3, 4}
    mnist_mlp = [c for c in expanded.runnable if c.config["dataset"] == "mnist" and c.config["model"] == "base-mlp"]
    assert {c.config["epochs"] for c in mnist_mlp} == {500}
    cifar = [c for c in expanded.runnable if c.config["dataset"] == "cifar10"]
    assert {c.config["epochs"] for c in cifar} == {1000}


def test_paper_speech_and_cats_cells_run_when_their_data_are_there(tmp_path, data_root):
    from tests.conftest import write_cats_v_dogs, write_cub

    write_cats_v_dogs(tmp_path / "cats-v-dogs")
    write_cub(tmp_path)
    for root, dataset, model in ((data_root, "speech-commands", "vgg11"), (str(tmp_path), "cats-v-dogs", "tv-resnet18"),
                                 (str(tmp_path), "cub-localization", "tv-resnet18")):
        cells = [c for c in expand("paper", [f"data_root={root}"]).cells if c.config["dataset"] == dataset]
        assert cells and all(c.unavailable is None for c in cells), cells[0].unavailable
        assert {(c.config["model"], c.config["epochs"]) for c in cells} == {(model, 1000)}
        assert {c.config["k"] for c in cells} == {2, 3, 4}


def test_concat_space_changes_paper():
    expanded = expand("concat")
    assert {c.config["encoder"] for c in expanded.cells} == {"concatenation"}
    assert {c.config["k"] for c in expanded.cells} == {2, 4}


def test_set_overrides_turn_lists_into_axes_and_win_over_cells():
    expanded = expand("quick", ["k=[2,3,4]", "epochs=5", "encoder=addition"])
    assert {c.config["k"] for c in expanded.cells} == {2, 3, 4}
    assert {c.config["epochs"] for c in expanded.cells} == {5}  # the cells' own epochs lost to --set
    assert len(expanded.cells) == 2 * 3


def test_class_spec_enters_a_grid():
    expanded = expand("quick", ['parity_model={"cls": "tests.experiment.faulty.AlwaysCrashMLP"}', "dataset=digits"])
    assert all(c.config["parity_model"] == {"cls": "tests.experiment.faulty.AlwaysCrashMLP"} for c in expanded.cells)


def test_smoke_test_shrinks_every_cell():
    expanded = expand("paper", smoke_test=True)
    for cell in expanded.runnable:
        for key, value in SMOKE_OVERRIDES.items():
            assert cell.config[key] == value
    assert len(expanded.cells) == len(expand("paper").cells)  # one short trial per cell


def test_user_space_file_imports_a_builtin_and_changes_it(tmp_path):
    space = tmp_path / "mine.py"
    space.write_text(
        "from ray import tune\nfrom parity_ray.search_spaces import quick\n"
        "defaults = {**quick.defaults, 'loss': 'kl'}\n"
        "param_space = {**quick.param_space, 'k': tune.grid_search([4])}\n"
    )
    expanded = expand(str(space))
    assert {c.config["loss"] for c in expanded.cells} == {"kl"}
    assert {c.config["k"] for c in expanded.cells} == {4}
    assert expanded.fingerprint() != expand("quick").fingerprint()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (("nowhere.py",), "does not exist"),
        (("quik",), "did you mean 'quick'"),
        (("quick", ["epoch=3"]), "did you mean 'epochs'"),
        (("quick", ["k=two"]), "config key 'k' must be int"),
        (("quick", ["k"]), "must look like key=value"),
        (("quick", ["encoder=xor"]), "unknown encoder 'xor'"),
        (("quick", ["k=[1,2]"]), "k must be >= 2"),
    ],
)
def test_bad_space_or_override_is_a_usage_error(args, fragment):
    with pytest.raises(UsageError, match=fragment):
        expand(*args)


def test_parse_override_literals():
    assert parse_override("k=[2,3]") == ("k", [2, 3])
    assert parse_override("lr=0.01") == ("lr", 0.01)
    assert parse_override("dataset=mnist") == ("dataset", "mnist")
    assert parse_override("download=false") == ("download", False)
