"""The authors' protocol: learning-rate sequences, protocol checks on resume, ``--jobs``."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest

from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.schedules import lr_at_epoch, lr_schedule
from dynamic_dropconnect.experiments.suite import RunOptions, RunsFailedError, compare
from dynamic_dropconnect.experiments.training import (
    ProtocolMismatchError,
    RunSpec,
    prepare_data,
    train_run,
)

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


class KatsuraScheduler:
    """An independent replica of the authors' ``CosineAnnealingWarmupRestarts`` state machine
    (katsura-jp/pytorch-cosine-annealing-with-warmup, as pinned in their requirements), driven
    the way their ``fit`` drives it: built, then ``step()`` after every epoch."""

    def __init__(self, lr: float, first_cycle_steps: int, max_lr: float, warmup_steps: int):
        self.min_lr, self.max_lr, self.warmup = 0.001, max_lr, warmup_steps
        self.cycle_steps = first_cycle_steps
        # _LRScheduler.__init__ calls step() once: step_in_cycle -1 -> 0, lr = base lr ...
        self.step_in_cycle = 0
        self.lr = lr
        # ... then init_lr() overwrites lr and base_lrs with min_lr.
        self.base = self.min_lr
        self.lr = self.min_lr

    def step(self) -> None:
        self.step_in_cycle += 1
        if self.step_in_cycle >= self.cycle_steps:
            self.step_in_cycle -= self.cycle_steps
        k, w, t = self.step_in_cycle, self.warmup, self.cycle_steps
        if k < w:
            self.lr = (self.max_lr - self.base) * k / w + self.base
        else:
            cos = math.cos(math.pi * (k - w) / (t - w))
            self.lr = self.base + (self.max_lr - self.base) * (1 + cos) / 2


def _authors_sequence(lr: float, epochs: int, warmup: int) -> list[float]:
    scheduler = KatsuraScheduler(lr, epochs, lr, warmup)
    rates = []
    for _ in range(epochs):
        rates.append(scheduler.lr)  # the lr the epoch trains with
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "name", ["mnist-simplecnn1", "cifar10-vgg", "norb-alexnet", "norb-vgg", "cifar100-vgg"]
)
def test_authors_schedule_equals_their_scheduler(name: str) -> None:
    experiment = get_experiment(name)
    assert experiment.schedule == "authors"
    expected = _authors_sequence(experiment.lr, experiment.epochs, experiment.warmup)
    assert experiment.learning_rates() == pytest.approx(expected, rel=1e-12, abs=0)


def test_authors_schedule_by_hand() -> None:
    # MNIST: lr 0.001 == min_lr, so every one of the 75 epochs runs at 0.001.
    assert get_experiment("mnist-simplecnn1").learning_rates() == [0.001] * 75
    # CIFAR-10 VGG: lr 0.005, warmup 10, 100 epochs. Epoch 1 at min_lr, +0.0004 per epoch,
    # 0.005 at epoch 11, then cosine over 90 steps; epoch 100 is one step short of min_lr.
    vgg = get_experiment("cifar10-vgg").learning_rates()
    assert vgg[0] == 0.001
    assert vgg[1] == pytest.approx(0.0014)
    assert vgg[5] == pytest.approx(0.003)
    assert vgg[10] == pytest.approx(0.005)
    assert vgg[55] == pytest.approx(0.001 + 0.004 * (1 + math.cos(math.pi * 45 / 90)) / 2)
    assert vgg[55] == pytest.approx(0.003)
    assert vgg[99] == pytest.approx(0.001 + 0.004 * (1 + math.cos(math.pi * 89 / 90)) / 2)
    # NORB AlexNet: lr 2e-4 < min_lr, so the schedule is inverted: 1e-3 -> 2e-4 -> ~1e-3.
    norb = get_experiment("norb-alexnet").learning_rates()
    assert norb[0] == 0.001
    assert norb[1] == pytest.approx(0.0009)  # 1e-3 + (2e-4 - 1e-3) / 8
    assert norb[8] == pytest.approx(0.0002)
    assert min(norb) == pytest.approx(0.0002)
    assert norb[-1] == pytest.approx(0.001 - 0.0008 * (1 + math.cos(math.pi * 66 / 67)) / 2)


def test_cosine_schedule_is_an_explicit_option() -> None:
    rates = lr_schedule("cosine", epochs=10, warmup=2, lr=0.1)
    assert rates[:2] == pytest.approx([0.05, 0.1])
    assert rates[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert get_experiment("digits-mlp").schedule == "cosine"  # our own experiment, labelled
    with pytest.raises(ValueError, match=r"unknown schedule 'step'.*authors, cosine"):
        lr_at_epoch("step", 0, epochs=10, warmup=2, lr=0.1)
    with pytest.raises(ValueError, match=r"warmup must be in \[0, epochs\)"):
        lr_at_epoch("authors", 0, epochs=5, warmup=5, lr=0.1)


def test_shortened_run_keeps_the_schedule_shape(capsys: pytest.CaptureFixture) -> None:
    short = get_experiment("cifar10-vgg").with_epochs(20)
    assert (short.epochs, short.warmup, short.schedule) == (20, 2, "authors")
    rates = short.learning_rates()
    assert rates[0] == 0.001 and rates[2] == pytest.approx(0.005) and rates[-1] > 0.001


@pytest.mark.slow
def test_training_uses_the_schedule_per_epoch(tmp_path: Path) -> None:
    experiment = get_experiment("digits-mlp").with_epochs(10).with_schedule("authors")
    data = prepare_data(experiment, seed=0)
    train_run(RunSpec(experiment, "ddc", 0), tmp_path, data, progress=False)
    with (tmp_path / "metrics.csv").open() as f:
        logged = [float(row["lr"]) for row in csv.DictReader(f)]
    assert logged == pytest.approx(experiment.learning_rates())
    assert logged[0] == 0.001 and max(logged) == pytest.approx(0.05)


@pytest.mark.slow
def test_resume_under_another_protocol_is_refused(tmp_path: Path) -> None:
    cosine = get_experiment("digits-mlp").with_epochs(3)
    data = prepare_data(cosine, seed=0)
    train_run(RunSpec(cosine, "none", 0), tmp_path, data, progress=False, stop_after_epoch=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    authors = cosine.with_schedule("authors")
    with pytest.raises(ProtocolMismatchError, match=r"schedule: 'cosine' -> 'authors'"):
        train_run(RunSpec(authors, "none", 0), tmp_path, data, progress=False, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing lost


@pytest.mark.slow
def test_cli_resume_of_a_directory_made_with_another_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = str(tmp_path / "run")
    common = ["compare", "--methods", "none", "--seeds", "1", "--epochs", "1", "--quiet"]
    assert main([*common, "--out", out]) == 0
    result = (tmp_path / "run/runs/none/seed0/result.json").read_text()
    capsys.readouterr()
    assert main([*common, "--out", out, "--resume", "--schedule", "authors"]) == 2
    err = capsys.readouterr().err
    assert "protocol" in err and "'cosine' -> 'authors'" in err
    assert (tmp_path / "run/runs/none/seed0/result.json").read_text() == result


def test_jobs_errors_name_the_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["compare", "--methods", "none,ddc", "--seeds", "1", "--epochs", "1", "--quiet"]
    assert main([*base, "--jobs", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--jobs must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert main([*base, "--jobs", "3", "--out", str(tmp_path / "b")]) == 2
    assert "--jobs 3 is more than the 2 run(s)" in capsys.readouterr().err
    assert main([*base, "--schedule", "linear", "--out", str(tmp_path / "c")]) == 2
    assert "unknown schedule 'linear'" in capsys.readouterr().err
    assert main([*base, "--lr", "-0.1", "--out", str(tmp_path / "d")]) == 2
    assert "lr must be a positive number, got -0.1" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing was started


@pytest.mark.slow
def test_lr_override_keeps_the_schedule_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mnist = get_experiment("mnist-simplecnn1").with_epochs(10).with_lr(0.01)
    rates = mnist.learning_rates()
    assert rates[0] == pytest.approx(0.001) and max(rates) == pytest.approx(0.01)
    assert rates[mnist.warmup] == pytest.approx(0.01)  # the peak right after the warmup
    after = rates[mnist.warmup :]
    assert all(a > b for a, b in itertools.pairwise(after))  # cosine back towards min_lr
    assert 0.001 < rates[-1] < 0.0015
    out = tmp_path / "run"
    base = ["compare", "--methods", "none", "--seeds", "1", "--epochs", "2", "--quiet"]
    assert main([*base, "--lr", "0.2", "--out", str(out)]) == 0
    assert "peak lr 0.2 instead of the experiment's 0.05" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["lr"] == 0.2
    lrs = [
        float(row.split(",")[1])
        for row in (out / "runs/none/seed0/metrics.csv").read_text().split()[1:]
    ]
    assert max(lrs) == pytest.approx(0.2)
    # Resuming takes the override from config.json; another --lr is refused, naming it.
    assert main([*base, "--out", str(out), "--resume"]) == 0
    assert main([*base, "--out", str(out), "--resume", "--lr", "0.1"]) == 2
    assert "--lr: 0.2 -> 0.1" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_jobs_match_sequential_and_isolate_failures(tmp_path: Path) -> None:
    experiment = get_experiment("digits-mlp").with_epochs(2)
    methods, seeds = ["none", "dropconnect", "ddc"], [0]
    quiet = {"progress": False, "log": lambda _: None}
    compare(experiment, methods, seeds, tmp_path / "seq", RunOptions(**quiet))
    # A run whose checkpoint is corrupt fails in its worker; the others finish and are reported.
    broken = tmp_path / "par/runs/dropconnect/seed0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunsFailedError) as info:
        compare(
            experiment, methods, seeds, tmp_path / "par", RunOptions(jobs=2, resume=True, **quiet)
        )
    assert list(info.value.failures) == [str(broken)]
    assert (broken / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # left as it was
    for method in ("none", "ddc"):
        seq = json.loads((tmp_path / f"seq/runs/{method}/seed0/result.json").read_text())
        par = json.loads((tmp_path / f"par/runs/{method}/seed0/result.json").read_text())
        assert par["complete"] and par["epochs"] == 2
        # One thread instead of two may reorder float sums: equal up to a few test images.
        assert par["final_test_acc"] == pytest.approx(seq["final_test_acc"], abs=0.01)
    report = json.loads((tmp_path / "par/results.json").read_text())["summary"]
    assert set(report["methods"]) == {"none", "ddc"}


def test_settings_added_later_count_as_their_defaults() -> None:
    # A run directory written before `optimizer` and `method_options` existed stays resumable.
    experiment = get_experiment("mnist-simplecnn1")
    old = {
        k: v for k, v in experiment.to_dict().items() if k not in ("optimizer", "method_options")
    }
    assert experiment.differences(old) == {}
    assert experiment.with_schedule("cosine").differences(old) == {
        "schedule": ("authors", "cosine")
    }
    changed = get_experiment("wordlang-transformer").differences(old)
    assert changed["optimizer"] == ("sgd", "adam") and "method_options" in changed
