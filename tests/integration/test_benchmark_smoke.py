"""benchmarks/overhead.py runs and prints its table and target checks (numbers not asserted:
speed targets belong to the benchmark, not to unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_overhead_benchmark_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "overhead.py"),
            "--quick",
            "--reps",
            "2",
            "--no-memory",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for variant in ("plain", "dropconnect", "ddc", "ddc-reference", "copy-restore"):
        assert variant in proc.stdout
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert json.loads(out.read_text())


def test_learned_overhead_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "learned.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "learned_overhead.py"), "--reps", "2",
         "--warmup", "1", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(json.loads(out.read_text())) == {
        "plain", "ddc", "ddc-learned (logistic)", "ddc-learned (MLP 8)"
    }  # fmt: skip


def test_jobs_benchmark_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "jobs.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "jobs.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "throughput ratio" in proc.stdout and json.loads(out.read_text())["runs"] == 2
