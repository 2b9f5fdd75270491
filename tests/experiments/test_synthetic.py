"""Tests of the Figure 1 simulation (2-D linear regression under edge dropping)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dynamic_dropconnect.experiments import synthetic as syn

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INIT = syn.INITS[0]


def _plain_gd(init: tuple[float, float], epochs: int, lr: float) -> np.ndarray:
    """Hand-rolled full-batch gradient descent on the MSE, in numpy."""
    data = syn.make_data()
    x, y = data.x.numpy(), data.y.numpy()
    w = np.array(init, dtype=np.float64)
    path = [w.copy()]
    for _ in range(epochs):
        w = w - lr * 2.0 / len(y) * x.T @ (x @ w - y)
        path.append(w.copy())
    return np.stack(path)


def test_none_is_plain_gradient_descent() -> None:
    path = syn.simulate("none", INIT, epochs=25, lr=0.1)
    assert path.shape == (26, 2)
    np.testing.assert_allclose(path, _plain_gd(INIT, 25, 0.1), rtol=0, atol=1e-12)
    # and GD with a small enough step goes down the loss monotonically to near the optimum
    long = syn.loss_curve("none", INIT, epochs=2000, lr=0.2)
    assert np.all(np.diff(long) <= 1e-15)
    data = syn.make_data()
    assert long[-1] == pytest.approx(float(syn.mse(data, data.optimum())), rel=1e-6)


def test_simulate_is_deterministic_per_seed() -> None:
    for method in ("ddc", "ddc-big-gradient", "dropconnect"):
        a = syn.simulate(method, INIT, epochs=25, seed=3)
        b = syn.simulate(method, INIT, epochs=25, seed=3)
        c = syn.simulate(method, INIT, epochs=25, seed=4)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), method


def test_dropping_paths_differ() -> None:
    none = syn.simulate("none", INIT, seed=0)
    ddc = syn.simulate("ddc", INIT, seed=0)
    big = syn.simulate("ddc-big-gradient", INIT, seed=0)
    assert not np.allclose(ddc, none)
    assert not np.allclose(ddc, big)
    np.testing.assert_array_equal(ddc[0], np.array(INIT))


def test_zero_rates_reduce_to_plain_descent() -> None:
    none = syn.simulate("none", INIT, seed=0)
    np.testing.assert_allclose(syn.simulate("ddc", INIT, seed=0, p=0.0, pg=0.0), none, atol=1e-12)
    np.testing.assert_allclose(
        syn.simulate("dropconnect", INIT, seed=0, dropconnect_rate=0.0), none, atol=1e-12
    )


def test_gradient_magnitudes_differ() -> None:
    """The data make the two weights' gradients clearly different (the premise of Figure 1)."""
    data = syn.make_data()
    for init in syn.INITS:
        g = data.gradient(torch.tensor(init, dtype=torch.float64)).abs()
        assert max(g) > 2 * min(g)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        syn.simulate("dropout", INIT)
    with pytest.raises(ValueError, match="init"):
        syn.simulate("none", (1.0, 2.0, 3.0))


def test_final_losses_shape() -> None:
    out = syn.final_losses(seeds=(0, 1, 2), epochs=5)
    assert set(out) == set(syn.UPDATE_RULES)
    for method, per_init in out.items():
        assert len(per_init) == len(syn.INITS)
        for stats in per_init.values():
            assert len(stats["curve_mean"]) == 6 and np.isfinite(stats["final_mean"])
            assert stats["n_seeds"] == (1 if method == "none" else 3)


@pytest.mark.slow
def test_figure_and_json_written(tmp_path: Path) -> None:
    png = syn.plot_figure1(tmp_path / "fig.png", epochs=10, seed=1)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    result = syn.run_synthetic(tmp_path / "out", seed=0)
    assert (tmp_path / "out" / "figure1.png").read_bytes()[:8] == PNG_MAGIC
    on_disk = json.loads((tmp_path / "out" / "synthetic.json").read_text())
    assert set(on_disk["losses"]) == set(syn.UPDATE_RULES)
    assert on_disk["protocol"]["mask_seeds"] == list(range(syn.N_MASK_SEEDS))
    for key, check in result["checks"].items():
        assert sorted(check["ranking_by_final_loss"]) == sorted(syn.UPDATE_RULES)
        assert on_disk["checks"][key] == check
