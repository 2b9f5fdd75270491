"""Small helpers shared by several test files (tiny models, run-directory readers)."""

from __future__ import annotations

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
