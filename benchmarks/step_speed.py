"""Speed of one SimpleCNN1 training step (the suite's MNIST step): eager vs ``torch.compile``,
``channels_last``, as GFLOP/s and as a fraction of this machine's single-matrix sgemm rate.

The step is the suite's: ``zero_grad(set_to_none=True)``, forward, cross-entropy, backward,
SGD step, batch 128, 1x28x28, DDC on ``linear1``. FLOPs are counted once with
``torch.utils.flop_counter`` (forward + backward). Variants are timed in interleaved rounds in
one process (median), so the ratios hold on a shared machine while absolute numbers do not.
Compilation uses inductor with ``fallback_random=True`` (the masks eager would draw; see
``docs/integrations.md``); its warm-up (first steps) is reported apart.

    python benchmarks/step_speed.py [--threads 2] [--steps 20] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.models import SimpleCNN1


def _sgemm_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _variant(compiled: bool, channels_last: bool) -> tuple[Callable[[], object], nn.Module]:
    torch.manual_seed(0)
    model = ddc.apply(
        SimpleCNN1(num_classes=10, in_channels=1, image_size=28), "ddc", include=["linear1"]
    )
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    net: nn.Module = torch.compile(model) if compiled else model  # type: ignore[assignment]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inductor_config.fallback_random = True

    step, _ = _variant(False, False)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    sgemm = _sgemm_gflops()

    steps: dict[str, Callable[[], object]] = {}
    warmup: dict[str, float] = {}
    for label, compiled, channels_last in (
        ("eager", False, False),
        ("eager channels_last", False, True),
        ("compile", True, False),
        ("compile channels_last", True, True),
    ):
        fn, _ = _variant(compiled, channels_last)
        warmup[label] = _seconds(lambda fn=fn: [fn() for _ in range(3)])
        steps[label] = fn
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.rounds):
        for label, fn in steps.items():
            times[label].append(
                _seconds(lambda fn=fn: [fn() for _ in range(args.steps)]) / args.steps
            )
    median = {label: statistics.median(t) for label, t in times.items()}
    eager = median["eager"]
    print(
        f"SimpleCNN1 step, batch 128, DDC on linear1, {args.threads} thread(s): "
        f"{flops / 1e9:.2f} GFLOP/step; sgemm 2048^2: {sgemm:.0f} GFLOP/s"
    )
    result: dict[str, object] = {
        "threads": args.threads,
        "gflop_per_step": round(flops / 1e9, 3),
        "sgemm_gflops": round(sgemm, 1),
        "variants": {},
    }
    for label, seconds in median.items():
        rate = flops / seconds / 1e9
        print(
            f"  {label:<22} {seconds * 1e3:7.1f} ms/step  {rate:6.1f} GFLOP/s "
            f"({rate / sgemm:5.1%} of sgemm)  speed-up {eager / seconds:4.2f}x  "
            f"(warm-up of 3 steps {warmup[label]:.1f} s)"
        )
        result["variants"][label] = {  # type: ignore[index]
            "ms_per_step": round(seconds * 1e3, 2),
            "gflops": round(rate, 1),
            "fraction_of_sgemm": round(rate / sgemm, 3),
            "speedup_vs_eager": round(eager / seconds, 3),
            "warmup_s": round(warmup[label], 1),
        }
    result["evaluation"] = _evaluation_batches(args.rounds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _evaluation_batches(rounds: int) -> dict[str, float]:
    """The suite's evaluation pass (10,000 images, eval mode, no grad) at several batch sizes,
    eager and channels_last: is 512 (the suite's) a good size?"""
    torch.manual_seed(0)
    model = SimpleCNN1(num_classes=10, in_channels=1, image_size=28).eval()
    x = torch.randn(10_000, 1, 28, 28)
    variants: dict[str, Callable[[], object]] = {}
    for batch in (128, 512, 2048):
        for channels_last in (False, True):
            net = copy.deepcopy(model)
            data = x
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
                data = x.contiguous(memory_format=torch.channels_last)

            def run(net: nn.Module = net, data: torch.Tensor = data, batch: int = batch) -> None:
                with torch.no_grad():
                    for start in range(0, len(data), batch):
                        net(data[start : start + batch])

            variants[f"batch {batch}{' channels_last' if channels_last else ''}"] = run
    times: dict[str, list[float]] = {label: [] for label in variants}
    for fn in variants.values():
        fn()
    for _ in range(max(3, rounds // 2)):
        for label, fn in variants.items():
            times[label].append(_seconds(fn))
    median = {label: statistics.median(t) for label, t in times.items()}
    base = median["batch 512"]
    print("Evaluation of 10,000 images (eval, no grad), relative to batch 512 eager:")
    for label, seconds in median.items():
        print(f"  {label:<26} {seconds:6.2f} s  {base / seconds:4.2f}x")
    return {label: round(base / seconds, 3) for label, seconds in median.items()}


if __name__ == "__main__":
    main()
