"""DynamicDropConnect / DropConnect modules: statistic capture, rescaling, update rules, state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import dynamic_dropconnect as ddc


def _layer(seed: int = 0, **hyper: object) -> nn.Linear:
    torch.manual_seed(seed)
    return ddc.apply(nn.Linear(12, 8), "ddc", include=[""], **hyper)  # type: ignore[return-value]


def _step(layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = F.mse_loss(layer(x), target)
    loss.backward()
    return loss


def _grad_wrt_effective_weight(
    layer: nn.Linear, x: torch.Tensor, t: torch.Tensor, eff: torch.Tensor
):
    """dL/dW_eff computed independently with autograd on a leaf copy of W_eff."""
    eff = eff.detach().requires_grad_()
    F.mse_loss(F.linear(x, eff, layer.bias.detach()), t).backward()
    return eff.grad


class _Capture:
    """Records the effective weight a layer used in its last forward."""

    def __init__(self, layer: nn.Linear) -> None:
        self.eff: torch.Tensor | None = None
        original = layer.regularizer.forward

        def wrapped(weight: torch.Tensor) -> torch.Tensor:
            self.eff = original(weight)
            return self.eff

        layer.regularizer.forward = wrapped  # type: ignore[method-assign]


def test_gradient_accumulation_keeps_most_recent_backward() -> None:
    layer = _layer()
    cap = _Capture(layer)
    x1, t1, x2, t2 = torch.randn(8, 12), torch.randn(8, 8), torch.randn(8, 12), torch.randn(8, 8)
    _step(layer, x1, t1)
    first = layer.weight.grad.clone()
    _step(layer, x2, t2)  # accumulates into .grad
    torch.testing.assert_close(layer.regularizer.grad_magnitude, (layer.weight.grad - first).abs())
    torch.testing.assert_close(
        layer.regularizer.grad_magnitude, _grad_wrt_effective_weight(layer, x2, t2, cap.eff).abs()
    )


@pytest.mark.parametrize("rescale", ["empirical", "expected", "per_edge", "none"])
def test_kept_weights_scaled_by_exactly_one_over_k(rescale: str) -> None:
    layer = _layer(rescale=rescale)
    _step(layer, torch.randn(8, 12), torch.randn(8, 8))  # get a non-trivial statistic
    reg = layer.regularizer
    gen_state = torch.get_rng_state()
    probs = reg.drop_probabilities(layer.weight)
    torch.set_rng_state(gen_state)
    eff = reg(layer.weight).detach()
    kept = eff != 0
    k = {
        "empirical": kept.float().mean(),
        "expected": 1 - probs.mean(),
        "per_edge": 1 - probs,
        "none": torch.tensor(1.0),
    }[rescale]
    ratio = (layer.weight.detach() / k).expand_as(eff)
    torch.testing.assert_close(eff[kept], ratio[kept], rtol=1e-6, atol=0)


@pytest.mark.slow
def test_realized_drop_rates_match_probabilities() -> None:
    layer = _layer()
    reg = layer.regularizer
    reg.grad_magnitude.copy_(torch.rand(8, 12, generator=torch.Generator().manual_seed(5)))
    reg.has_gradient.fill_(True)
    probs = reg.drop_probabilities(layer.weight)
    draws = 4000
    dropped = torch.stack([reg(layer.weight).detach() == 0 for _ in range(draws)]).float()
    tol = 4.5 * torch.sqrt(probs * (1 - probs) / draws)
    assert torch.all((dropped.mean(0) - probs).abs() <= tol)
    # and the layer-wise mean drop rate is about 0.5 at the defaults for uniform statistics
    assert dropped.mean().item() == pytest.approx(probs.mean().item(), abs=0.01)


def test_first_step_default_drops_at_base_rate_reference_not_at_all() -> None:
    torch.manual_seed(0)
    w = torch.randn(200, 100)
    default = ddc.DynamicDropConnect(tau=0.0)  # tau=0 would give p+pg/2 on a zero statistic
    default.prepare(w)
    torch.testing.assert_close(default.drop_probabilities(w), torch.full_like(w, 0.3))
    assert (default(w) == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)

    reference = ddc.DynamicDropConnect(preset="reference")
    reference.prepare(w)
    assert torch.equal(reference(w), w)  # no drop, no scaling on the very first step
    reference.grad_magnitude.copy_(torch.rand_like(w))
    reference.has_gradient.fill_(True)
    expected = reference.drop_probabilities(w).mean().item()
    assert expected > 0.45  # mean p + pg * E[q] for a uniform statistic: about 0.47
    assert (reference(w) == 0).float().mean().item() == pytest.approx(expected, abs=0.01)


def test_reference_preset_rejects_contradicting_options() -> None:
    assert ddc.DynamicDropConnect(preset="reference").p_max is None
    with pytest.raises(ValueError, match="rescale"):
        ddc.DynamicDropConnect(preset="reference", rescale="expected")
    with pytest.raises(ValueError, match="p_max"):
        ddc.DynamicDropConnect(preset="reference", p_max=0.9)


def test_non_finite_gradient_leaves_statistic_and_weights_finite() -> None:
    layer = _layer()
    x, t = torch.randn(8, 12), torch.randn(8, 8)
    _step(layer, x, t)
    before = layer.regularizer.grad_magnitude.clone()
    layer.zero_grad()
    (layer(x).sum() * float("nan")).backward()  # an overflow step, as AMP's scaler would skip
    assert torch.equal(layer.regularizer.grad_magnitude, before)
    layer.zero_grad()
    (layer(x).sum() * float("inf")).backward()
    assert torch.equal(layer.regularizer.grad_magnitude, before)
    out = layer(x)
    assert torch.isfinite(out).all()
    fresh = _layer()
    fresh.zero_grad()
    (fresh(x).sum() * float("nan")).backward()
    assert not fresh.regularizer.has_gradient  # first step non-finite: still no statistic


def test_plain_checkpoint_loads_strictly_and_resets_statistic() -> None:
    plain = nn.Linear(12, 8)
    layer = _layer()
    _step(layer, torch.randn(4, 12), torch.randn(4, 8))
    layer.load_state_dict(plain.state_dict())  # strict: no missing-key error
    assert torch.equal(layer.weight, plain.weight)
    assert not layer.regularizer.has_gradient and layer.regularizer.grad_magnitude.abs().sum() == 0
    plain.load_state_dict(ddc.plain_state_dict(layer))


def test_generator_makes_masks_reproducible() -> None:
    w = torch.randn(30, 30)
    a = ddc.DropConnect(0.5, generator=torch.Generator().manual_seed(7))
    b = ddc.DropConnect(0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a(w), b(w)) and not torch.equal(a(w), a(w))


def test_weight_magnitude_ablation_uses_weight() -> None:
    w = torch.randn(20, 20)
    reg = ddc.DynamicDropConnect(statistic="weight", direction="big")
    torch.testing.assert_close(
        reg.drop_probabilities(w), ddc.functional.ddc_drop_probabilities(w, direction="big")
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.0}, r"DynamicDropConnect: p must be a number in \[0, 1\), got 1.0"),
        ({"p": -0.1}, "p must be a number in"),
        ({"tau": 1.5}, r"tau must be a number in \[0, 1\]"),
        ({"pg": -1.0}, "pg must be"),
        ({"p": 0.6, "pg": 0.5, "p_max": None}, "p \\+ pg = 1.1"),
        ({"p_max": 1.0}, "p_max must be"),
        ({"rescale": "sometimes"}, "'sometimes'"),
        ({"update": "sparse"}, "'sparse'"),
        ({"mask_mode": "token"}, "'token'"),
        ({"statistic": "hessian"}, "'hessian'"),
        ({"preset": "paper"}, "'paper'"),
        ({"eps": 0.0}, "eps must be"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ddc.DynamicDropConnect(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (
            ddc.DynamicDropConnect,
            {"p": "0.3"},
            r"DynamicDropConnect: p must be a number .*'0.3' \(str\)",
        ),
        (ddc.DynamicDropConnect, {"pg": None}, r"pg must be a number .*None \(NoneType\)"),
        (ddc.DynamicDropConnect, {"tau": True}, r"tau must be a number .*True \(bool\)"),
        (ddc.DropConnect, {"p": "half"}, r"DropConnect: p must be a number in \[0, 1\)"),
    ],
)
def test_wrong_types_are_named(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        cls(**kwargs)


def test_dropconnect_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="got 1.5"):
        ddc.DropConnect(1.5)
    with pytest.raises(TypeError, match="torch.Generator"):
        ddc.DropConnect(0.5, generator=3)  # type: ignore[arg-type]
    assert "p=0.5" in repr(ddc.DropConnect(0.5))
    text = repr(ddc.DynamicDropConnect(direction="big", zscore=False))
    assert "direction='big'" in text and "zscore=False" in text and "pg=0.5" in text


# -- exact resume of the mask randomness -----------------------------------------------------
RESUME_CASES = [
    ("dropconnect", {"p": 0.5}),
    ("ddc", {}),
    ("ddc", {"mask_mode": "example"}),
    ("ddc", {"statistic_update": "step"}),
    ("ddc-learned", {}),
]


def _resume_model(seed: int, method: str, options: dict) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    generator = torch.Generator().manual_seed(seed)
    ddc.apply(model, method, generator=generator, **options)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    g = torch.Generator().manual_seed(42)
    x, y = torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(("method", "options"), RESUME_CASES)
def test_generator_state_in_state_dict_resumes_bit_identically(method: str, options: dict) -> None:
    import io

    model, opt = _resume_model(0, method, options)
    _train(model, opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, opt, 3)  # the uninterrupted run

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    states = [k for k in saved["model"] if k.endswith("regularizer.generator_state")]
    assert len(states) == 2
    assert all(saved["model"][k].device.type == "cpu" for k in states)
    resumed, resumed_opt = _resume_model(99, method, options)  # other init, other generator
    resumed.load_state_dict(saved["model"])  # strict
    resumed_opt.load_state_dict(saved["opt"])
    _train(resumed, resumed_opt, 3)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoints_without_generator_state_still_load() -> None:
    model, _ = _resume_model(0, "ddc", {})
    _train(model, torch.optim.SGD(model.parameters(), lr=0.1), 1)
    # No generator: no extra key, as before.
    torch.manual_seed(0)
    no_gen = ddc.apply(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3)), "ddc")
    old = no_gen.state_dict()
    assert not any(k.endswith("generator_state") for k in old)
    before = model[0].regularizer.generator.get_state()
    model.load_state_dict(old)  # strict: an older checkpoint, no generator state in it
    assert torch.equal(model[0].regularizer.generator.get_state(), before)
    plain = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    model.load_state_dict(plain.state_dict())  # a plain model's checkpoint, strict
    plain.load_state_dict(ddc.plain_state_dict(model))  # and back
    with pytest.warns(UserWarning, match="global RNG"):
        no_gen.load_state_dict(model.state_dict())  # a generator state it cannot use
    bad = model.state_dict()
    bad["0.regularizer.generator_state"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="expected a uint8 tensor"):
        model.load_state_dict(bad)


def test_standout_generator_state_round_trip() -> None:
    module = ddc.Standout(generator=torch.Generator().manual_seed(1))
    x = torch.randn(64, 64)
    module(x)
    saved = copy.deepcopy(module.state_dict())
    expected = module(x)
    fresh = ddc.Standout(generator=torch.Generator().manual_seed(2))
    fresh.load_state_dict(saved)
    assert torch.equal(fresh(x), expected)
    fresh.load_state_dict({})  # older checkpoint: nothing to restore, strict


@pytest.mark.parametrize("save_after_step", [True, False])
def test_step_statistic_resumes_exactly_after_a_step_or_between_micro_batches(
    save_after_step: bool,
) -> None:
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(8, 10, generator=g), torch.randint(0, 3, (8,), generator=g))] * 2

    def micro_steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
        for _ in range(steps):
            for x, y in batches:
                F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()

    model, opt = _resume_model(0, "ddc", {"statistic_update": "step"})
    micro_steps(model, opt, 2)
    x, y = batches[0]
    if not save_after_step:  # half a step: one micro-batch's |g| is pending
        F.cross_entropy(model(x), y).backward()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    resumed, resumed_opt = _resume_model(99, "ddc", {"statistic_update": "step"})
    resumed.load_state_dict(saved[0])
    resumed_opt.load_state_dict(saved[1])
    for p, grad in zip(resumed.parameters(), grads, strict=True):
        p.grad = grad  # the training loop's accumulated .grad, as the run would have it
    for net, optimizer in ((model, opt), (resumed, resumed_opt)):
        if not save_after_step:
            F.cross_entropy(net(*batches[1][:1]), batches[1][1]).backward()
            optimizer.step()
            optimizer.zero_grad()
        micro_steps(net, optimizer, 2)
    for (name, a), b in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name


# -- a weight used more than once in one forward ---------------------------------------------
def _square(method: str = "ddc", seed: int = 0, **hyper: object) -> nn.Linear:
    torch.manual_seed(seed)
    return ddc.apply(nn.Linear(8, 8), method, include=[""], **hyper)  # type: ignore[return-value]


def _statistic(reg: nn.Module) -> torch.Tensor:
    """The |g| a backward recorded (statistic_update='step': the pending sum of one backward)."""
    if getattr(reg, "statistic_update", "backward") == "step":
        assert float(reg.pending_count) == 1
        return reg.pending_sum
    return reg.grad_magnitude


MULTI_USE_CASES = [
    {},
    {"update": "masked"},
    {"mask_mode": "example"},
    {"statistic_update": "step"},
    {"mask_mode": "example", "update": "masked", "statistic_update": "step"},
]


@pytest.mark.parametrize("options", MULTI_USE_CASES)
@pytest.mark.parametrize("uses", [2, 3])
def test_shared_weight_without_drop_records_abs_weight_grad_exactly(
    options: dict, uses: int
) -> None:
    # p = pg = 0: W_eff = W, so the statistic must be |W.grad| = |sum over uses|, bit for bit.
    layer = _square(p=0.0, pg=0.0, **options)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(16, 8)
    for _ in range(3):  # exact from the very first step on
        opt.zero_grad(set_to_none=True)
        h = x
        for _ in range(uses):  # a Linear called twice / a shared layer in a loop
            h = torch.tanh(layer(h))
        F.mse_loss(h, torch.zeros_like(h)).backward()
        assert torch.equal(_statistic(layer.regularizer), layer.weight.grad.abs())
        opt.step()


@pytest.mark.parametrize("options", [{}, {"update": "masked"}, {"statistic_update": "step"}])
def test_shared_weight_with_drops_records_abs_sum_of_per_use_gradients(options: dict) -> None:
    layer = _square(**options)
    effs: list[torch.Tensor] = []
    original = layer.regularizer.forward

    def capture(weight: torch.Tensor) -> torch.Tensor:
        effs.append(original(weight))
        return effs[-1]

    layer.regularizer.forward = capture  # type: ignore[method-assign]
    x, t = torch.randn(16, 8), torch.randn(16, 8)
    for step in range(3):
        effs.clear()
        torch.manual_seed(step)
        h = x
        for _ in range(3):
            h = torch.tanh(layer(h))
        F.mse_loss(h, t).backward()
        # Independently: one leaf per use's effective weight, the same computation.
        leaves = [e.detach().requires_grad_() for e in effs]
        h = x
        for leaf in leaves:
            h = torch.tanh(F.linear(h, leaf, layer.bias.detach()))
        F.mse_loss(h, t).backward()
        assert not torch.equal(leaves[0], leaves[1])  # masks drawn independently per use
        expected = sum(leaf.grad for leaf in leaves).abs()
        # Not bit for bit: the reference sums the uses in its own order (cancellation).
        torch.testing.assert_close(_statistic(layer.regularizer), expected, rtol=1e-5, atol=1e-8)
        if options.get("statistic_update") == "step":
            with torch.no_grad():
                layer.weight.add_(0.0)  # an optimizer step: the next forward commits
            layer.regularizer._before_mask(layer.weight)


def test_micro_batches_forwarded_then_back_propagated_separately_keep_latest() -> None:
    layer = _layer()
    cap = _Capture(layer)
    x1, t1, x2, t2 = torch.randn(8, 12), torch.randn(8, 8), torch.randn(8, 12), torch.randn(8, 8)
    for _ in range(2):  # the second round runs after the multi-use path was switched on
        loss1 = F.mse_loss(layer(x1), t1)
        eff1 = cap.eff
        loss2 = F.mse_loss(layer(x2), t2)
        eff2 = cap.eff
        loss1.backward()
        torch.testing.assert_close(
            layer.regularizer.grad_magnitude,
            _grad_wrt_effective_weight(layer, x1, t1, eff1).abs(),
        )
        loss2.backward()  # another graph task: the latest backward wins, as before
        torch.testing.assert_close(
            layer.regularizer.grad_magnitude,
            _grad_wrt_effective_weight(layer, x2, t2, eff2).abs(),
        )


def test_two_forwards_in_one_backward_sum() -> None:
    layer = _layer(p=0.0, pg=0.0)
    x1, x2 = torch.randn(8, 12), torch.randn(8, 12)
    (layer(x1).square().sum() + layer(x2).sum()).backward()
    assert torch.equal(layer.regularizer.grad_magnitude, layer.weight.grad.abs())


class _Cell(nn.Module):
    """An Elman RNN cell, called once per time step: its hidden-to-hidden weight is reused."""

    def __init__(self) -> None:
        super().__init__()
        self.ih, self.hh = nn.Linear(4, 6), nn.Linear(6, 6)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.ih(x) + self.hh(h))


@pytest.mark.parametrize("method", ["ddc", "ddc-learned"])
def test_rnn_cell_reused_every_step_records_abs_weight_grad(method: str) -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict({"cell": _Cell()})
    hyper = {"p": 0.0, "pg": 0.0} if method == "ddc" else {}
    ddc.apply(model, method, include="cell.hh", **hyper)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        h = torch.zeros(3, 6)
        for x in torch.randn(5, 3, 4):
            h = model["cell"](x, h)
        h.square().sum().backward()
        reg = model["cell"].hh.regularizer
        assert torch.equal(reg.grad_magnitude, model["cell"].hh.weight.grad.abs())
        opt.step()


def test_shared_weight_non_finite_use_leaves_statistic_unchanged() -> None:
    layer = _square()
    x = torch.randn(4, 8)
    layer(layer(x)).sum().backward()
    before = layer.regularizer.grad_magnitude.clone()
    (layer(layer(x)).sum() + layer(x).sum() * float("nan")).backward()
    assert torch.equal(layer.regularizer.grad_magnitude, before)


@pytest.mark.slow
def test_single_use_model_under_torch_compile() -> None:
    layer = _layer(p=0.0, pg=0.0)
    try:
        compiled = torch.compile(layer, backend="eager")
    except RuntimeError as err:  # pragma: no cover - platform without dynamo
        pytest.skip(f"torch.compile unavailable: {err}")
    x = torch.randn(8, 12)
    for _ in range(3):
        layer.zero_grad(set_to_none=True)
        compiled(x).square().sum().backward()
        assert torch.equal(layer.regularizer.grad_magnitude, layer.weight.grad.abs())
    assert not layer.regularizer._uses.multi


@pytest.mark.parametrize("generator", [False, True])
def test_shared_weight_under_non_reentrant_checkpoint(generator: bool) -> None:
    from torch.utils.checkpoint import checkpoint

    gen = torch.Generator().manual_seed(0) if generator else None
    layer = _square(p=0.0, pg=0.0, generator=gen)
    x = torch.randn(4, 8, requires_grad=True)
    for _ in range(2):
        layer.zero_grad(set_to_none=True)
        h = x
        for _ in range(3):  # each use in a segment of its own, recomputed in backward
            h = checkpoint(lambda t: torch.tanh(layer(t)), h, use_reentrant=False)
        h.square().sum().backward()
        assert torch.equal(layer.regularizer.grad_magnitude, layer.weight.grad.abs())


def test_gradient_accumulation_keeps_the_statistic_until_the_optimizer_step() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    ddc.apply(model, "ddc", include="0", statistic_update="step")
    reg = ddc.regularized_layers(model)["0"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    micro = [torch.randn(4, 6) for _ in range(3)]
    labels = torch.tensor([0, 1, 2, 0])

    def accumulate() -> tuple[list[Tensor], Tensor]:
        probs, grads = [], []
        opt.zero_grad(set_to_none=True)
        for x in micro:
            before = model[0].weight.grad
            before = torch.zeros_like(model[0].weight) if before is None else before.clone()
            F.cross_entropy(model(x), labels).backward()
            probs.append(reg.last_mean_drop_prob.clone())
            grads.append((model[0].weight.grad - before).abs())  # dense: this backward's |g|
        return probs, torch.stack(grads).mean(0)

    probs, _ = accumulate()
    assert not bool(reg.has_gradient)  # nothing committed before the first step
    opt.step()
    probs, mean_abs = accumulate()
    assert torch.equal(probs[0], probs[1]) and torch.equal(probs[1], probs[2])  # fixed
    assert bool(reg.has_gradient)
    opt.step()
    model(micro[0])  # the first forward after the step commits the mean |g| of the three
    torch.testing.assert_close(reg.grad_magnitude, mean_abs)
    # The default: every backward replaces the statistic, so p changes between micro-batches.
    default = ddc.DynamicDropConnect()
    assert default.statistic_update == "backward"
    with pytest.raises(ValueError, match="statistic_update must be one of 'backward', 'step'"):
        ddc.DynamicDropConnect(statistic_update="epoch")


def test_zscore_statistic_is_invariant_to_the_loss_scale() -> None:
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    probs = []
    for scale in (1.0, 65536.0):
        torch.manual_seed(0)
        model = ddc.apply(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), "ddc")
        torch.manual_seed(1)
        (nn.functional.cross_entropy(model(x), y) * scale).backward()
        probs.append(ddc.drop_probabilities(model)["0"])
    torch.testing.assert_close(probs[0], probs[1], rtol=1e-4, atol=1e-5)
