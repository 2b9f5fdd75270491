"""The ``ddc`` command against hostile or broken run directories, bad options and signals.

Every test here failed on the code before its fix (see the commit that added it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.storage import RunFileError
from dynamic_dropconnect.experiments.uncertainty import evaluate_run

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _compare(out: Path, *extra: str, epochs: int = 2, methods: str = "ddc") -> int:
    args = ["--methods", methods, "--seeds", "1", "--epochs", str(epochs), "--quiet"]
    return main(["compare", *args, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished digits-mlp run of 2 epochs, ddc seed 0 (tests delete result.json to make it
    look unfinished, so that --resume loads the checkpoint)."""
    out = tmp_path_factory.mktemp("safety") / "run"
    assert _compare(out) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def _unfinished_copy(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``run`` whose ddc seed 0 looks unfinished (no result.json), so that
    ``--resume`` loads its checkpoint; returns the copy and that seed's folder."""
    copy = _copy(run, tmp_path)
    seed = copy / "runs/ddc/seed0"
    (seed / "result.json").unlink()
    return copy, seed


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _plant_exploit(checkpoint: Path, marker: Path) -> None:
    torch.save({"model": {}, "rows": [], "payload": _Exploit(marker)}, checkpoint)
    checkpoint.with_name(checkpoint.name + ".sha256").unlink(missing_ok=True)


# 1. Code execution from a run directory ---------------------------------------------------


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_that_would_run_code(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, seed = _unfinished_copy(small_run, tmp_path)
    marker = tmp_path / "pwned"
    _plant_exploit(seed / "checkpoint.pt", marker)
    assert _compare(run, "--resume") == 2
    err = capsys.readouterr().err
    assert str(seed / "checkpoint.pt") in err and "refused" in err
    assert not marker.exists()


@pytest.mark.slow
def test_uncertainty_refuses_a_checkpoint_that_would_run_code(
    small_run: Path, tmp_path: Path
) -> None:
    run = _copy(small_run, tmp_path)
    marker = tmp_path / "pwned"
    checkpoint = run / "runs/ddc/seed0/checkpoint.pt"
    _plant_exploit(checkpoint, marker)
    with pytest.raises(RunFileError, match=f"{checkpoint}.*refused"):
        evaluate_run(run, t_values=[1, 2], ood=False, log=lambda _: None)
    assert not marker.exists()


def test_no_unsafe_torch_load_in_src() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    offenders = [p for p in src.rglob("*.py") if "weights_only=False" in p.read_text()]
    assert offenders == []


@pytest.mark.slow
def test_checkpoint_loads_with_weights_only(small_run: Path) -> None:
    state = torch.load(small_run / "runs/ddc/seed0/checkpoint.pt", weights_only=True)
    assert isinstance(state["rng"], torch.Tensor) and len(state["rows"]) == 2
    assert json.loads((small_run / "config.json").read_text())["epochs"] == 2


# 2. Stale uncertainty caches -------------------------------------------------------------


@pytest.mark.slow
def test_uncertainty_recomputes_after_the_checkpoint_changed(tmp_path: Path) -> None:
    from dynamic_dropconnect.experiments.config import get_experiment
    from dynamic_dropconnect.experiments.training import RunSpec, prepare_data, train_run

    run = tmp_path / "run"
    assert _compare(run, epochs=4) == 0
    # The same run stopped after 2 of its 4 epochs (as if interrupted).
    experiment = get_experiment("digits-mlp").with_epochs(4)
    data = prepare_data(experiment, seed=0)
    seed = run / "runs/ddc/seed0"
    train_run(RunSpec(experiment, "ddc", 0), seed, data, resume=False, stop_after_epoch=2)
    evaluate_run(run, t_values=[1, 2], ood=False, log=lambda _: None)
    first = json.loads((seed / "uncertainty.json").read_text())
    assert first["epochs_trained"] == 2
    table = (run / "uncertainty.md").read_text()
    assert "unfinished" in table and "2 of 4 epochs" in table
    assert _compare(run, "--resume", epochs=4) == 0  # epochs 3 and 4
    evaluate_run(run, t_values=[1, 2], ood=False, log=lambda _: None)
    again = json.loads((seed / "uncertainty.json").read_text())
    assert again["epochs_trained"] == 4
    assert again["deterministic"] != first["deterministic"]
    assert "unfinished" not in (run / "uncertainty.md").read_text()


# 3. --out into someone else's directory --------------------------------------------------


@pytest.mark.slow
def test_out_into_a_non_empty_directory_without_a_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    files = {
        "results.md": "my thesis table\n",
        "results.json": '{"mine": true}\n',
        "metrics.csv": "a,b\n1,2\n",
        "plots/learning_curves.png": "my plot",
    }
    for name, text in files.items():
        (mine / name).write_text(text)
    for extra in ((), ("--resume",)):
        assert _compare(mine, *extra) == 2
        err = capsys.readouterr().err
        assert str(mine) in err and "results.md" in err and "not empty" in err
    assert {name: (mine / name).read_text() for name in files} == files
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.csv", "plots", "results.json",
                                                      "results.md"]  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _compare(empty) == 0  # an empty directory is fine
    assert (empty / "runs/ddc/seed0/result.json").exists()


# 4. Corrupt checkpoints and diverged training --------------------------------------------


@pytest.mark.slow
def test_resume_refuses_a_corrupt_checkpoint(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, seed = _unfinished_copy(small_run, tmp_path)
    checkpoint = seed / "checkpoint.pt"
    data = bytearray(checkpoint.read_bytes())
    middle = len(data) // 2  # inside the weights
    data[middle : middle + 8] = b"\xff" * 8
    checkpoint.write_bytes(bytes(data))
    assert _compare(run, "--resume") == 2
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and str(checkpoint) in err and "corrupt" in err
    assert not (seed / "result.json").exists()
    assert "No complete run yet" in (run / "results.md").read_text()


@pytest.mark.slow
def test_a_checkpoint_without_checksum_still_resumes(small_run: Path, tmp_path: Path) -> None:
    # Run directories written before checksums existed stay resumable.
    run, seed = _unfinished_copy(small_run, tmp_path)
    (seed / "checkpoint.pt.sha256").unlink(missing_ok=True)
    assert _compare(run, "--resume", epochs=2) == 0
    assert json.loads((seed / "result.json").read_text())["complete"]


@pytest.mark.slow
def test_diverged_training_is_a_failed_run(tmp_path: Path) -> None:
    from dynamic_dropconnect.experiments.config import get_experiment
    from dynamic_dropconnect.experiments.suite import RunOptions, RunsFailedError, compare

    experiment = get_experiment("digits-mlp").with_epochs(2).with_lr(1e30)
    with pytest.raises(RunsFailedError, match=r"(?s)1 run\(s\) failed.*training loss is (nan|inf)"):
        compare(experiment, ["ddc"], [0], tmp_path / "run", RunOptions(progress=False))
    seed = tmp_path / "run/runs/ddc/seed0"
    assert not (seed / "result.json").exists()
    assert "No complete run yet" in (tmp_path / "run/results.md").read_text()


# 7. Options checked before anything is written; errors name the file ---------------------

BAD_OPTIONS = [
    (["compare", "--seeds", "0"], "--seeds"),
    (["compare", "--methods", ""], "--methods"),
    (["compare", "--methods", "ddc,ddc"], "--methods"),
    (["compare", "--subset", "0"], "--subset"),
    (["compare", "--subset", "-1"], "--subset"),
    (["compare", "--seed0", "-1"], "--seed0"),
    (["compare", "--seed0", "100000000000000000000"], "--seed0"),
    (["compare", "--lr", "1e308"], "--lr"),
    (["compare", "--lr", "0"], "--lr"),
    (["compare", "--lr", "nan"], "--lr"),
    (["compare", "--device", "foo"], "--device"),
    (["compare", "--data-dir", "/nonexistent"], "--data-dir"),
    (["compare", "--epochs", "0"], "--epochs"),
    (["compare", "--jobs", "0"], "--jobs"),
    (["compare", "--schedule", "bogus"], "--schedule"),
    (["sweep", "--p", "1.0", "--no-matched"], "--p"),
    (["sweep", "--p", "nan"], "--p"),
    (["sweep", "--p", "-0.1"], "--p"),
    (["sweep", "--p", "0.3,0.3"], "--p"),
    (["sweep", "--p", "0.97"], "--p"),
    (["sweep", "--tau", "2"], "--tau"),
    (["sweep", "--pg", "-1"], "--pg"),
]
if not torch.cuda.is_available():
    BAD_OPTIONS.append((["compare", "--device", "cuda"], "--device"))


@pytest.mark.parametrize(
    ("argv", "flag"), BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_bad_options_are_refused_before_anything_is_written(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    # Small defaults first (the option under test comes later and wins): quick if it trains.
    small = ["--methods", "ddc", "--seeds", "1"] if argv[0] == "compare" else ["--pg", "0.5"]
    small += ["--epochs", "1", "--quiet", "--out", str(out)]
    assert main([argv[0], *small, *argv[1:]]) == 2
    err = capsys.readouterr().err
    value = argv[argv.index(flag) + 1] if flag in argv else ""
    shown = value if flag != "--lr" else repr(float(value))  # a float is printed as Python does
    assert re.search(re.escape(flag) + "[ :]", err) and shown in err, err
    assert "valid" in err or "must" in err, err
    assert not out.exists()


def test_out_that_is_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    assert _compare(out) == 2
    assert f"--out {out} is a file" in capsys.readouterr().err
    assert out.read_text() == "mine\n"


def test_out_below_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    assert _compare(tmp_path / "notes.txt" / "run") == 2
    assert "notes.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_broken_run_files_are_named(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _copy(small_run, tmp_path)
    metrics = run / "runs/ddc/seed0/metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[:40] + b"\xff" + metrics.read_bytes()[41:])
    assert main(["report", str(run)]) == 2
    assert str(metrics) in capsys.readouterr().err
    (run / "config.json").write_text('{"experiment": "digits-mlp", ')  # a garbled config
    assert main(["report", str(run)]) == 2
    assert str(run / "config.json") in capsys.readouterr().err
    assert _compare(run, "--resume") == 2
    assert str(run / "config.json") in capsys.readouterr().err
    assert main(["uncertainty", str(run), "--no-ood"]) == 2
    assert str(run / "config.json") in capsys.readouterr().err


@pytest.mark.slow
def test_truncated_checkpoint_is_named(small_run: Path, tmp_path: Path) -> None:
    run = _copy(small_run, tmp_path)
    checkpoint = run / "runs/ddc/seed0/checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(RunFileError, match=f"{checkpoint}.*corrupt"):
        evaluate_run(run, t_values=[1], ood=False, log=lambda _: None)
    checkpoint.with_name("checkpoint.pt.sha256").unlink(missing_ok=True)  # no digest to check
    with pytest.raises(RunFileError, match=f"{checkpoint}.*refused"):
        evaluate_run(run, t_values=[1], ood=False, log=lambda _: None)


@pytest.mark.slow
def test_a_failing_report_does_not_hide_failed_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynamic_dropconnect.experiments import suite
    from dynamic_dropconnect.experiments.config import get_experiment

    def broken_report(run_dir: Path) -> Path:
        raise RunFileError(f"{run_dir}/runs/x/metrics.csv: bad byte")

    monkeypatch.setattr(suite, "write_report", broken_report)
    experiment = get_experiment("digits-mlp").with_epochs(1).with_lr(1e30)  # diverges
    with pytest.raises(suite.RunsFailedError, match=r"(?s)1 run\(s\) failed.*metrics.csv: bad"):
        suite.compare(experiment, ["ddc"], [0], tmp_path / "run", suite.RunOptions(progress=False))


def test_killed_writes_leave_no_tmp_files_and_outputs_follow_the_umask(tmp_path: Path) -> None:
    from dynamic_dropconnect.experiments.storage import atomic_write_text

    dead = tmp_path / ".config.json.999999999-abcd1234.tmp"  # a writer that was killed
    legacy = tmp_path / ".config.json.k2j4h5g6.tmp"  # the same, before pids were in the name
    dead.write_text("half")
    legacy.write_text("half")
    os.utime(legacy, (0, 0))
    live = tmp_path / f".config.json.{os.getpid()}-abcd1234.tmp"  # a write going on now
    live.write_text("half")
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "config.json", "{}\n")
    finally:
        os.umask(old)
    assert not dead.exists() and not legacy.exists() and live.exists()
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o640


# 6. One ddc at a time in a run directory -------------------------------------------------


def _lock_of(pid: int) -> str:
    return json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"})


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, _ = _unfinished_copy(small_run, tmp_path)
    lock = run / ".ddc-lock"
    lock.write_text(_lock_of(os.getpid()))  # this test's process: alive
    assert _compare(run, "--resume") == 2
    err = capsys.readouterr().err
    assert f"in use by ddc pid {os.getpid()}" in err and str(lock) in err
    assert lock.read_text() == _lock_of(os.getpid())
    assert not (run / "runs/ddc/seed0/result.json").exists()


# 5. Signals reach the workers ------------------------------------------------------------


@pytest.mark.slow
def test_a_stale_lock_is_named_and_taken_over(
    small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, _ = _unfinished_copy(small_run, tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(gone.stdout)  # a process that has exited
    (run / ".ddc-lock").write_text(_lock_of(pid))
    assert _compare(run, "--resume") == 0
    assert f"stale lock of pid {pid}" in capsys.readouterr().out
    assert not (run / ".ddc-lock").exists()  # released at the end
    assert (run / "runs/ddc/seed0/result.json").exists()
