"""Training-step overhead of Dynamic DropConnect (SPEC section 6), measured as ratios in one run.

For each model the variants below train on one fixed synthetic batch (forward + backward + SGD
step, ``zero_grad(set_to_none=True)``). Repetitions are interleaved round-robin (the order
rotates every repetition) so that machine noise hits all variants alike; every number is a
median over repetitions.

Variants:
    plain          no regularization
    dropconnect    ``ddc.apply(model, "dropconnect", include=..., p=0.5)``
    ddc            ``ddc.apply(model, "ddc", include=...)``
    ddc-reference  ``ddc.apply(model, "ddc", include=..., preset="reference")``
    copy-restore   the authors' style: clone each weight, write ``W * M / kept`` into it in
                   place, forward/backward, restore the clone, read ``kept`` to the host
                   (``.item()``) every step; the statistic is ``|weight.grad|`` after backward.

Models:
    cnn-linear1    SimpleCNN1, 1x28x28, batch 128, regularizer on ``linear1``
    cnn-all        SimpleCNN1, the same, regularizer on every Conv2d and Linear
    vgg-classifier VGG13BN, 3x32x32, batch 32, regularizer on the classifier Linears

Memory: the exact bytes of the buffers each regularizer holds, an analytic estimate of the
transient tensors per step (checked by a measurement on one large layer), and for
``mask_mode="example"`` at batch 128 the peak extra memory with the default chunk budget
(256 MiB) and without chunking. CPU memory is measured as the peak RSS (``VmHWM``) of a fresh
subprocess against a plain-model subprocess; glibc is told to serve every large block by
``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the RSS at once.
On CUDA the same children report ``torch.cuda.max_memory_allocated`` instead.

Usage::

    python benchmarks/overhead.py                # full run (about 3-5 min on 2 CPU cores)
    python benchmarks/overhead.py --quick        # smoke run (< 40 s)
    python benchmarks/overhead.py --device cuda --json results.json
    python benchmarks/overhead.py --profile-only # only the DDC-vs-DropConnect op profile

The process never fails on a missed target: each check prints PASS or FAIL with its ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.models import VGG13BN, SimpleCNN1

VARIANTS = ("plain", "dropconnect", "ddc", "ddc-reference", "copy-restore")
MiB = 2**20


# --------------------------------------------------------------------------------------------
# the copy/restore baseline (the authors' training loop, compactly)
# --------------------------------------------------------------------------------------------
class CopyRestoreDDC:
    """DDC as the authors' loop does it: mutate ``weight.data`` in place, restore after backward.

    ``before_forward``: for each layer clone the weight; from the stored ``|grad|`` of the
    previous step compute z-score, ``q = 1 - sigmoid(z)``, threshold ``q > tau``,
    ``p + pg * q`` and a Bernoulli mask; write ``W * M / kept`` in place and read ``kept`` back
    to the host. No drop before the first gradient. ``after_backward``: store ``|weight.grad|``
    (the gradient w.r.t. the masked weight, i.e. dense) and restore the weight from its clone.
    """

    def __init__(
        self, layers: list[nn.Module], p: float = 0.3, pg: float = 0.5, tau: float = 0.5
    ) -> None:
        self.layers = layers
        self.p, self.pg, self.tau, self.eps = p, pg, tau, 1e-9
        self.stats: list[Tensor | None] = [None] * len(layers)
        self.backups: list[Tensor] = []
        self.kept_rates: list[float] = []

    @torch.no_grad()
    def before_forward(self) -> None:
        self.backups = []
        self.kept_rates = []
        for layer, stat in zip(self.layers, self.stats, strict=True):
            weight = layer.weight
            self.backups.append(weight.data.clone())
            if stat is None:  # first step: no drop
                self.kept_rates.append(1.0)
                continue
            z = (stat - stat.mean()) / (stat.std() + self.eps)
            q = 1.0 - torch.sigmoid(z)
            q = q * (q > self.tau)
            probs = self.p + self.pg * q
            mask = torch.bernoulli(1.0 - probs)
            kept = mask.mean()
            weight.data.mul_(mask / kept)
            self.kept_rates.append(kept.item())

    @torch.no_grad()
    def after_backward(self) -> None:
        for i, (layer, backup) in enumerate(zip(self.layers, self.backups, strict=True)):
            weight = layer.weight
            if weight.grad is not None:
                self.stats[i] = weight.grad.abs()
            weight.data.copy_(backup)


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    include: list[str]
    reps: int
    steps_per_rep: int
    warmup: int


def workloads(quick: bool, reps: int | None) -> list[Workload]:
    def cnn() -> nn.Module:
        return SimpleCNN1(num_classes=10, in_channels=1, image_size=28)

    def vgg() -> nn.Module:
        return VGG13BN(num_classes=10, in_channels=3, image_size=32)

    cnn_reps = reps or (6 if quick else 60)
    vgg_reps = max(2, cnn_reps // 4) if reps is None else reps
    cnn_steps = 1
    return [
        Workload(
            "cnn-linear1",
            "SimpleCNN1 1x28x28 b128, reg. on linear1",
            cnn,
            (128, 1, 28, 28),
            ["linear1"],
            cnn_reps,
            cnn_steps,
            2 if quick else 4,
        ),
        Workload(
            "cnn-all",
            "SimpleCNN1 1x28x28 b128, reg. on all Conv2d+Linear",
            cnn,
            (128, 1, 28, 28),
            ["features.*", "linear*"],
            cnn_reps,
            cnn_steps,
            2 if quick else 4,
        ),
        Workload(
            "vgg-classifier",
            "VGG13BN 3x32x32 b32, reg. on classifier Linears",
            vgg,
            (32, 3, 32, 32),
            ["linear*"],
            vgg_reps,
            1,
            1 if quick else 2,
        ),
    ]


@dataclass
class Runner:
    """One variant: its own model copy, optimizer and (for copy-restore) hook."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    x: Tensor
    y: Tensor
    hook: CopyRestoreDDC | None = None
    times_ms: list[float] = field(default_factory=list)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.hook is not None:
            self.hook.before_forward()
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        if self.hook is not None:
            self.hook.after_backward()
        self.optimizer.step()


def make_variant(
    variant: str, base: nn.Module, include: list[str], device: torch.device
) -> tuple[nn.Module, CopyRestoreDDC | None]:
    model = copy.deepcopy(base).to(device).train()
    if variant == "plain":
        return model, None
    if variant == "dropconnect":
        return ddc.apply(model, "dropconnect", include=include, p=0.5), None
    if variant == "ddc":
        return ddc.apply(model, "ddc", include=include), None
    if variant == "ddc-reference":
        return ddc.apply(model, "ddc", include=include, preset="reference"), None
    if variant == "copy-restore":
        # the same layer selection as ddc.apply makes, without changing the layers
        names = list(ddc.regularized_layers(ddc.apply(copy.deepcopy(base), "ddc", include=include)))
        modules = dict(model.named_modules())
        return model, CopyRestoreDDC([modules[n] for n in names])
    raise ValueError(variant)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(runner: Runner, steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    sync(device)
    return (time.perf_counter() - start) * 1000.0 / steps


def paired_ratio(times: list[float], reference: list[float]) -> float:
    """Median over repetitions of the ratio within one repetition (robust to slow drifts)."""
    return statistics.median(a / b for a, b in zip(times, reference, strict=True))


def build_runners(work: Workload, device: torch.device) -> dict[str, Runner]:
    torch.manual_seed(0)
    base = work.build()
    x = torch.randn(work.input_shape, device=device)
    y = torch.randint(0, 10, (work.input_shape[0],), device=device)
    runners = {}
    for variant in VARIANTS:
        model, hook = make_variant(variant, base, work.include, device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        runners[variant] = Runner(model, opt, x, y, hook)
    return runners


def benchmark(work: Workload, device: torch.device) -> dict[str, Any]:
    runners = build_runners(work, device)
    for runner in runners.values():  # warm-up (also gives DDC its first gradient)
        for _ in range(work.warmup):
            runner.step()
    order = list(VARIANTS)
    for rep in range(work.reps):
        shift = rep % len(order)
        for variant in order[shift:] + order[:shift]:
            runners[variant].times_ms.append(
                time_steps(runners[variant], work.steps_per_rep, device)
            )
    plain = runners["plain"].times_ms
    rows = {}
    for variant, runner in runners.items():
        t = runner.times_ms
        q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0], t[0], t[0]]
        rows[variant] = {
            "median_ms": statistics.median(t),
            "q1_ms": q[0],
            "q3_ms": q[2],
            "ratio_to_plain": statistics.median(t) / statistics.median(plain),
            "paired_ratio_to_plain": paired_ratio(t, plain),
            "times_ms": t,
        }
    for other in ("dropconnect", "copy-restore"):
        rows["ddc"][f"paired_ratio_to_{other}"] = paired_ratio(
            runners["ddc"].times_ms, runners[other].times_ms
        )
    regs = ddc.regularized_layers(runners["ddc"].model)
    return {
        "description": work.description,
        "batch": work.input_shape[0],
        "reps": work.reps,
        "steps_per_rep": work.steps_per_rep,
        "regularized_layers": {n: list(r.grad_magnitude.shape) for n, r in regs.items()},  # type: ignore[union-attr]
        "variants": rows,
    }


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------
# Transient weight-sized tensors of one DDC step beyond DropConnect's, counted from the code
# path of functional.ddc_drop_probabilities (|g|, z, sigmoid, 1 - sigmoid, where + bool) and
# record_gradient (|g|, where). Units: numel x element size. Checked by measure_transient().
PROBS_PEAK_COPIES = 4.25  # |g|, z, q, where-result alive together, plus a bool mask (1/4)
MASK_COPIES = 3.0  # probs + mask + scale (uniform 1 + bool 1/4 freed before scale)
W_EFF_COPIES = 1.0  # W_eff, held from forward until backward (DropConnect too)
RECORD_COPIES = 2.0  # |g| and the where-result in backward


def buffer_report(model: nn.Module) -> list[dict[str, Any]]:
    out = []
    for name, reg in ddc.regularized_layers(model).items():
        numel = reg.grad_magnitude.numel()  # type: ignore[union-attr]
        elsize = reg.grad_magnitude.element_size()  # type: ignore[union-attr]
        buffers = sum(b.numel() * b.element_size() for b in reg.buffers())
        out.append(
            {
                "layer": name,
                "numel": numel,
                "buffer_bytes": buffers,
                "transient_peak_bytes_estimate": int(
                    max(PROBS_PEAK_COPIES, MASK_COPIES + W_EFF_COPIES) * numel * elsize
                ),
                "held_until_backward_bytes_estimate": int(W_EFF_COPIES * numel * elsize),
            }
        )
    return out


MEMORY_CASES: dict[str, dict[str, Any]] = {
    # One big layer (4096x4096 = 64 MiB of weight): peak extra of one training step, in
    # units of the weight's bytes, checks the analytic transient counts.
    "big-plain": {"model": "big", "method": None},
    "big-dropconnect": {"model": "big", "method": "dropconnect"},
    "big-ddc": {"model": "big", "method": "ddc"},
    # mask_mode="example" at batch 128 on VGG13BN's classifier (512x512 Linears: 1 MiB a weight,
    # 3 MiB per example and layer: 384 MiB per layer unchunked, 2 chunks at 256 MiB).
    "vgg-plain": {"model": "vgg", "method": None},
    "vgg-sample-256MiB": {"model": "vgg", "method": "ddc", "max_mask_bytes": 256 * MiB},
    "vgg-sample-64MiB": {"model": "vgg", "method": "ddc", "max_mask_bytes": 64 * MiB},
    "vgg-sample-nochunk": {"model": "vgg", "method": "ddc", "max_mask_bytes": 2**62},
    # the paper's SimpleCNN1 (linear1: 64 KiB a weight; 24 MiB for the batch, fits one chunk)
    "cnn-plain": {"model": "cnn", "method": None},
    "cnn-sample-256MiB": {"model": "cnn", "method": "ddc", "max_mask_bytes": 256 * MiB},
}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``getrusage``'s ``ru_maxrss`` keeps
    the parent's RSS at fork time across ``exec``, so a child of a big parent would report it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_child(case: str, device_name: str, threads: int | None) -> None:
    """Run one case in this (fresh) process and print its peak memory as JSON."""
    if threads:
        torch.set_num_threads(threads)
    spec = MEMORY_CASES[case]
    device = torch.device(device_name)
    torch.manual_seed(0)
    if spec["model"] == "big":
        model: nn.Module = nn.Sequential(nn.Linear(4096, 4096))
        x = torch.randn(8, 4096, device=device)
        y = torch.randint(0, 10, (8,), device=device)
        include = ["0"]
    elif spec["model"] == "vgg":
        model = VGG13BN(num_classes=10, in_channels=3, image_size=32)
        x = torch.randn(128, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        include = ["linear*"]
    else:
        model = SimpleCNN1(num_classes=10, in_channels=1, image_size=28)
        x = torch.randn(128, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (128,), device=device)
        include = ["linear1"]
    model.to(device).train()
    if spec["method"] == "dropconnect":
        ddc.apply(model, "dropconnect", include=include, p=0.5)
    elif spec["method"] == "ddc":
        options = {"mask_mode": "example"} if "max_mask_bytes" in spec else {}
        if "max_mask_bytes" in spec:
            options["max_mask_bytes"] = spec["max_mask_bytes"]
        ddc.apply(model, "ddc", include=include, **options)
    # SGD without momentum: the optimizer adds no state, only the model and the step count.
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(3):  # step 1 has no gradient statistic yet; steps 2-3 are the steady state
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        kind = "cuda_max_memory_allocated"
    else:
        peak, kind = peak_rss_bytes(), "peak_rss"
    print(json.dumps({"case": case, "peak_bytes": peak, "kind": kind}))


def run_memory_case(case: str, device: torch.device, threads: int | None) -> int:
    env = dict(os.environ)
    # every block of 128 KiB or more via mmap: a freed tensor leaves the RSS immediately
    env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", case]
    cmd += ["--device", device.type] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_bytes"])


def memory_checks(device: torch.device, threads: int | None, quick: bool) -> dict[str, Any]:
    cases = ["cnn-plain", "cnn-sample-256MiB"]
    if not quick:
        cases = [*MEMORY_CASES]
    peaks = {case: run_memory_case(case, device, threads) for case in cases}
    result: dict[str, Any] = {"peak_bytes": peaks}
    if "big-plain" in peaks:
        weight_bytes = 4096 * 4096 * 4
        result["big_layer_extra_in_weight_copies"] = {
            method: (peaks[f"big-{method}"] - peaks["big-plain"]) / weight_bytes
            for method in ("dropconnect", "ddc")
        }
    extra = {}
    for case in peaks:
        model = case.split("-")[0]
        if "sample" in case:
            extra[case] = peaks[case] - peaks[f"{model}-plain"]
    result["sample_extra_bytes"] = extra
    return result


# --------------------------------------------------------------------------------------------
# profile: which ops DDC adds to a DropConnect step
# --------------------------------------------------------------------------------------------
def profile_ops(work: Workload, device: torch.device, steps: int = 10) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    runners = build_runners(work, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    tables = {}
    for variant in ("dropconnect", "ddc"):
        runner = runners[variant]
        for _ in range(3):
            runner.step()
        sync(device)
        with profile(activities=activities) as prof:
            for _ in range(steps):
                runner.step()
            sync(device)
        tables[variant] = {
            e.key: (e.count / steps, e.self_cpu_time_total / steps) for e in prof.key_averages()
        }
    rows = []
    for key in set(tables["ddc"]) | set(tables["dropconnect"]):
        c_ddc, t_ddc = tables["ddc"].get(key, (0.0, 0.0))
        c_dc, t_dc = tables["dropconnect"].get(key, (0.0, 0.0))
        if c_ddc != c_dc or abs(t_ddc - t_dc) > 20.0:
            rows.append(
                {
                    "op": key,
                    "calls_ddc": c_ddc,
                    "calls_dropconnect": c_dc,
                    "self_us_ddc": t_ddc,
                    "self_us_dropconnect": t_dc,
                    "extra_us": t_ddc - t_dc,
                }
            )
    rows.sort(key=lambda r: -r["extra_us"])
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def check(label: str, value: float, limit: float, results: list[dict[str, Any]]) -> None:
    ok = value <= limit
    print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value:.3f} (target <= {limit:.2f})")
    results.append({"check": label, "value": value, "limit": limit, "pass": ok})


def print_table(name: str, res: dict[str, Any]) -> None:
    print(f"\n== {name}: {res['description']} ({res['reps']} reps x {res['steps_per_rep']} steps)")
    print(f"   regularized: {', '.join(res['regularized_layers'])}")
    print(f"   {'variant':<15}{'median ms':>10}{'IQR ms':>16}{'ratio':>8}{'paired':>8}")
    for variant, row in res["variants"].items():
        iqr = f"{row['q1_ms']:.2f}-{row['q3_ms']:.2f}"
        print(
            f"   {variant:<15}{row['median_ms']:>10.2f}{iqr:>16}"
            f"{row['ratio_to_plain']:>8.3f}{row['paired_ratio_to_plain']:>8.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per model")
    parser.add_argument("--quick", action="store_true", help="few reps, for a CI smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=str, default=None, help="write the results here")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory section")
    parser.add_argument("--no-profile", action="store_true", help="skip the op profile")
    parser.add_argument("--profile-only", action="store_true", help="only the op profile")
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.device, args.threads)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, ddc {ddc.__version__}, device {device}, "
        f"threads {torch.get_num_threads()}, python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    load_start = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_start:.2f} on {os.cpu_count()} CPUs")
    if load_start > 0.5:
        print("WARNING: other processes are running; CPU timings will be noisy (try --threads 1)")
    results: dict[str, Any] = {
        "load_average_start": load_start,
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    works = workloads(args.quick, args.reps)
    if not args.profile_only:
        timing = {}
        for work in works:
            timing[work.name] = benchmark(work, device)
            print_table(work.name, timing[work.name])
        results["timing"] = timing

        print(
            "\n== targets (paired ratio: median over repetitions of the ratio of the two "
            "variants' steps in the same repetition)"
        )
        checks: list[dict[str, Any]] = []
        v = {name: res["variants"] for name, res in timing.items()}
        lim = {"cnn-linear1": 1.03, "cnn-all": 1.10}
        for name, limit in lim.items():
            check(f"{name:<14} DDC / plain", v[name]["ddc"]["paired_ratio_to_plain"], limit, checks)
        for name in timing:
            ratio = v[name]["ddc"]["paired_ratio_to_dropconnect"]
            check(f"{name:<14} DDC / DropConnect", ratio, 1.02, checks)
        for name in timing:
            ratio = v[name]["ddc"]["paired_ratio_to_copy-restore"]
            check(f"{name:<14} DDC / copy-restore", ratio, 1.0, checks)
        results["checks"] = checks

    if not args.no_profile and not args.quick:
        work = works[1]
        print(f"\n== op profile, {work.name}: per step, ops whose count or time differ")
        rows = profile_ops(work, device)
        print(f"   {'op':<34}{'calls ddc':>10}{'calls dc':>9}{'us ddc':>9}{'us dc':>9}{'extra':>8}")
        for r in rows[:20]:
            print(
                f"   {r['op'][:33]:<34}{r['calls_ddc']:>10.1f}{r['calls_dropconnect']:>9.1f}"
                f"{r['self_us_ddc']:>9.1f}{r['self_us_dropconnect']:>9.1f}{r['extra_us']:>8.1f}"
            )
        total = sum(r["extra_us"] for r in rows)
        print(f"   sum of extra self time (listed and unlisted): {total:.0f} us/step")
        results["profile"] = rows

    if not args.no_memory and not args.profile_only:
        print("\n== memory per regularized layer (DDC, batch mask)")
        model = ddc.apply(
            SimpleCNN1(num_classes=10, in_channels=1, image_size=28),
            "ddc",
            include=["features.*", "linear*"],
        )
        layers = buffer_report(model)
        print(
            f"   {'layer':<12}{'numel':>8}{'buffers B':>11}{'transient peak B':>18}"
            f"{'held to bwd B':>15}"
        )
        for row in layers:
            print(
                f"   {row['layer']:<12}{row['numel']:>8}{row['buffer_bytes']:>11}"
                f"{row['transient_peak_bytes_estimate']:>18}"
                f"{row['held_until_backward_bytes_estimate']:>15}"
            )
        print("   buffers: exact (grad_magnitude numel x 4 B, has_gradient 1 B, two 4 B monitors).")
        print(
            f"   transient: ANALYTIC estimate, numel x 4 B x {PROBS_PEAK_COPIES} (peak while "
            f"computing p_ij), freed before the mask is drawn; W_eff x {W_EFF_COPIES} held "
            "until backward as in DropConnect."
        )
        mem = memory_checks(device, args.threads, args.quick)
        mem["layers"] = layers
        if "big_layer_extra_in_weight_copies" in mem:
            copies = mem["big_layer_extra_in_weight_copies"]
            print(
                "   measured, one 4096x4096 Linear (64 MiB): peak extra over plain = "
                f"{copies['dropconnect']:.2f} weight copies (DropConnect), "
                f"{copies['ddc']:.2f} (DDC, incl. its 1-copy buffer)"
            )
        what = "peak RSS" if device.type == "cpu" else "max_memory_allocated"
        print(f"\n== mask_mode='example', batch 128: peak extra memory over plain ({what})")
        for case, extra in mem["sample_extra_bytes"].items():
            print(f"   {case:<22}{extra / MiB:>9.1f} MiB")
        checks = results.setdefault("checks", [])
        for case, extra in mem["sample_extra_bytes"].items():
            if case.endswith("MiB"):
                budget = int(case.rsplit("-", 1)[1][:-3])
                check(f"{case} extra MiB / budget MiB", extra / MiB / budget, 1.0, checks)
        results["memory"] = mem

    results["wall_s"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()[0]
    print(
        f"\nload average (1 min) at end: {results['load_average_end']:.2f} (this process adds "
        f"up to {torch.get_num_threads()})"
    )
    print(f"\nwall time {results['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
