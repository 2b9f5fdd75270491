"""Train one (experiment, method, seed), optionally with DistributedDataParallel.

    torchrun --nproc_per_node 2 -m dynamic_dropconnect.experiments.run \
        --experiment mnist-simplecnn1 --method ddc --seed 0 --out runs/ddp-mnist

Under ``torchrun`` the process group is initialised from the environment (gloo on CPU, NCCL on
CUDA; each rank uses ``cuda:LOCAL_RANK``), every rank trains on its share of each global batch
of ``batch_size`` examples, and rank 0 writes ``RUN_DIR/runs/<method>/seed<k>/``. Without
``torchrun`` it is a single-process run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from .config import EXPERIMENTS, get_experiment
from .methods import METHODS
from .suite import shortened
from .training import RunSpec, prepare_data, train_run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS))
    parser.add_argument("--method", default="ddc", choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--subset", type=int)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device
    if distributed:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    try:
        experiment = shortened(get_experiment(args.experiment), args.epochs)
        data = prepare_data(
            experiment, seed=args.seed, data_dir=args.data_dir, subset=args.subset, device=device
        )
        spec = RunSpec(experiment, args.method, args.seed, device)
        out = args.out / "runs" / args.method / f"seed{args.seed}"
        result = train_run(spec, out, data, resume=args.resume, progress=False)
        if not distributed or dist.get_rank() == 0:
            print(result)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
