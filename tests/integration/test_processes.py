"""The suite across processes: SIGKILL then resume, SIGTERM, stale locks, torchrun, real data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.training import RunSpec, prepare_data, train_run
from helpers import subprocess_env

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def test_sigkilled_compare_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    args = [
        "-m",
        "dynamic_dropconnect.experiments.cli",
        "compare",
        "--methods",
        "ddc",
        "--seeds",
        "1",
        "--epochs",
        "30",  # long enough that the kill always lands mid-run
        "--quiet",
    ]
    reference = tmp_path / "reference"
    subprocess.run(
        [sys.executable, *args, "--out", str(reference)],
        check=True,
        env=subprocess_env(),
        capture_output=True,
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *args, "--out", str(killed)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "runs" / "ddc" / "seed0" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    result = killed / "runs" / "ddc" / "seed0" / "result.json"
    assert not result.exists(), "the run finished before it could be killed"
    again = subprocess.run(
        [sys.executable, *args, "--out", str(killed)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "--resume" in again.stderr  # nothing overwritten
    subprocess.run(
        [sys.executable, *args, "--out", str(killed), "--resume"],
        check=True,
        env=subprocess_env(),
        capture_output=True,
    )
    a = json.loads((reference / "runs/ddc/seed0/result.json").read_text())
    b = json.loads(result.read_text())
    for key in ("test_acc_at_best_val", "final_test_acc", "best_val_epoch", "max_test_acc"):
        assert a[key] == b[key]


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "dynamic_dropconnect.experiments.run",
        "--experiment",
        "digits-mlp",
        "--method",
        "ddc",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "runs/ddc/seed0/result.json").read_text())
    assert result["complete"] and result["final_test_acc"] > 0.5


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_one_epoch_on_real_fashion_mnist(tmp_path: Path) -> None:
    # One epoch of SimpleCNN1 + DDC on 20k real Fashion-MNIST images, lr raised to 0.01 so a
    # single epoch means something (the paper's 0.001 is for 75 epochs).
    experiment = replace(get_experiment("fashion-mnist-simplecnn1").with_epochs(1), lr=0.01)
    data = prepare_data(experiment, seed=0, subset=20000)
    result = train_run(RunSpec(experiment, "ddc", 0), tmp_path, data, progress=False)
    assert result["test_acc_at_best_val"] >= 0.60, result  # 67.4% seen on our machine


def test_sigterm_stops_the_workers_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from dynamic_dropconnect.experiments.storage import pid_alive

    out = tmp_path / "run"
    command = [sys.executable, "-u", "-m", "dynamic_dropconnect.experiments.cli", "compare"]
    command += ["--methods", "none,ddc", "--seeds", "1", "--epochs", "5000", "--jobs", "2"]
    command += ["--quiet", "--out", str(out)]
    env = subprocess_env()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # "started RUN_DIR (pid N, ...)" per worker
            if b"started " in line:
                workers.append(int(line.split(b"(pid ")[1].split(b",")[0]))
            if len(workers) == 2:
                break
        checkpoints = [out / f"runs/{m}/seed0/checkpoint.pt" for m in ("none", "ddc")]
        deadline = time.time() + 60
        while not all(c.exists() for c in checkpoints) and time.time() < deadline:
            time.sleep(0.05)
        assert all(c.exists() for c in checkpoints), "the workers did not start training"
        assert json.loads((out / ".ddc-lock").read_text())["pid"] == proc.pid
        # A second ddc in the same directory is refused while this one runs (6.).
        second = ["compare", "--methods", "none,ddc", "--seeds", "1", "--epochs", "5000"]
        assert main([*second, "--quiet", "--resume", "--out", str(out)]) == 2
        assert f"in use by ddc pid {proc.pid}" in capsys.readouterr().err
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 128 + signal.SIGTERM
        assert proc.stderr is not None
        assert b"SIGTERM" in proc.stderr.read()
        assert [pid for pid in workers if pid_alive(pid)] == []
        files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        time.sleep(1.0)  # nothing writes into the run directory any more
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files
        assert not (out / ".ddc-lock").exists()
    finally:
        for pid in [proc.pid, *workers]:  # the processes this test started, if still there
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
