"""mask_mode="example": one mask per example, chunked, equal to a naive per-example loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.functional import rescale_factor, sample_keep_mask


def _naive_masks(
    weight: torch.Tensor, probs: float | torch.Tensor, batch: int, seed: int, chunk: int
) -> torch.Tensor:
    """The masks the chunked implementation draws: chunk by chunk from one generator."""
    gen = torch.Generator().manual_seed(seed)
    masks = [
        sample_keep_mask(weight, probs, gen, batch=min(chunk, batch - s))
        for s in range(0, batch, chunk)
    ]
    return torch.cat(masks)


@pytest.mark.parametrize("update", ["dense", "masked"])
def test_linear_matches_per_example_loop(update: str) -> None:
    torch.manual_seed(0)
    layer = ddc.apply(
        nn.Linear(6, 5),
        "dropconnect",
        include=[""],
        p=0.4,
        mask_mode="example",
        update=update,
        generator=torch.Generator().manual_seed(11),
    )
    x = torch.randn(7, 6, requires_grad=True)
    y = layer(x)
    upstream = torch.randn_like(y)
    y.backward(upstream)

    masks = _naive_masks(layer.weight, 0.4, 7, seed=11, chunk=7)
    w = layer.weight.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    effs = []
    outs = []
    for b in range(7):
        eff = w * masks[b] / rescale_factor(masks[b], 0.4, "empirical")
        if update == "dense":
            eff = eff.detach().requires_grad_()
        effs.append(eff)
        outs.append(F.linear(x_ref[b], eff, layer.bias.detach()))
    ref = torch.stack(outs)
    ref.backward(upstream)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)
    expected_w_grad = sum(e.grad for e in effs) if update == "dense" else w.grad
    torch.testing.assert_close(layer.weight.grad, expected_w_grad)
    assert layer.bias.grad is not None
    # masks differ between examples
    assert not torch.equal(masks[0], masks[1])


def test_chunking_does_not_change_results() -> None:
    torch.manual_seed(0)
    x = torch.randn(9, 3, 6, 6)

    def run(max_bytes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conv = nn.Conv2d(3, 4, 3, padding=1)
        conv.load_state_dict(base.state_dict())
        ddc.apply(
            conv,
            "ddc",
            include=[""],
            mask_mode="example",
            max_mask_bytes=max_bytes,
            generator=torch.Generator().manual_seed(5),
        )
        out = conv(x)
        out.square().sum().backward()
        return out, conv.weight.grad, conv.regularizer.grad_magnitude

    base = nn.Conv2d(3, 4, 3, padding=1)
    one_chunk = run(2**30)
    per_example = run(1)  # budget below one example: chunks of 1
    for a, b in zip(one_chunk, per_example, strict=True):
        torch.testing.assert_close(a, b)


def test_conv_example_mode_with_p_zero_equals_plain_conv() -> None:
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, groups=1)
    x = torch.randn(4, 2, 9, 9)
    expected = conv(x)
    ddc.apply(conv, "dropconnect", include=[""], p=0.0, mask_mode="example")
    torch.testing.assert_close(conv(x), expected)
    grouped = nn.Conv2d(4, 4, 3, groups=2, padding_mode="circular", padding=1)
    expected = grouped(torch.ones(3, 4, 5, 5))
    ddc.apply(grouped, "dropconnect", include=[""], p=0.0, mask_mode="example")
    torch.testing.assert_close(grouped(torch.ones(3, 4, 5, 5)), expected)


def test_example_mode_records_gradient_and_needs_batch() -> None:
    layer = ddc.apply(nn.Linear(4, 2), "ddc", include=[""], mask_mode="example")
    layer(torch.randn(3, 4)).sum().backward()
    assert layer.regularizer.has_gradient
    with pytest.raises(ValueError, match="batch dimension"):
        layer(torch.randn(4))
    layer.eval()
    assert layer(torch.randn(4)).shape == (2,)
