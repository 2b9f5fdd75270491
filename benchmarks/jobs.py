"""Throughput of ``ddc compare --jobs N``: the same runs one after another, then N at a time.

Both passes train the same (method, seed) runs of one experiment on the same data, each into a
fresh run directory. Pass 1 runs them in this process with every CPU thread (``--jobs 1``);
pass 2 runs them ``--jobs N`` at a time in worker processes, each with ``threads / N`` threads.
The ratio ``wall(jobs 1) / wall(jobs N)`` is the speed-up of the whole grid; it is printed, not
asserted. Run it on an otherwise idle machine: anything else on the CPU distorts both passes.

Usage::

    python benchmarks/jobs.py                          # mnist-simplecnn1, 12k images, 2 epochs
    python benchmarks/jobs.py --quick                  # smoke run (digits-mlp, seconds)
    python benchmarks/jobs.py --jobs 2 --json jobs.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.suite import RunOptions, compare


def _pass(args: argparse.Namespace, jobs: int, root: Path) -> tuple[float, float]:
    """Wall seconds of the pass, and the median seconds of one epoch inside it."""
    experiment = get_experiment(args.experiment).with_epochs(args.epochs)
    options = RunOptions(subset=args.subset, progress=False, jobs=jobs, log=lambda _: None)
    started = time.perf_counter()
    out = root / f"jobs{jobs}"
    compare(experiment, args.methods, list(range(args.seeds)), out, options)
    wall = time.perf_counter() - started
    epochs = [
        float(row["seconds"])
        for path in out.glob("runs/*/seed*/metrics.csv")
        for row in csv.DictReader(path.open())
    ]
    return wall, statistics.median(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="mnist-simplecnn1")
    parser.add_argument("--methods", default="none,ddc")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=12000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="digits-mlp, 2 epochs: seconds")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    args.methods = args.methods.split(",")
    if args.quick:
        args.experiment, args.subset, args.epochs = "digits-mlp", None, 2
    runs = len(args.methods) * args.seeds
    threads = torch.get_num_threads()
    print(
        f"{args.experiment}: {runs} runs ({','.join(args.methods)} x {args.seeds} seed(s)), "
        f"{args.epochs} epochs, subset {args.subset}; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {threads} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        sequential, epoch1 = _pass(args, 1, Path(tmp))
        parallel, epoch_n = _pass(args, args.jobs, Path(tmp))
    ratio = sequential / parallel
    steady = args.jobs * epoch1 / epoch_n  # epochs per second, N runs at once vs one
    print(
        f"--jobs 1 ({threads} threads, one run at a time): wall {sequential:7.1f} s, "
        f"median epoch {epoch1:6.2f} s"
    )
    print(
        f"--jobs {args.jobs} ({max(1, threads // args.jobs)} thread(s) each):"
        f"{' ' * 12}wall {parallel:7.1f} s, median epoch {epoch_n:6.2f} s"
    )
    print(f"throughput ratio jobs {args.jobs} / jobs 1, whole grid (wall): {ratio:.2f}x")
    print(f"throughput ratio jobs {args.jobs} / jobs 1, steady state (epochs/s): {steady:.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "experiment": args.experiment,
                    "runs": runs,
                    "epochs": args.epochs,
                    "subset": args.subset,
                    "jobs": args.jobs,
                    "threads": threads,
                    "seconds_jobs1": sequential,
                    f"seconds_jobs{args.jobs}": parallel,
                    "median_epoch_seconds_jobs1": epoch1,
                    f"median_epoch_seconds_jobs{args.jobs}": epoch_n,
                    "throughput_ratio_wall": ratio,
                    "throughput_ratio_steady": steady,
                    "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
