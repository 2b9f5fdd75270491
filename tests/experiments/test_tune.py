"""``--tune``: every method tuned on the validation split with the same grid budget."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from dynamic_dropconnect.experiments import execution, suite
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.suite import (
    TUNE_SEED_OFFSET,
    check_tune,
    select_point,
    tune_seeds,
    tuned_names,
)
from dynamic_dropconnect.experiments.training import TrainingDivergedError

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

DIGITS = get_experiment("digits-mlp")


def test_names_each_method_takes() -> None:
    assert tuned_names("none") == ("lr", "weight_decay")
    assert tuned_names("standout") == ("lr", "weight_decay")
    assert tuned_names("dropout") == ("lr", "weight_decay", "p")
    assert tuned_names("dropconnect") == ("lr", "weight_decay", "p")
    assert tuned_names("ddc") == ("lr", "weight_decay", "p", "pg", "tau")
    assert tuned_names("ddc-no-threshold") == ("lr", "weight_decay", "p", "pg")  # tau=0 is it
    assert tuned_names("ddc-learned") == ("lr", "weight_decay", "target")


def test_grid_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match=r"--tune momentum: unknown name; valid: lr, "):
        check_tune({"momentum": [0.9]}, ["ddc"], DIGITS)
    with pytest.raises(ValueError, match=r"none of the methods none, dropout takes pg; valid "):
        check_tune({"pg": [0.5]}, ["none", "dropout"], DIGITS)
    with pytest.raises(ValueError, match=r"valid for them: lr, weight_decay, p$"):
        check_tune({"tau": [0.5]}, ["none", "dropout"], DIGITS)
    with pytest.raises(ValueError, match=r"--tune p=1.0 is not valid: p must be in \[0, 1\)"):
        check_tune({"p": [0.5, 1.0]}, ["dropout"], DIGITS)
    with pytest.raises(ValueError, match=r"--tune lr=0.0 is not valid: lr must be in \(0, 10\]"):
        check_tune({"lr": [0.0]}, ["none"], DIGITS)
    with pytest.raises(ValueError, match="repeats 0.01"):
        check_tune({"lr": [0.01, 0.01]}, ["none"], DIGITS)
    with pytest.raises(ValueError, match="is not valid"):
        check_tune({"weight_decay": [math.nan]}, ["none"], DIGITS)
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0, got -1"):
        DIGITS.with_weight_decay(-1)
    check_tune({"p": [0.3], "lr": [0.01]}, ["none", "ddc"], DIGITS)  # p skipped for none


def test_grid_points_and_what_they_set() -> None:
    from dynamic_dropconnect.experiments.tuning import grid_points as _points
    from dynamic_dropconnect.experiments.tuning import point_label as _label
    from dynamic_dropconnect.experiments.tuning import split_point as _split_point

    tune = {"lr": [0.01, 0.1], "weight_decay": [0.0, 1e-4], "p": [0.3]}
    assert _points(tune, "none") == [
        {"lr": lr, "weight_decay": wd} for lr in (0.01, 0.1) for wd in (0.0, 1e-4)
    ]
    assert len(_points(tune, "dropout")) == 4 and _points({"p": [0.3]}, "none") == [{}]
    point = {"lr": 0.1, "weight_decay": 1e-4, "p": 0.3}
    assert _label(point) == "lr0.1_weight_decay0.0001_p0.3"
    experiment, options = _split_point(DIGITS, point)
    assert (experiment.lr, experiment.weight_decay, options) == (0.1, 1e-4, {"p": 0.3})
    assert experiment.schedule == DIGITS.schedule and experiment.epochs == DIGITS.epochs


def test_tune_seeds_are_their_own() -> None:
    assert tune_seeds([0, 1, 2], 2) == [TUNE_SEED_OFFSET, TUNE_SEED_OFFSET + 1] == [1000, 1001]
    assert tune_seeds([5], 3) == [1005, 1006, 1007]
    with pytest.raises(ValueError, match="overlap the evaluation seeds at 1000"):
        tune_seeds(list(range(1001)), 2)
    with pytest.raises(ValueError, match="--tune-seeds must be a whole number >= 1, got 0"):
        tune_seeds([0], 0)


def test_selection_by_validation_accuracy_then_loss() -> None:
    grid = [
        {"val_acc": 0.90, "val_loss": 0.30},
        {"val_acc": 0.92, "val_loss": 0.50},
        {"val_acc": 0.92, "val_loss": 0.40},  # tie on accuracy: the lower loss
        {"val_acc": 0.92, "val_loss": 0.40},  # full tie: the first in grid order
    ]
    assert select_point(grid) == 2
    assert select_point([{"val_acc": 0.5, "val_loss": math.nan}, {"val_acc": 0.5, "val_loss": 9}])
    with pytest.raises(ValueError, match="empty"):
        select_point([])


class _ValOnly(dict):
    """A run result whose test numbers must not be read (selection may read validation only)."""

    def __getitem__(self, key: str) -> Any:
        if "test" in key:
            raise AssertionError(f"tuning read the test metric {key!r}")
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if "test" in key:
            raise AssertionError(f"tuning read the test metric {key!r}")
        return super().get(key, default)


def _poison_test(run_dir: Path) -> None:
    """Adversarial test numbers in a finished run's files: test accuracy = 1 - val accuracy,
    so a choice by test accuracy would pick the worst validation point."""
    result = json.loads((run_dir / "result.json").read_text())
    for key in ("test_acc_at_best_val", "final_test_acc", "max_test_acc"):
        result[key] = 1.0 - result["best_val_acc"]
    (run_dir / "result.json").write_text(json.dumps(result))
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["test_acc"] = str(1.0 - float(row["val_acc"]))
        row["test_loss"] = str(-float(row["val_loss"]))
    with (run_dir / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _args(out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--methods",
        "none,ddc",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--subset",
        "300",
        "--tune",
        "lr=0.01,0.05",
        "--tune",
        "p=0.2,0.5",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
def test_compare_tunes_on_validation_never_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real = execution.train_run
    specs: dict[Path, Any] = {}

    def spy(spec: Any, run_dir: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real(spec, run_dir, *args, **kwargs)
        specs[Path(run_dir)] = spec
        if "tune" in Path(run_dir).parts:
            _poison_test(Path(run_dir))
            return _ValOnly({k: v for k, v in result.items() if "test" not in k})
        return result

    monkeypatch.setattr(execution, "train_run", spy)
    out = tmp_path / "run"
    assert main(_args(out)) == 0
    capsys.readouterr()

    # Layout: none takes lr only (p skipped), ddc the product lr x p; tune seeds 1000, 1001.
    tuned = sorted(str(p.relative_to(out)) for p in out.glob("tune/*/*/seed*"))
    assert tuned == sorted(
        [f"tune/none/lr{lr}/seed{s}" for lr in ("0.01", "0.05") for s in (1000, 1001)]
        + [
            f"tune/ddc/lr{lr}_p{p}/seed{s}"
            for lr in ("0.01", "0.05")
            for p in ("0.2", "0.5")
            for s in (1000, 1001)
        ]
    )
    record = json.loads((out / "tune.json").read_text())
    assert record["seeds"] == [1000, 1001] and record["grid"] == {
        "lr": [0.01, 0.05],
        "p": [0.2, 0.5],
    }
    for method in ("none", "ddc"):
        grid = record["methods"][method]["grid"]
        # The score is the mean over tune seeds of best_val_acc, recomputed from the files.
        for entry in grid:
            accs = [
                json.loads(
                    (out / f"tune/{method}/{entry['label']}/seed{s}/result.json").read_text()
                )["best_val_acc"]
                for s in (1000, 1001)
            ]
            assert entry["val_acc"] == pytest.approx(sum(accs) / 2)
        best_val = max(grid, key=lambda e: (e["val_acc"], -e["val_loss"]))
        worst_val = min(grid, key=lambda e: e["val_acc"])
        assert record["methods"][method]["selected"] == best_val["point"]
        if best_val["val_acc"] > worst_val["val_acc"]:  # the poisoned test set's favourite
            assert record["methods"][method]["selected"] != worst_val["point"]
    selected = {m: record["methods"][m]["selected"] for m in ("none", "ddc")}
    assert set(selected["none"]) == {"lr"} and set(selected["ddc"]) == {"lr", "p"}

    # The evaluation runs were trained at the chosen point, on the evaluation seed only.
    for method in ("none", "ddc"):
        spec = specs[out / "runs" / method / "seed0"]
        assert spec.seed == 0 and spec.experiment.lr == selected[method]["lr"]
        options = {k: v for k, v in selected[method].items() if k != "lr"}
        assert spec.experiment.method_options.get(method, {}) == options
        settings = json.loads((out / "runs" / method / "seed0" / "result.json").read_text())[
            "settings"
        ]
        assert settings["lr"] == selected[method]["lr"]
        assert settings["method_options"].get(method, {}) == options  # self-describing run
    config = json.loads((out / "config.json").read_text())
    assert config["tune"]["grid"] == record["grid"] and config["tune"]["seeds"] == [1000, 1001]
    assert config["tuned"] == selected
    assert config["settings"]["lr"] == DIGITS.lr  # the experiment's, not a tuned one

    summary = json.loads((out / "results.json").read_text())
    assert summary["summary"]["methods"]["ddc"]["tuned"] == selected["ddc"]
    assert summary["tuning"]["methods"]["ddc"]["grid"][0]["val_acc"] > 0
    table = (out / "results.md").read_text()
    assert "tuned (on validation)" in table and "## Tuning" in table
    lr, p = selected["ddc"]["lr"], selected["ddc"]["p"]
    assert f"| **ddc** | 1 | lr={lr:g}, p={p:g} |" in table
    assert (out / "plots" / "forest.png").stat().st_size > 1000


@pytest.mark.slow
def test_tune_resume_same_grid_and_refusal_of_another(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = _args(out, "--tune-seeds", "1")
    args[args.index("2")] = "1"  # one epoch
    assert main(args) == 0
    before = (out / "tune.json").read_text()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # the same flags: nothing retrained, same choice
    assert (out / "tune.json").read_text() == before
    other = [a if a != "lr=0.01,0.05" else "lr=0.01,0.02" for a in args]
    assert main([*other, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "tune: --tune lr=0.01,0.05 --tune p=0.2,0.5 on tune seeds [1000]" in err
    assert "-> --tune lr=0.01,0.02" in err
    assert (out / "tune.json").read_text() == before  # nothing written
    # Without --tune flags, --resume takes the tuning from config.json: nothing is retrained.
    untuned = [a for a in args if a not in ("--tune", "lr=0.01,0.05", "p=0.2,0.5")]
    assert main([*untuned, "--resume"]) == 0
    assert (out / "tune.json").read_text() == before


def test_cli_refuses_bad_tune_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "x"
    base = ["compare", "--methods", "none,dropout", "--out", str(out), "--quiet"]
    assert main([*base, "--tune", "pg=0.5"]) == 2
    assert "none of the methods none, dropout takes pg" in capsys.readouterr().err
    assert main([*base, "--tune", "lr=0.1", "--tune", "lr=0.2"]) == 2
    assert "--tune lr is given twice" in capsys.readouterr().err
    assert main([*base, "--tune", "lr=0.1", "--tune-seeds", "0"]) == 2
    assert "--tune-seeds must be a whole number >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--tune", "lr"])
    assert "expected NAME=V1,V2" in capsys.readouterr().err
    assert main(["sweep", "--out", str(out), "--tune", "p=0.3"]) == 2
    assert "a sweep tunes only lr, weight_decay" in capsys.readouterr().err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_sweep_tunes_cells_and_matched_dropconnect_in_parallel(tmp_path: Path) -> None:
    out = tmp_path / "s"
    code = main(
        [
            "sweep",
            "--p",
            "0.3",
            "--pg",
            "0.5",
            "--epochs",
            "1",
            "--subset",
            "300",
            "--tune",
            "lr=0.02,0.05",
            "--tune-seeds",
            "1",
            "--jobs",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.glob("tune/ddc/p0.3_pg0.5_tau0.5/*")) == [
        "lr0.02",
        "lr0.05",
    ]
    assert len(list(out.glob("tune/matched/dropconnect_p*/lr*/seed1000/result.json"))) == 2
    record = json.loads((out / "tune.json").read_text())
    row = json.loads((out / "sweep.json").read_text())[0]
    assert row["tuned"] == record["cells"]["ddc:p0.3_pg0.5_tau0.5"]["selected"]
    assert (
        row["matched_tuned"]
        == record["cells"][f"dropconnect:{row['matched_dropconnect_p']:.2f}"]["selected"]
    )
    result = json.loads((out / "grid/p0.3_pg0.5_tau0.5/seed0/result.json").read_text())
    assert result["settings"]["lr"] == row["tuned"]["lr"]
    table = (out / "sweep.md").read_text()
    assert "DDC tuned" in table and "Holm p" in table and "tuned per cell" in table
    assert (out / "plots" / "forest.png").stat().st_size > 1000


def test_selection_never_picks_a_diverged_point() -> None:
    grid = [
        {"val_acc": math.nan, "val_loss": math.nan},  # a tune seed diverged
        {"val_acc": 0.40, "val_loss": 1.0},
    ]
    assert select_point(grid) == 1
    with pytest.raises(ValueError, match="diverged"):
        select_point([{"val_acc": math.nan, "val_loss": math.nan}])


@pytest.mark.slow
def test_a_diverged_tune_point_is_scored_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Too high a learning rate is what a grid is there to find: the point scores NaN, is never
    chosen, and the evaluation runs go on. A divergence outside tuning still fails the run."""
    real = execution.train_run

    def diverge_at_high_lr(spec: Any, run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        if spec.experiment.lr == 0.05 and spec.method == "ddc":
            raise TrainingDivergedError(f"{run_dir}: training loss is nan in epoch 1")
        return real(spec, run_dir, *args, **kwargs)

    monkeypatch.setattr(execution, "train_run", diverge_at_high_lr)
    out = tmp_path / "run"
    assert main(_args(out, "--tune-seeds", "1")) == 0
    log = capsys.readouterr().out
    assert "diverged (never chosen)" in log
    record = json.loads((out / "tune.json").read_text())["methods"]["ddc"]
    scores = {entry["label"]: entry["val_acc"] for entry in record["grid"]}
    assert all(math.isnan(scores[f"lr0.05_p{p}"]) for p in ("0.2", "0.5"))
    assert record["selected"]["lr"] == 0.01
    assert (out / "runs" / "ddc" / "seed0" / "result.json").exists()

    # Every point diverged: an error naming the method, and no evaluation run.
    monkeypatch.setattr(
        execution,
        "train_run",
        lambda spec, run_dir, *a, **k: (_ for _ in ()).throw(TrainingDivergedError("nan")),
    )
    with pytest.raises(RuntimeError, match="tuning none: every grid point diverged"):
        suite.compare(
            DIGITS.with_epochs(1),
            ["none"],
            [0],
            tmp_path / "all",
            suite.RunOptions(subset=300, progress=False, log=lambda _: None),
            tune={"lr": [0.5, 1.0]},
            tune_seed_count=1,
        )
    assert not (tmp_path / "all" / "runs" / "none" / "seed0" / "result.json").exists()


def test_a_worker_reports_divergence_apart_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing as mp

    def diverge(*_: Any, **__: Any) -> None:
        raise TrainingDivergedError("loss is nan in epoch 3")

    monkeypatch.setattr(execution, "train_run", diverge)
    monkeypatch.setattr(execution, "run_data", lambda *a: None)
    monkeypatch.setattr(execution, "die_with_parent", lambda: None)  # pytest is no worker
    task = execution.Task(execution.RunSpec(DIGITS, "none", 0), Path("unused"))
    receive, send = mp.Pipe(duplex=False)
    execution.worker(task, execution.RunOptions(progress=False), 1, send)
    assert receive.recv() == ("diverged", "loss is nan in epoch 3")
