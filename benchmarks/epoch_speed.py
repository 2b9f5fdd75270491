"""Epochs per second of the suite's SimpleCNN1 MNIST run (``ddc compare`` as it trains):
eager contiguous (the suite before channels_last), eager channels_last (the suite's default
now), and ``--compile``.

Each variant trains the same run (``mnist-simplecnn1``, DDC, seed 0, ``--subset`` images per
split) for ``--epochs`` epochs into a fresh directory, ``--rounds`` times, the variants
interleaved round by round so that load hits them alike; the first epoch of a run (compile
warm-up) is reported apart and the median over rounds of the later epochs' seconds compared.
Accuracies are printed too: the variants draw the same masks, so only float rounding (and
the drift it starts) separates them.

    python benchmarks/epoch_speed.py [--subset 10000] [--epochs 4] [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.training import RunSpec, prepare_data, train_run

VARIANTS = {
    "eager, contiguous": {"channels_last": False},
    "eager, channels_last": {},
    "compile, contiguous": {"compile": True, "channels_last": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="whole runs per variant")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiment = get_experiment("mnist-simplecnn1").with_epochs(args.epochs)
    data = prepare_data(experiment, seed=0, subset=args.subset)
    rows: dict[str, list[dict]] = {label: [] for label in VARIANTS}
    epoch_seconds: dict[str, list[float]] = {label: [] for label in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):  # whole runs, variants interleaved round by round
            for label, options in VARIANTS.items():
                spec = RunSpec(experiment, "ddc", 0, **options)  # type: ignore[arg-type]
                out = Path(tmp) / f"{label.replace(', ', '-')}-{round_}"
                train_run(spec, out, data, progress=False, resume=False)
                lines = (out / "metrics.csv").read_text().splitlines()
                header = lines[0].split(",")
                rows[label] = [dict(zip(header, row.split(","), strict=True)) for row in lines[1:]]
                epoch_seconds[label] += [float(r["seconds"]) for r in rows[label][1:]]
    base = statistics.median(epoch_seconds["eager, contiguous"])
    result: dict[str, dict[str, float]] = {}
    print(
        f"mnist-simplecnn1, DDC, {args.subset} images per split, {args.epochs} epochs, "
        f"{args.threads} thread(s); median seconds of epochs 2..{args.epochs}, "
        f"{args.rounds} round(s)"
    )
    for label, history in rows.items():
        seconds = statistics.median(epoch_seconds[label])
        final = float(history[-1]["test_acc"])
        print(
            f"  {label:<22} epoch 1 {float(history[0]['seconds']):6.1f} s | later {seconds:6.1f} s"
            f" | {base / seconds:4.2f}x epochs/s | final test acc {100 * final:.2f}%"
        )
        print(
            "    per epoch: train loss "
            + ", ".join(f"{float(r['train_loss']):.5f}" for r in history)
            + " | test acc "
            + ", ".join(f"{100 * float(r['test_acc']):.2f}" for r in history)
        )
        result[label] = {
            "train_loss": [float(r["train_loss"]) for r in history],  # type: ignore[dict-item]
            "test_acc": [float(r["test_acc"]) for r in history],  # type: ignore[dict-item]
            "first_epoch_s": round(float(history[0]["seconds"]), 1),
            "epoch_s": round(seconds, 2),
            "speedup": round(base / seconds, 3),
            "final_test_acc": final,
        }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
