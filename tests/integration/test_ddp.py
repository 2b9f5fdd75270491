"""DynamicDropConnect under DistributedDataParallel: two CPU processes with gloo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import dynamic_dropconnect as ddc

WORLD = 2


def _worker(rank: int, init_file: str, out_dir: str, broadcast_buffers: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # same initial weights on every rank
    model = ddc.apply(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), "ddc")
    torch.manual_seed(100 + rank)  # different masks and data shards per rank
    ddp = DistributedDataParallel(model, broadcast_buffers=broadcast_buffers)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = torch.randn(32, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    losses = []
    for _ in range(6):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ddp(x)  # one more forward: DDP broadcasts buffers (if asked) before it
    torch.save({"state": model.state_dict(), "losses": losses}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("broadcast_buffers", [True, False])
def test_two_process_gloo_training(tmp_path: Path, broadcast_buffers: bool) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(
        _worker,
        args=(str(tmp_path / "init"), str(tmp_path), broadcast_buffers),
        nprocs=WORLD,
        join=True,
    )
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    states = [r["state"] for r in results]
    for key in ("0.weight", "0.bias", "2.weight"):
        torch.testing.assert_close(states[0][key], states[1][key])  # DDP kept them in sync
    for r in results:
        assert all(torch.isfinite(torch.tensor(r["losses"])))
        assert r["state"]["0.regularizer.has_gradient"]
    same_stat = torch.equal(
        states[0]["0.regularizer.grad_magnitude"], states[1]["0.regularizer.grad_magnitude"]
    )
    # Each backward records the rank's own local gradient; with broadcast_buffers=True the
    # next forward overwrites it with rank 0's, as the DynamicDropConnect docstring says.
    assert same_stat == broadcast_buffers


class _SeqModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rnn(x)[0]
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


def _parameter_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ddc.apply(_SeqModel(), "ddc", include=["rnn", "attn"])
    torch.manual_seed(100 + rank)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = torch.randn(16, 5, 8)
    y = (x[:, 0, 0] > 0).long()
    for _ in range(4):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    torch.save(model.state_dict(), Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_training_on_parameter_targets(tmp_path: Path) -> None:
    # DDC on an LSTM's weight_hh and an attention's projections (forward hooks) under DDP.
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_parameter_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for key in ("rnn.weight_hh_l0", "attn.in_proj_weight", "attn.out_proj.weight"):
        torch.testing.assert_close(states[0][key], states[1][key])  # in sync
    for state in states:
        assert state["rnn.weight_hh_l0_regularizer.has_gradient"]
        assert state["attn.out_proj.weight_regularizer.grad_magnitude"].abs().sum() > 0
