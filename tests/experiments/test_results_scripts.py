"""The scripts in results/ regenerate their committed tables from the committed JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "results"


def paired(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RESULTS / "paired.py"), *args],
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
    done = paired(*sources)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (RESULTS / table).read_text()


def test_paired_rejects_a_method_in_two_sources_and_bad_pairs() -> None:
    twice = paired(
        "results/mnist-short-tuned/results.json", "results/mnist-short-tuned/results.json"
    )
    assert twice.returncode == 2 and "'ddc' is in two sources" in twice.stderr
    bad = paired("results/mnist-short-tuned/results.json", "--pairs", "ddc-none")
    assert bad.returncode == 2 and "is not A:B" in bad.stderr
