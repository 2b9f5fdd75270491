"""What the learned drop-rate model (``ddc-learned``) costs per training step, against DDC.

SimpleCNN1 on 1x28x28 inputs, batch 128, the regularizer on ``linear1`` (the paper's setting),
one training step = zero_grad, forward, cross-entropy, backward, SGD step on a fixed batch.
Variants: plain, ``ddc``, ``ddc-learned`` with a logistic rate model and with an 8-unit MLP.
Repetitions are interleaved round-robin so machine noise hits every variant alike; the ratios
are medians over repetitions of (variant step / plain step of the same repetition), printed,
never asserted. Run it on an otherwise idle machine.

    python benchmarks/learned_overhead.py [--reps 60] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.models import SimpleCNN1

VARIANTS: dict[str, tuple[str, dict[str, object]] | None] = {
    "plain": None,
    "ddc": ("ddc", {}),
    "ddc-learned (logistic)": ("ddc-learned", {"hidden": 0}),
    "ddc-learned (MLP 8)": ("ddc-learned", {"hidden": 8}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    models, optimizers = {}, {}
    for name, spec in VARIANTS.items():
        torch.manual_seed(0)
        model = SimpleCNN1(num_classes=10, in_channels=1, image_size=28)
        if spec is not None:
            ddc.apply(model, spec[0], include="linear1", **spec[1])
        models[name] = model
        optimizers[name] = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(name: str) -> float:
        started = time.perf_counter()
        optimizers[name].zero_grad(set_to_none=True)
        F.cross_entropy(models[name](x), y).backward()
        optimizers[name].step()
        return time.perf_counter() - started

    names = list(VARIANTS)
    for _ in range(args.warmup):
        for name in names:
            step(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(step(name))
    print(f"SimpleCNN1, batch 128, linear1 regularized; {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<24} {'median ms':>10} {'x plain':>8} {'x ddc':>7}")
    result = {}
    for name in names:
        plain, reference = times["plain"], times["ddc"]
        paired_plain = statistics.median(a / b for a, b in zip(times[name], plain, strict=True))
        paired_ddc = statistics.median(a / b for a, b in zip(times[name], reference, strict=True))
        median = 1000 * statistics.median(times[name])
        result[name] = {"median_ms": median, "ratio_plain": paired_plain, "ratio_ddc": paired_ddc}
        print(f"{name:<24} {median:10.2f} {paired_plain:8.3f} {paired_ddc:7.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
