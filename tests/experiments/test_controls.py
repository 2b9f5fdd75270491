"""Controls of the guidance question: shuffled maps, per-edge rescale, mask-variance matching."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect import base, functional
from dynamic_dropconnect.experiments.config import get_experiment
from dynamic_dropconnect.experiments.methods import (
    CONTROL_METHODS,
    METHODS,
    apply_method,
    experiment_overrides,
    variance_matched_options,
)
from dynamic_dropconnect.experiments.training import (
    RunSpec,
    prepare_data,
    read_mask_variance,
    train_run,
)
from dynamic_dropconnect.functional import mask_variance, variance_matched_rate
from dynamic_dropconnect.montecarlo import _batchable_regularizer

# -- helpers ---------------------------------------------------------------------------------


def _ddc_layer(shuffle: bool, **options: Any) -> nn.Linear:
    torch.manual_seed(0)
    layer = ddc.apply(nn.Linear(64, 32), "ddc", include=[""], shuffle=shuffle, **options)
    reg = layer.regularizer
    # The same statistic for both: a spread of |g| so that p_ij takes many values.
    reg.grad_magnitude.copy_(torch.rand(32, 64, generator=torch.Generator().manual_seed(3)))
    reg.has_gradient.fill_(True)
    return layer  # type: ignore[return-value]


def _capture_sampled_rates(monkeypatch: pytest.MonkeyPatch) -> list[Tensor]:
    """The ``probs`` every batch-mode mask is drawn with (what the layer really applies)."""
    seen: list[Tensor] = []
    original = functional.sample_keep_mask

    def spy(like: Tensor, probs: Tensor | float, *args: Any, **kwargs: Any) -> Tensor:
        seen.append(probs.clone() if isinstance(probs, Tensor) else torch.tensor(probs))
        return original(like, probs, *args, **kwargs)

    monkeypatch.setattr(functional, "sample_keep_mask", spy)
    return seen


def _corr(a: Tensor, b: Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def _learned(shuffle: bool = False, **options: Any) -> ddc.LearnedDropConnect:
    """A LearnedDropConnect on a 32x64 weight whose rates depend on the gradient z-score."""
    reg = ddc.LearnedDropConnect(shuffle=shuffle, **options)
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    reg.prepare(weight)
    reg.grad_magnitude.copy_(torch.rand(32, 64, generator=torch.Generator().manual_seed(3)))
    reg.has_gradient.fill_(True)
    with torch.no_grad():
        reg.w1.copy_(torch.tensor([-2.0, 0.0, 0.0, 0.0]))  # small gradient: high rate
    return reg


def _capture_relaxed(reg: ddc.LearnedDropConnect) -> list[tuple[Tensor, Tensor]]:
    calls: list[tuple[Tensor, Tensor]] = []
    original = reg._relaxed_mask

    def spy(probs: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        calls.append((probs.detach().clone(), u.clone()))
        return original(probs, u)

    reg._relaxed_mask = spy  # type: ignore[method-assign]
    return calls


# -- 1. shuffled maps ------------------------------------------------------------------------


def test_ddc_shuffled_keeps_the_rate_multiset_exactly_and_unties_it_from_the_gradient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain, shuffled = _ddc_layer(False), _ddc_layer(True)
    seen = _capture_sampled_rates(monkeypatch)
    plain.regularizer(plain.weight)
    shuffled.regularizer(shuffled.weight)
    used_plain, used_shuffled = seen
    stat = plain.regularizer.grad_magnitude
    # Unshuffled: the map DDC computes; shuffled: the same values, exactly, elsewhere.
    torch.testing.assert_close(used_plain, plain.regularizer.drop_probabilities(plain.weight))
    assert torch.equal(used_shuffled.flatten().sort().values, used_plain.flatten().sort().values)
    assert not torch.equal(used_shuffled, used_plain)
    assert float((used_shuffled != used_plain).float().mean()) > 0.5
    # DDC drops small gradients more (strongly anti-correlated); the shuffled map does not.
    assert _corr(used_plain, stat) < -0.5
    assert abs(_corr(used_shuffled, stat)) < 0.15  # 2048 edges: sd of a null corr 0.022
    # drop_probabilities (drop_stats, drop_probs.pt) stays the unshuffled map.
    torch.testing.assert_close(
        shuffled.regularizer.drop_probabilities(shuffled.weight), used_plain, rtol=0, atol=0
    )
    # A new permutation every forward.
    shuffled.regularizer(shuffled.weight)
    assert not torch.equal(seen[-1], used_shuffled)


def test_ddc_shuffled_per_sample_mode_and_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Tensor] = []
    original = base.per_example_masked_op

    def spy(x: Tensor, weight: Tensor, probs: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        seen.append(probs.clone())
        return original(x, weight, probs, *args, **kwargs)

    monkeypatch.setattr(base, "per_example_masked_op", spy)
    layer = _ddc_layer(True, mask_mode="example")
    layer(torch.randn(4, 64))
    expected = layer.regularizer.drop_probabilities(layer.weight)
    assert torch.equal(seen[0].flatten().sort().values, expected.flatten().sort().values)
    assert not torch.equal(seen[0], expected)
    # With a generator the permutation is part of the reproducible draw.
    outs = []
    for _ in range(2):
        layer = _ddc_layer(True, generator=torch.Generator().manual_seed(7))
        outs.append(layer.regularizer(layer.weight).detach())
    assert torch.equal(outs[0], outs[1])


def test_ddc_shuffled_trains_records_the_statistic_and_reprs() -> None:
    layer = _ddc_layer(True)
    x, t = torch.randn(16, 64), torch.randn(16, 32)
    torch.nn.functional.mse_loss(layer(x), t).backward()
    # Dense update: the statistic is |dL/dW_eff| = |W.grad|, as without shuffle.
    assert torch.equal(layer.regularizer.grad_magnitude, layer.weight.grad.abs())
    assert "shuffle=True" in repr(layer.regularizer)
    assert "shuffle" not in repr(_ddc_layer(False).regularizer)
    with pytest.raises(TypeError, match="shuffle must be True or False, got 'yes'"):
        ddc.DynamicDropConnect(shuffle="yes")  # type: ignore[arg-type]


def test_shuffled_mc_predict_draws_a_permutation_per_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    ddc.apply(model, "ddc", include="0", shuffle=True)
    reg = ddc.regularized_layers(model)["0"]
    reg.grad_magnitude.copy_(torch.rand(16, 8, generator=torch.Generator().manual_seed(3)))
    reg.has_gradient.fill_(True)
    # The batched path would draw every pass from the one unshuffled map: it must loop.
    assert _batchable_regularizer(model[0]) is None
    seen = _capture_sampled_rates(monkeypatch)
    out = ddc.mc_predict(model, torch.randn(5, 8), n_samples=4)
    assert out.shape[-1] == 3 and torch.isfinite(out).all()
    expected = reg.drop_probabilities(model[0].weight)
    assert len(seen) == 4
    for probs in seen:
        assert torch.equal(probs.flatten().sort().values, expected.flatten().sort().values)
    assert len({tuple(p.flatten().tolist()) for p in seen}) == 4  # one permutation per pass


def test_learned_shuffled_keeps_the_rate_multiset_exactly() -> None:
    plain, shuffled = _learned(False), _learned(True)
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    expected = plain.drop_probabilities(weight)
    calls_plain, calls_shuffled = _capture_relaxed(plain), _capture_relaxed(shuffled)
    plain.train()(weight)
    eff = shuffled.train()(weight)
    ((used_plain, _),) = calls_plain
    (unshuffled, u_first), (used_shuffled, u) = calls_shuffled  # θ's map, then the applied one
    torch.testing.assert_close(used_plain, expected.clamp(1e-6, 1 - 1e-6))
    torch.testing.assert_close(unshuffled, used_plain, rtol=0, atol=0)
    assert torch.equal(u_first, u)  # the same uniforms for both
    assert torch.equal(used_shuffled.flatten().sort().values, used_plain.flatten().sort().values)
    assert float((used_shuffled != used_plain).float().mean()) > 0.5
    stat = shuffled.grad_magnitude
    assert _corr(used_plain, stat) < -0.5 and abs(_corr(used_shuffled, stat)) < 0.15
    # The weight really gets the mask of the permuted rates.
    _, scale = ddc.LearnedDropConnect._relaxed_mask(shuffled, used_shuffled, u)
    torch.testing.assert_close(eff, weight * scale)
    # previous_p (a feature of θ) holds the unshuffled rates.
    torch.testing.assert_close(shuffled.previous_p, used_plain)
    assert "shuffle=True" in repr(shuffled)


def test_learned_shuffled_theta_learns_from_the_unshuffled_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Loss linear in W_eff: dL/dW_eff = C whatever the mask, so θ's gradient is known in
    # closed form: d/dθ [sum(scale_unshuffled(θ) * C * W) + penalty(θ)].
    perms: list[Tensor] = []

    def permute(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        perm = torch.randperm(probs.numel(), generator=generator, device=probs.device)
        perms.append(perm)
        return probs.reshape(-1)[perm].view(probs.shape)

    monkeypatch.setattr(functional, "permute_rates", permute)
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    c = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    moments = []
    for shuffle in (False, True):
        reg = _learned(shuffle)
        feats = reg.features(weight)
        theta = [getattr(reg, k).detach().clone().requires_grad_() for k in reg._theta]
        calls = _capture_relaxed(reg)
        torch.manual_seed(0)  # the same uniforms for both
        (reg.train()(weight) * c).sum().backward()
        moments.append([getattr(reg, f"adam_m_{k}").clone() for k in reg._theta])
    # θ steps exactly as ddc-learned's would for the same dL/dW_eff...
    for a, b in zip(*moments, strict=True):
        torch.testing.assert_close(a, b)
    (_, u), _ = calls
    (perm,) = perms

    def theta_gradient(shuffle: bool) -> list[Tensor]:
        w1, b1 = theta
        probs = (reg.p_max * torch.sigmoid(feats @ w1 + b1)).view(32, 64).clamp(1e-6, 1 - 1e-6)
        rates = probs.reshape(-1)[perm].view(32, 64) if shuffle else probs
        _, scale = ddc.LearnedDropConnect._relaxed_mask(reg, rates, u)
        penalty = reg.lam * (probs.mean() - reg.target) ** 2
        return list(torch.autograd.grad((scale * c * weight.detach()).sum() + penalty, theta))

    # ...which is the gradient through the unshuffled map (Adam's first step: m = 0.1 * grad),
    got = [m / 0.1 for m in moments[1]]
    for a, b in zip(got, theta_gradient(shuffle=False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # ...not the gradient through the permuted map (the check tells the two apart).
    other = theta_gradient(shuffle=True)
    assert float((got[0] - other[0]).abs().max()) > 100 * 1e-4 * float(got[0].abs().max())


@pytest.mark.slow
def test_learned_shuffled_holds_its_rate_while_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    ddc.apply(model, "ddc-learned", include="0", hidden=8, shuffle=True)
    reg = ddc.regularized_layers(model)["0"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 10, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(150):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert float(reg.adam_step) == 150
    assert abs(float(reg.last_mean_drop_prob) - 0.5) < 0.02


# -- 2. per-edge rescale ---------------------------------------------------------------------


def _mean_ratio(reg: nn.Module, weight: Tensor, draws: int) -> tuple[Tensor, Tensor]:
    """Monte-Carlo mean and standard error of ``W_eff / W`` per edge, training mode."""
    reg.train()
    total = torch.zeros_like(weight, dtype=torch.float64)
    square = torch.zeros_like(total)
    with torch.no_grad():
        for _ in range(draws):
            ratio = (reg(weight) / weight).double()
            total += ratio
            square += ratio * ratio
    mean = total / draws
    return mean, ((square / draws - mean * mean).clamp_min(0) / draws).sqrt()


@pytest.mark.slow
def test_learned_unbiased_keeps_every_edge_weight_in_expectation() -> None:
    # Tolerance: 4.5 standard errors (3000 edge tests) plus 1.5 % for the relaxed mask at
    # temperature 0.1, whose mean is within 1.3 % of 1 - p for p <= 0.95 (measured, 4e6 draws).
    torch.manual_seed(0)
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    reg = _learned(rescale="per_edge")
    probs = reg.drop_probabilities(weight)
    assert float(probs.min()) < 0.1 and float(probs.max()) > 0.8  # a wide spread of rates
    mean, se = _mean_ratio(reg, weight, 3000)
    assert (torch.abs(mean - 1) <= 4.5 * se + 0.015).all(), float((mean - 1).abs().max())
    assert abs(float(mean.mean()) - 1) < 0.01
    # The global rescale (ddc-learned) amplifies rarely dropped edges: (1 - p_ij) / (1 - mean p).
    biased, _ = _mean_ratio(_learned(), weight, 300)
    low = probs < 0.1
    expected = ((1 - probs) / (1 - probs.mean())).double()
    assert float(biased[low].mean()) > 1.4
    torch.testing.assert_close(biased.mean(), expected.mean(), atol=0.02, rtol=0)
    assert "rescale='per_edge'" in repr(reg)


@pytest.mark.slow
def test_ddc_unbiased_keeps_every_edge_weight_in_expectation() -> None:
    layer = _ddc_layer(False, rescale="per_edge")
    weight = layer.weight.detach()
    mean, se = _mean_ratio(layer.regularizer, weight, 3000)
    assert (torch.abs(mean - 1) <= 4.5 * se + 1e-9).all(), float((mean - 1).abs().max())
    assert abs(float(mean.mean()) - 1) < 0.01


# -- 3. mask variance ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "p"),
    [(0.0, 0.0), (0.09, 0.1), (0.16, 0.2), (0.21, 0.3), (0.24, 0.4), (0.25, 0.5), (0.13, 0.153590)],
)
def test_variance_matched_rate_hand_values(v: float, p: float) -> None:
    assert variance_matched_rate(v) == pytest.approx(p, abs=1e-6)
    assert variance_matched_rate(v) * (1 - variance_matched_rate(v)) == pytest.approx(v, abs=1e-12)


def test_variance_matched_rate_validation() -> None:
    assert variance_matched_rate(0.25 + 1e-7) == 0.5  # float rounding of a logged mean
    assert variance_matched_rate(1e-12) == pytest.approx(1e-12)  # no cancellation
    for bad in (-0.01, 0.26, math.nan):
        with pytest.raises(ValueError, match=r"variance must be in \[0, 0.25\]"):
            variance_matched_rate(bad)
    for bad in ("0.1", True, None):
        with pytest.raises(TypeError, match="variance must be a number"):
            variance_matched_rate(bad)  # type: ignore[arg-type]
    assert variance_matched_options(0.13) == {"p": pytest.approx(0.153590, abs=1e-6)}


def test_mask_variance_and_the_monitoring_buffer() -> None:
    probs = torch.rand(7, 9, dtype=torch.float64)
    assert float(mask_variance(probs)) == pytest.approx(float((probs * (1 - probs)).mean()))
    assert mask_variance(0.3) == pytest.approx(0.21)
    layer = _ddc_layer(False)
    reg = layer.regularizer
    reg(layer.weight)
    assert math.isnan(float(reg.last_mask_var))  # off by default: nothing computed
    reg.track_mask_var = True
    reg(layer.weight)
    expected = reg.drop_probabilities(layer.weight)
    assert float(reg.last_mask_var) == pytest.approx(float((expected * (1 - expected)).mean()))
    fixed = ddc.apply(nn.Linear(4, 4), "dropconnect", include=[""], p=0.3).regularizer
    fixed.track_mask_var = True
    fixed(torch.ones(4, 4))
    assert float(fixed.last_mask_var) == pytest.approx(0.21)
    learned = _learned(True)
    learned.track_mask_var = True
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    probs = learned.drop_probabilities(weight)
    learned.train()(weight)
    assert float(learned.last_mask_var) == pytest.approx(
        float((probs * (1 - probs)).mean()), rel=1e-4
    )
    # The U-shape point: at one mean rate, a spread map has less variance than a flat one.
    assert float(learned.last_mask_var) < float(probs.mean() * (1 - probs.mean()))


def test_new_state_is_not_in_the_state_dict_so_old_checkpoints_load() -> None:
    for method, options in (("ddc", {"shuffle": True}), ("ddc-learned", {"shuffle": True})):
        torch.manual_seed(0)
        old = ddc.apply(nn.Sequential(nn.Linear(6, 5)), method, include="0")
        old(torch.randn(3, 6)).sum().backward()
        new = ddc.apply(nn.Sequential(nn.Linear(6, 5)), method, include="0", **options)
        state = old.state_dict()
        assert not any("mask_var" in k or "shuffle" in k for k in state)
        assert new.state_dict().keys() == state.keys()
        new.load_state_dict(state)  # strict


# -- methods and the training loop ------------------------------------------------------------


def test_control_methods_and_their_options() -> None:
    assert set(CONTROL_METHODS) <= set(METHODS)
    expected = {
        "ddc-shuffled": (ddc.DynamicDropConnect, {"shuffle": True, "rescale": "empirical"}),
        "ddc-unbiased": (ddc.DynamicDropConnect, {"shuffle": False, "rescale": "per_edge"}),
        "ddc-learned-shuffled": (ddc.LearnedDropConnect, {"shuffle": True, "rescale": "expected"}),
        "ddc-learned-unbiased": (
            ddc.LearnedDropConnect,
            {"shuffle": False, "rescale": "per_edge"},
        ),
    }
    for name, (cls, attributes) in expected.items():
        model = nn.Sequential()
        model.linear1 = nn.Linear(4, 4)
        apply_method(model, name)
        reg = ddc.regularized_layers(model)["linear1"]
        assert type(reg) is cls, name
        for key, value in attributes.items():
            assert getattr(reg, key) == value, (name, key)
    # A control runs at the rates the experiment gives its base method, keeping its own option.
    given = {"ddc": {"p": 0.05, "pg": 0.25, "rescale": "expected"}}
    assert experiment_overrides(given, "ddc-unbiased") == {"p": 0.05, "pg": 0.25}
    assert experiment_overrides(given, "ddc-shuffled") == given["ddc"]
    assert experiment_overrides(given, "ddc-big-gradient") == {}  # existing methods: as before
    assert experiment_overrides({"ddc-learned": {"target": 0.3}}, "ddc-learned-shuffled") == {
        "target": 0.3
    }
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        experiment_overrides({}, "magic")


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    experiment = get_experiment("digits-mlp").with_epochs(1)
    data = prepare_data(experiment, seed=0, subset=300)
    out = {}
    for method in ("dropconnect", "ddc", *CONTROL_METHODS):
        folder = tmp_path_factory.mktemp(method)
        train_run(RunSpec(experiment, method, 0), folder, data, progress=False)
        out[method] = folder / "metrics.csv"
    return out


def _row(path: Path) -> tuple[list[str], dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    return list(reader.fieldnames or []), rows[-1]


@pytest.mark.slow
def test_metrics_log_mask_var_beside_mean_drop_prob(digits_runs: dict[str, Path]) -> None:
    for method, path in digits_runs.items():
        header, row = _row(path)
        at = header.index("mean_drop_prob/linear1")
        assert header[at + 1] == "mask_var/linear1", method
        v, mean = float(row["mask_var/linear1"]), float(row["mean_drop_prob/linear1"])
        # Jensen: mean(p(1-p)) <= mean(p)(1 - mean(p)) (per step, so also averaged).
        assert 0.0 < v <= 0.25 and v <= mean * (1 - mean) + 1e-6, method
        assert read_mask_variance(path) == {"linear1": pytest.approx(v)}
    _, row = _row(digits_runs["dropconnect"])
    assert float(row["mask_var/linear1"]) == pytest.approx(0.25)  # p = 0.5 on every edge
    v = read_mask_variance(digits_runs["ddc"])["linear1"]
    p = variance_matched_options(v)["p"]
    assert p <= 0.5 and p * (1 - p) == pytest.approx(v)


def test_read_mask_variance_skips_epochs_without_the_column(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,mask_var/a,mask_var/b\n1,,0.2\n2,0.1,0.1\n3,0.2,nan\n")
    assert read_mask_variance(path) == {"a": pytest.approx(0.15), "b": pytest.approx(0.15)}
    assert read_mask_variance(path, first_epoch=2, last_epoch=2) == {"a": 0.1, "b": 0.1}
    with pytest.raises(ValueError, match=r"no finite mask_var/a in epochs 1\.\.1"):
        read_mask_variance(path, last_epoch=1)
    (tmp_path / "old.csv").write_text("epoch,mean_drop_prob/a\n1,0.5\n")
    with pytest.raises(ValueError, match="has no mask_var/<layer> column"):
        read_mask_variance(tmp_path / "old.csv")
