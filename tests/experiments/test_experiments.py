"""The reproduction suite end to end: methods, training, resume, the ddc command, torchrun."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import EXPERIMENTS, get_experiment
from dynamic_dropconnect.experiments.methods import METHODS, apply_method
from dynamic_dropconnect.experiments.models import build_model
from dynamic_dropconnect.experiments.training import RunSpec, prepare_data, train_run
from helpers import metrics_without_time

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_regularizes_the_paper_slot(name: str) -> None:
    model = build_model("simplecnn1", num_classes=10, in_channels=1, image_size=28)
    kind = METHODS[name].kind
    if kind == "locked-dropout":  # for recurrent models only: a clear error elsewhere
        with pytest.raises(ValueError, match="needs the locked_slots"):
            apply_method(model, name)
        return
    apply_method(model, name)
    assert isinstance(model.drop1, nn.Dropout) == (kind == "dropout")
    assert isinstance(model.act1, ddc.Standout) == (kind == "standout")
    assert sorted(ddc.regularized_layers(model)) == (
        ["linear1"] if kind in ("ddc", "dropconnect", "ddc-learned") else []
    )
    model(torch.randn(4, 1, 28, 28)).sum().backward()


def test_ablation_options_reach_the_regularizer() -> None:
    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8)
    reg = ddc.regularized_layers(apply_method(model, "ddc-big-weight"))["linear1"]
    assert isinstance(reg, ddc.DynamicDropConnect)
    assert (reg.statistic, reg.direction) == ("weight", "big")


def test_experiment_table_matches_the_spec() -> None:
    vgg = get_experiment("cifar100-vgg")
    assert (vgg.epochs, vgg.lr, vgg.weight_decay, vgg.warmup) == (220, 0.06, 8e-4, 20)
    assert (vgg.crop_padding, vgg.hflip, vgg.rotation) == (4, True, 15.0)
    assert get_experiment("cifar10-alexnet").image_size == 224
    assert len(EXPERIMENTS) == 16  # the paper's 10, digits, MNIST MLP, ResNet, ViT, two text
    short = get_experiment("mnist-simplecnn1").with_epochs(25)
    assert (short.epochs, short.warmup) == (25, 4)  # warmup keeps its share (12/75)


def test_train_size_draws_training_examples_and_keeps_the_whole_test_set() -> None:
    digits = get_experiment("digits-mlp")
    whole = prepare_data(digits, seed=3)
    small = prepare_data(replace(digits, train_size=200), seed=3)
    smaller = prepare_data(replace(digits, train_size=100), seed=3)
    assert len(small.train[0]) + len(small.val[0]) == 200
    assert len(smaller.train[0]) + len(smaller.val[0]) == 100
    assert torch.equal(small.test[0], whole.test[0])  # the test set is not touched
    # one seeded permutation: the 100 examples are among the 200 (a nested data-size axis)
    pool = {tuple(r.flatten().tolist()) for r in torch.cat([small.train[0], small.val[0]])}
    assert all(tuple(r.flatten().tolist()) in pool for r in smaller.train[0])
    # another seed draws other examples; --subset still caps the test set
    other = prepare_data(replace(digits, train_size=200), seed=4)
    assert not torch.equal(other.train[0], small.train[0])
    assert len(prepare_data(replace(digits, train_size=200), seed=3, subset=50).test[0]) == 50


def test_train_size_errors_name_the_bad_value() -> None:
    digits = get_experiment("digits-mlp")
    with pytest.raises(ValueError, match="train_size must be an integer >= 10.*got 5"):
        replace(digits, train_size=5)
    with pytest.raises(ValueError, match="train_size 999999 is more than the 1437 training"):
        prepare_data(replace(digits, train_size=999_999), seed=0)


def _digits_run(tmp: Path, **kwargs: object) -> dict:
    experiment = get_experiment("digits-mlp").with_epochs(4)
    data = prepare_data(experiment, seed=1)
    return train_run(RunSpec(experiment, "ddc", 1), tmp, data, progress=False, **kwargs)


@pytest.mark.slow
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    straight = _digits_run(tmp_path / "a", resume=False)
    partial = _digits_run(tmp_path / "b", stop_after_epoch=2)
    assert not partial["complete"] and partial["epochs"] == 2
    torch.manual_seed(999)  # a different process state must not matter
    resumed = _digits_run(tmp_path / "b", resume=True)
    for key in ("best_val_epoch", "test_acc_at_best_val", "final_test_acc", "max_test_acc"):
        assert resumed[key] == straight[key]

    assert metrics_without_time(tmp_path / "a" / "metrics.csv") == metrics_without_time(
        tmp_path / "b" / "metrics.csv"
    )


@pytest.mark.slow
def test_ddc_compare_end_to_end_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "compare",
            "--methods",
            "none,dropconnect,ddc",
            "--seeds",
            "2",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert set(summary["methods"]) == {"none", "dropconnect", "ddc"}
    assert summary["methods"]["ddc"]["n"] == 2
    table = (out / "results.md").read_text()
    assert "max over epochs (optimistic)" in table and "| **ddc** | 2 |" in table
    for plot in ("learning_curves.png", "drop_rates.png", "drop_prob_hist.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    header = (out / "runs/ddc/seed0/metrics.csv").read_text().splitlines()[0]
    assert "drop_rate/linear1" in header and "mean_drop_prob/linear1" in header
    assert main(["report", str(out)]) == 0
    assert "| **ddc** |" in capsys.readouterr().out


def test_cli_errors_and_listing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", "--methods", "ddc,magic", "--out", str(tmp_path / "x")]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "mnist-simplecnn1" in listing and "ddc-no-zscore" in listing and "cifar10" in listing
    assert main(["data", "list", "digits"]) == 0


@pytest.mark.slow
def test_ddc_synthetic_writes_figure(tmp_path: Path) -> None:
    assert main(["synthetic", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "synthetic.json").read_text())


@pytest.mark.slow
def test_sweep_writes_heatmaps(tmp_path: Path) -> None:
    code = main(
        [
            "sweep",
            "--p",
            "0.2,0.4",
            "--pg",
            "0.3,0.6",
            "--epochs",
            "2",
            "--out",
            str(tmp_path / "s"),
            "--quiet",
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert len(rows) == 4 and {r["p"] for r in rows} == {0.2, 0.4}
    for plot in ("test_acc", "mean_drop_rate", "gain_over_matched"):
        assert (tmp_path / "s" / "plots" / f"sweep_{plot}_p_pg.png").stat().st_size > 1000
    for row in rows:
        # DropConnect at the cell's measured rate, trained on the same seed, beside each cell.
        run = tmp_path / f"s/grid/p{row['p']}_pg{row['pg']}_tau0.5/seed0/metrics.csv"
        with run.open() as f:
            realized = [float(r["drop_rate/linear1"]) for r in csv.DictReader(f)]
        assert row["mean_drop_rate"] == pytest.approx(sum(realized) / len(realized))
        assert row["matched_dropconnect_p"] == round(row["mean_drop_rate"], 2)
        twin = tmp_path / f"s/matched/dropconnect_p{row['mean_drop_rate']:.2f}/seed0/result.json"
        twin_acc = json.loads(twin.read_text())["test_acc_at_best_val"]
        assert row["gain_over_matched"] == pytest.approx(row["test_acc"] - twin_acc)
    table = (tmp_path / "s" / "sweep.md").read_text()
    assert "| 0.2 | 0.3 | 0.5 |" in table and "matched DropConnect p" in table
    assert "Training: 2 epochs, peak lr 0.05, cosine schedule" in table


def test_training_inputs_normalise_augment_and_resize_reproducibly() -> None:
    from dynamic_dropconnect.experiments.training import PreparedData, _inputs

    experiment = replace(get_experiment("cifar10-vgg"), image_size=40, rotation=15.0)
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    data = PreparedData((x, x), (x, x), (x, x), mean, std, 10, 3, 40, "test")
    plain = _inputs(x, data, experiment)
    assert plain.shape == (6, 3, 40, 40) and plain.dtype == torch.float32
    a = _inputs(x, data, experiment, torch.Generator().manual_seed(3))
    b = _inputs(x, data, experiment, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, plain)
