"""Cost of ``ddc.mc_predict`` as a multiple of one deterministic pass, fast path vs loop.

SimpleCNN1 (the authors' MNIST net) on N random 28x28 images, DDC on ``linear1`` only (the
paper's setting) and on every layer, and a 784-512-512-10 MLP with DDC on every layer (nothing
deterministic to share: the batched passes against the loop). Each variant is timed in
interleaved rounds in one process (median of the rounds), so the printed ratios hold even on a
shared machine; the absolute times do not. The target: T = 30 passes with DDC on the head cost
at most 3x one deterministic pass.

    python benchmarks/mc_predict.py [--examples 1000] [--samples 30] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.models.convnets import SimpleCNN1


def _model(include: list[str] | None, mlp: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model: nn.Module = SimpleCNN1(num_classes=10, in_channels=1, image_size=28)
    if mlp:
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
            nn.Linear(512, 10),
        )  # fmt: skip
    ddc.apply(model, "ddc", include=include)
    # One backward so DDC has a gradient statistic (per-edge rates), as after training.
    x = torch.randn(32, 1, 28, 28)
    model.train()
    nn.functional.cross_entropy(model(x), torch.randint(0, 10, (32,))).backward()
    return model.eval()


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the ratios as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.examples, 1, 28, 28)
    T = args.samples
    models = {
        "head (linear1)": _model(["linear1"]),
        "every layer": _model(["*"]),
        "MLP, every layer": _model(None, mlp=True),
    }
    variants: dict[str, Callable[[], object]] = {}
    for label, model in models.items():

        def deterministic(model: nn.Module = model) -> object:
            with torch.no_grad():
                return model(x)

        variants[f"{label}: deterministic pass"] = deterministic
        variants[f"{label}: mc_predict T={T} loop"] = lambda m=model: ddc.mc_predict(
            m, x, T, fast=False
        )
        variants[f"{label}: mc_predict T={T} fast"] = lambda m=model: ddc.mc_predict(m, x, T)
    for fn in variants.values():  # warm-up (tracing, allocator)
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(_time(fn))
    median = {name: statistics.median(t) for name, t in times.items()}
    result: dict[str, float] = {}
    print(f"{args.examples} images, {args.threads} thread(s), median of {args.rounds} rounds")
    for label in models:
        base = median[f"{label}: deterministic pass"]
        loop = median[f"{label}: mc_predict T={T} loop"]
        fast = median[f"{label}: mc_predict T={T} fast"]
        print(
            f"  DDC on {label:<17} one pass {base * 1e3:7.1f} ms | T={T}: loop {loop / base:5.1f}x"
            f"  fast {fast / base:5.1f}x  (fast = {loop / fast:.1f}x faster than the loop)"
        )
        result[f"{label}: loop / one pass"] = round(loop / base, 2)
        result[f"{label}: fast / one pass"] = round(fast / base, 2)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
