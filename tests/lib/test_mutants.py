"""Tests that each catch one small, plausible bug in the library core (mutation tests).

Each test names the one-line bug it guards against. All of them were checked to fail with
that bug applied to a copy of ``src/`` and to pass on the real code.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

import dynamic_dropconnect as ddc
from dynamic_dropconnect import functional as F


@pytest.mark.parametrize("direction", ["big", "small"])
@pytest.mark.parametrize("value", [0.3, 0.0])
def test_mutant_zscore_eps_in_divisor(direction: F.Direction, value: float) -> None:
    """Bug: ``eps`` moved from the z-score's divisor ``std + eps`` into its numerator.

    An all-equal statistic has ``std = 0``: with ``eps`` in the divisor ``z = 0`` and every
    edge gets ``q = 1/2 <= tau``, i.e. rate ``p``; with ``eps`` in the numerator
    ``z = +-eps / 0 = +-inf`` and, for one of the two directions, ``q = 1``: rate ``p + pg``.
    """
    grad = torch.full((4, 5), value)
    probs = F.ddc_drop_probabilities(grad, p=0.2, pg=0.5, direction=direction)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs, torch.full((4, 5), 0.2), rtol=0.0, atol=1e-7)


def _per_sample_statistic(update: str) -> Tensor:
    """``grad_magnitude`` after one forward/backward of a per-example-mask linear layer."""
    torch.manual_seed(0)
    layer = ddc.apply(
        nn.Linear(6, 5),
        "ddc",
        include=[""],
        mask_mode="example",
        update=update,
        generator=torch.Generator().manual_seed(3),
    )
    x = torch.randn(8, 6)
    upstream = torch.randn(8, 5)
    layer(x).backward(upstream)
    reg = layer.regularizer
    assert isinstance(reg, ddc.DynamicDropConnect)
    assert bool(reg.has_gradient)
    return reg.grad_magnitude.detach().clone()


def test_mutant_per_sample_masked_records_effective_gradient() -> None:
    """Bug: in ``mask_mode="example"`` with ``update="masked"`` the recorded statistic is
    ``|dL/dW|`` (the masked weight gradient) instead of ``|dL/dW_eff|``.

    The statistic is dense in both update modes: same weights, input and generator, so the
    masked run must record exactly what the dense run records.
    """
    dense = _per_sample_statistic("dense")
    masked = _per_sample_statistic("masked")
    assert dense.abs().sum() > 0
    torch.testing.assert_close(masked, dense, rtol=1e-6, atol=1e-7)


def _two_layer(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return ddc.apply(
        model, "dropconnect", p=0.5, generator=torch.Generator().manual_seed(seed + 100)
    )


def test_mutant_checkpoint_rng_stack_pops_newest() -> None:
    """Bug: the checkpoint generator-state stack ``_rng_states`` popped from the oldest end.

    After several plain training forwards (each stashes a generator state), a forward under
    non-reentrant ``torch.utils.checkpoint`` is recomputed in backward and must replay the
    mask of *its own* forward (the newest state), so all gradients equal the plain run's.
    """
    plain, ckpt = _two_layer(0), _two_layer(0)
    x_data = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    for model in (plain, ckpt):
        for _ in range(3):  # plain training forwards: each stashes one generator state
            model(x_data).sum().backward()
        model.zero_grad()
    x_plain = x_data.clone().requires_grad_()
    x_ckpt = x_data.clone().requires_grad_()
    plain(x_plain).pow(2).sum().backward()
    out = checkpoint(ckpt, x_ckpt, use_reentrant=False)
    assert isinstance(out, Tensor)
    out.pow(2).sum().backward()
    torch.testing.assert_close(x_ckpt.grad, x_plain.grad, rtol=1e-6, atol=1e-7)
    for (name, p_plain), p_ckpt in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert p_plain.grad is not None and p_ckpt.grad is not None, name
        torch.testing.assert_close(p_ckpt.grad, p_plain.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_mutant_per_sample_advances_generator() -> None:
    """Bug: the per-example path does not advance the caller's generator (it draws from a
    copy and never writes the copy's state back).

    Two forwards in a row must draw different masks, and after one forward the generator must
    be exactly where one ``sample_keep_mask(w, p, g, batch=B)`` call leaves it.
    """
    batch, seed = 7, 5
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(0)
    layer = ddc.apply(
        nn.Linear(6, 5), "ddc", include=[""], mask_mode="example", generator=generator
    )
    x = torch.randn(batch, 6)
    with torch.no_grad():
        first = layer(x)
        after_first = generator.get_state()
        second = layer(x)
    assert not torch.equal(first, second), "two forwards drew the same per-example masks"

    reference = torch.Generator().manual_seed(seed)
    F.sample_keep_mask(layer.weight.detach(), 0.3, reference, batch=batch)
    assert torch.equal(after_first, reference.get_state())


def test_mutant_learned_expected_rescale() -> None:
    """Bug: LearnedDropConnect without its ``1 / (1 - mean p)`` rescale (default
    ``rescale="expected"``).

    With it, the Monte-Carlo mean of ``W_eff / W`` over edges and draws is 1 up to the
    relaxation (here every ``p_ij = target = 0.5``; without the rescale it is about 0.5).
    """
    reg = ddc.LearnedDropConnect(target=0.5, generator=torch.Generator().manual_seed(0))
    assert reg.rescale == "expected"
    weight = torch.linspace(0.5, 2.0, 32 * 32).view(32, 32)
    reg.train()
    with torch.no_grad():
        ratios = torch.stack([reg(weight) / weight for _ in range(40)])
    # 40 draws of 1024 edges, each ratio in [0, 2]: standard error of the mean about 0.005.
    assert abs(ratios.mean().item() - 1.0) < 0.03


def test_mutant_module_p_max_clamp() -> None:
    """Bug: ``DynamicDropConnect`` no longer passes ``p_max`` to the probability function.

    ``p + pg = 1.1 > p_max``: after a backward whose gradient is 0 on 20 % of the edges and 1
    elsewhere (``z`` about -2 there, so ``q`` about 0.88), the unclamped rate is about 1.03.
    """
    reg = ddc.DynamicDropConnect(p=0.5, pg=0.6, p_max=0.95)
    weight = torch.randn(10, 10, generator=torch.Generator().manual_seed(0)).requires_grad_()
    upstream = torch.ones(10, 10)
    upstream[::3, ::2] = 0.0  # 20 of 100 edges get no gradient: far below the mean
    reg.train()
    reg(weight).backward(upstream)
    assert bool(reg.has_gradient)
    unclamped = F.ddc_drop_probabilities(reg.grad_magnitude, 0.5, 0.6, p_max=None)
    assert unclamped.max() > 1.0  # the clamp has something to do
    probs = reg.drop_probabilities(weight)
    assert probs.max() <= 0.95 + 1e-7
    assert probs.max() >= 0.95 - 1e-7  # and it binds
