"""Every script in examples/ runs to the end on CPU and prints what it promises."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# script -> a line its output must contain
EXPECTED = {
    "plain_loop.py": "after remove: ['Linear', 'ReLU', 'Linear']",
    "transformer_encoder.py": "MC-DDC: accuracy",
    "awd_lstm.py": "epoch 30: validation perplexity",
    "huggingface_bert.py": "from_pretrained of the plain checkpoint gives the same eval logits: "
    "True",
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    if script.startswith("huggingface") and importlib.util.find_spec("transformers") is None:
        pytest.skip("needs the huggingface extra (transformers)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # each under a minute on one core
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXPECTED[script] in proc.stdout, proc.stdout[-3000:]
