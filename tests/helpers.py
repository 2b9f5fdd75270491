"""Small helpers shared by several test files (tiny models, run-directory readers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def tiny_gpt2(transformers: Any) -> torch.nn.Module:
    """A 2-layer GPT-2 built from a config (nothing downloaded), seeded."""
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def metrics_without_time(path: Path) -> list[list[str]]:
    """The rows of a run's ``metrics.csv`` without the wall-clock ``seconds`` column."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    seconds = rows[0].index("seconds")
    return [row[:seconds] + row[seconds + 1 :] for row in rows]


SRC = Path(__file__).resolve().parents[1] / "src"


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python process that must import this checkout, one thread."""
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def classification_step(model: torch.nn.Module, x: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """One backward of cross-entropy against labels ``0, 1, .., classes-1, 0, ..`` after
    ``zero_grad(set_to_none=True)`` (so a regularizer's statistic must come from backward)."""
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(len(x)) % classes)
    loss.backward()
    return loss
