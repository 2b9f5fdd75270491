"""The scripts in results/ regenerate their committed tables from the committed JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "results"


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RESULTS / name), *args],
        capture_output=True,
        text=True,
        cwd=RESULTS.parent,
        check=False,
    )


@pytest.mark.parametrize(
    ("table", "sources"),
    [
        (
            "mnist-short-tuned/paired.md",
            [
                "results/mnist-short-tuned/results.json",
                "results/mnist-short-tuned-unbiased/results.json",
            ],
        ),
        (
            "fashion-short-tuned/paired.md",
            [
                "results/fashion-short-tuned/results.json",
                "results/fashion-short-tuned-unbiased/results.json",
                "results/fashion-short-tuned-learned-shuffled/results.json",
                "--vm",
                "results/fashion-short-tuned-vm/results.json",
            ],
        ),
        (
            "mnist-simplecnn1-75ep-rest/paired.md",
            [
                "results/mnist-simplecnn1-75ep-rest/results.json",
                "results/mnist-simplecnn1-75ep.json",
                "--pairs",
                "ddc:none,ddc:dropconnect,ddc:dropout,ddc:standout,ddc-learned:none,"
                "ddc-learned:dropconnect,ddc-learned:ddc,dropout:none,standout:none,"
                "dropconnect:none",
            ],
        ),
        (
            "mnist-simplecnn1-75ep-all/paired.md",
            [
                "results/mnist-simplecnn1-75ep-all/results.json",
                "--pairs",
                "ddc:none,ddc:dropconnect,ddc:dropout,ddc:standout,ddc-learned:none,"
                "ddc-learned:dropconnect,ddc-learned:ddc,dropout:none,standout:none,"
                "dropconnect:none",
            ],
        ),
        (
            "wordlang-lstm-tuned/paired.md",
            [
                "results/wordlang-lstm-tuned/results.json",
                "--pairs",
                "ddc:none,ddc:dropout,ddc:locked-dropout,ddc:dropconnect,dropconnect:none,"
                "dropout:none",
            ],
        ),
    ],
)
def test_paired_tables_regenerate(table: str, sources: list[str]) -> None:
    done = script("paired.py", *sources)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (RESULTS / table).read_text()


def test_paired_rejects_a_method_in_two_sources_and_bad_pairs() -> None:
    twice = script(
        "paired.py",
        "results/mnist-short-tuned/results.json",
        "results/mnist-short-tuned/results.json",
    )
    assert twice.returncode == 2 and "'ddc' is in two sources" in twice.stderr
    bad = script("paired.py", "results/mnist-short-tuned/results.json", "--pairs", "ddc-none")
    assert bad.returncode == 2 and "is not A:B" in bad.stderr


#: The robustness comparisons of the committed pairs.md files: robustness.md's headline columns;
#: DropConnect-style training against none, and DDC against both (plus, on the MLP, the
#: shuffled controls).
ROBUSTNESS_PAIRS = "dropconnect:none,ddc:none,ddc:dropconnect"
ROBUSTNESS_METRICS = (
    "clean,corruption mean,mCE,relative mCE,FGSM ε=0.1,PGD ε=0.1,random f=0.5,magnitude f=0.5"
)


@pytest.mark.parametrize(
    ("folder", "pairs"),
    [
        ("robustness-mnist-simplecnn1-75ep", ROBUSTNESS_PAIRS),
        ("robustness-fashion-short-tuned", ROBUSTNESS_PAIRS),
        (
            "robustness-mnist-mlp-tuned",
            ROBUSTNESS_PAIRS + ",ddc:ddc-shuffled,ddc-learned:ddc-learned-shuffled",
        ),
    ],
)
def test_robustness_pairs_regenerate(folder: str, pairs: str) -> None:
    done = script(
        "robustness_pairs.py",
        f"results/{folder}/robustness.json",
        "--pairs",
        pairs,
        "--metrics",
        ROBUSTNESS_METRICS,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (RESULTS / folder / "pairs.md").read_text()


def test_robustness_pairs_match_the_per_run_records() -> None:
    """One row by hand: DropConnect − none after removing half of linear1 at random."""
    path = RESULTS / "robustness-mnist-simplecnn1-75ep" / "robustness.json"
    runs = json.loads(path.read_text())["runs"]
    acc = {
        (r["method"], r["seed"]): 100 * r["parts"]["pruning"]["random"]["0.5"]
        for r in runs
        if r["method"] in ("none", "dropconnect")
    }
    diffs = [acc["dropconnect", s] - acc["none", s] for s in (0, 1, 2)]
    done = script(
        "robustness_pairs.py", str(path), "--pairs", "dropconnect:none", "--metrics", "random f=0.5"
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "dropconnect − none" in line)
    assert f"| {sum(diffs) / 3:+.2f} |" in row
    assert f"| {sum(d > 0 for d in diffs)}/{sum(d < 0 for d in diffs)} |" in row


def test_robustness_pairs_reject_unknown_metrics_and_bad_pairs() -> None:
    path = "results/robustness-fashion-short-tuned/robustness.json"
    unknown = script("robustness_pairs.py", path, "--pairs", "ddc:none", "--metrics", "PGD")
    assert unknown.returncode == 2 and "'PGD' is not in this file" in unknown.stderr
    assert "PGD ε=0.1" in unknown.stderr
    bad = script("robustness_pairs.py", path, "--pairs", "ddc-none", "--metrics", "clean")
    assert bad.returncode == 2 and "is not A:B" in bad.stderr
