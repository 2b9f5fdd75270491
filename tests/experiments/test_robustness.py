"""`ddc robustness`: corruptions, attacks and edge removal on tiny trained runs, end to end."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_hex

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments import robustness
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import Experiment
from dynamic_dropconnect.experiments.datasets import load_dataset
from dynamic_dropconnect.experiments.figures import method_style
from dynamic_dropconnect.experiments.report import load_config
from dynamic_dropconnect.experiments.robustness import (
    RobustnessError,
    evaluate_run,
    pruning,
)
from dynamic_dropconnect.experiments.storage import load_checkpoint, save_checkpoint
from dynamic_dropconnect.experiments.training import RunSpec, _inputs, build, prepare_data

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_kornia = pytest.mark.skipif(
    not _have("kornia"), reason="corruptions need kornia: pip install '.[robustness]'"
)
needs_torchattacks = pytest.mark.skipif(
    not _have("torchattacks"),
    reason="attacks need torchattacks: pip install --no-deps torchattacks==3.5.1",
)

#: Corruptions whose changed-pixel set grows with severity by construction (common random
#: numbers, pixelwise or growing kernels). Shot noise (integer Poisson draws: a bright pixel
#: may land on its own value again) and the affine warps (a larger warp can move a stroke onto
#: another) change more in magnitude, not always more pixels: those are checked on the mean
#: absolute change only.
COUNT_MONOTONE = (
    "gaussian_noise",
    "impulse_noise",
    "gaussian_blur",
    "motion_blur",
    "brightness",
    "contrast",
    "zigzag",
)


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    digits = load_dataset("digits").test.x[:48].float()  # 8x8, in [0, 1]
    return {
        "8x8": digits,
        "28x28": F.interpolate(digits, size=28, mode="bilinear").clamp(0, 1),
        "12x20": F.interpolate(digits, size=(12, 20), mode="bilinear").clamp(0, 1),
    }


@pytest.mark.slow
@needs_kornia
@pytest.mark.parametrize("name", list(robustness.corruptions.CORRUPTIONS))
def test_corruption_deterministic_bounded_and_monotone(
    name: str, images: dict[str, torch.Tensor]
) -> None:
    corrupt = robustness.corruptions.corrupt
    for size, x in images.items():
        outs = [corrupt(x, name, s, seed=3) for s in robustness.corruptions.SEVERITIES]
        for s, out in zip(robustness.corruptions.SEVERITIES, outs, strict=True):
            assert out.shape == x.shape and out.dtype == torch.float32
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            assert torch.equal(out, corrupt(x, name, s, seed=3)), f"{name} {size} not repeatable"
        change = [float((o - x).abs().mean()) for o in outs]
        assert all(b >= a - 1e-7 for a, b in itertools.pairwise(change)), (name, size, change)
        if size != "8x8" or name != "gaussian_blur":  # sigma 0.14 px at 8x8: no change at s=1
            assert change[0] > 0, (name, size)
        if name in COUNT_MONOTONE:
            count = [int(((o - x).abs() > 1e-6).sum()) for o in outs]
            assert all(b >= a for a, b in itertools.pairwise(count)), (name, size, count)
    random_ones = {"gaussian_noise", "shot_noise", "impulse_noise", "zigzag", "rotate", "shear"}
    if name in random_ones:  # another seed, other draws
        x = images["28x28"]
        assert not torch.equal(corrupt(x, name, 3, seed=3), corrupt(x, name, 3, seed=4))


@needs_kornia
@pytest.mark.parametrize("name", ["shear", "rotate", "scale"])
def test_geometric_corruptions_keep_the_centre(name: str) -> None:
    """Shear, rotation and scaling act about the image centre (MNIST-C), so a centred block's
    centre of mass stays put; only translate moves the digit."""
    x = torch.zeros(4, 1, 28, 28)
    x[..., 9:19, 11:17] = 1.0
    pos = torch.arange(28.0)

    def centre(t: torch.Tensor) -> torch.Tensor:  # (x, y) per image
        mass = t.sum((-1, -2))
        return torch.stack([(t.sum(-2) * pos).sum(-1), (t.sum(-1) * pos).sum(-1)]) / mass

    for severity in robustness.corruptions.SEVERITIES:
        out = robustness.corruptions.corrupt(x, name, severity, seed=1)
        assert not torch.equal(out, x)
        torch.testing.assert_close(centre(out), centre(x), atol=0.05, rtol=0)
    if name == "shear":  # a shear: the top and bottom rows of the block move opposite ways

        def column(rows: torch.Tensor) -> torch.Tensor:
            return (rows.sum(-2) * pos).sum(-1).flatten() / rows.sum((-1, -2)).flatten()

        top, bottom = column(out[..., 9:12, :]) - 13.5, column(out[..., 16:19, :]) - 13.5
        assert bool((top * bottom < 0).all()) and bool((top.abs() > 1.5).all())


def _corrupted_run(clean: float, accuracy: dict[str, list[float]]) -> dict[str, Any]:
    return {"clean_accuracy": clean, "parts": {"corruptions": {"accuracy": accuracy}}}


def test_mce_by_hand_and_the_relative_mce_leaves_out_a_corruption_without_excess() -> None:
    metrics = robustness.metrics
    # none: 'noise' costs 2 points at each of 2 severities; 'shot' costs none (0.4 points in
    # all, under RELATIVE_MIN_EXCESS = 1 point): its ratio would be 0.004 / 0.004-ish noise.
    none = _corrupted_run(0.99, {"noise": [0.97, 0.97], "shot": [0.988, 0.988]})
    other = _corrupted_run(0.98, {"noise": [0.94, 0.96], "shot": [0.95, 0.97]})
    ce_noise = (0.06 + 0.04) / (0.03 + 0.03)
    ce_shot = (0.05 + 0.03) / (0.012 + 0.012)
    rel_noise = (0.10 - 2 * 0.02) / (0.06 - 2 * 0.01)
    assert metrics.relative_mce_corruptions([none]) == ["noise"]
    mce, rel = metrics.mce(other, [none])
    assert mce == pytest.approx(100 * (ce_noise + ce_shot) / 2)
    assert rel == pytest.approx(100 * rel_noise)
    assert metrics.mce(none, [none]) == pytest.approx((100.0, 100.0))
    no_excess = _corrupted_run(0.99, {"noise": [0.99, 0.99], "shot": [0.99, 0.985]})
    assert math.isnan(metrics.mce(other, [no_excess])[1])


def test_table_names_the_corruptions_the_relative_mce_leaves_out(tmp_path: Path) -> None:
    def run(method: str, seed: int, clean: float, other: float, shot: float) -> dict[str, Any]:
        accuracy = {c: [other] * 5 for c in robustness.corruptions.CORRUPTIONS}
        accuracy["shot_noise"] = [shot] * 5
        record = _corrupted_run(clean, accuracy)
        record["parts"]["corruptions"]["settings"] = {}
        return {**record, "method": method, "seed": seed, "n_test": 1000}

    runs = [run("none", s, 0.99, 0.95, 0.9895) for s in (0, 1)]
    runs += [run("ddc", s, 0.99, 0.94, 0.98) for s in (0, 1)]
    (tmp_path / "robustness.json").write_text(
        json.dumps({"experiment": "x", "settings": {"parts": ["corruptions"]}, "runs": runs})
    )
    text = robustness.render_robustness(tmp_path).read_text()
    assert "The relative mCE leaves out shot_noise:" in text
    # relative mCE of ddc from the other 11: each (5 * 0.06 - 5 * 0.01) / (5 * 0.05 - 5 * 0.01)
    row = next(line for line in text.splitlines() if line.startswith("| ddc | 2 |"))
    assert row.split(" | ")[5].rstrip(" |") == f"{100 * 0.25 / 0.2:.2f} ± 0.00"


def test_corruption_errors() -> None:
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown corruption"):
        robustness.corruptions.corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        robustness.corruptions.corrupt(x, "contrast", 6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        robustness.corruptions.corrupt(x * 255, "contrast", 1)
    with pytest.raises(ValueError, match="N, C, H, W"):
        robustness.corruptions.corrupt(x[0], "contrast", 1)


# --------------------------------------------------------------------------------------------
# A tiny trained run directory
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("robust") / "run"
    args = ["compare", "--experiment", "digits-mlp", "--methods", "none,ddc", "--seeds", "2"]
    args += ["--epochs", "3", "--subset", "300", "--quiet", "--out", str(out)]
    assert main(args) == 0
    return out


def _model(run_dir: Path, method: str, seed: int) -> tuple[torch.nn.Module, object, Experiment]:
    config = load_config(run_dir)
    experiment = Experiment(**config["settings"])
    data = prepare_data(experiment, seed=seed, subset=config.get("subset"))
    model = build(RunSpec(experiment, method, seed), data)
    state = load_checkpoint(run_dir / "runs" / method / f"seed{seed}" / "checkpoint.pt")
    model.load_state_dict(state["model"])
    return model.eval(), data, experiment


@pytest.mark.slow
def test_pruning_endpoints_and_counts(run_dir: Path) -> None:
    model, data, experiment = _model(run_dir, "ddc", 0)
    x = _inputs(data.test[0], data, experiment)
    plain = pruning.plain_model(model)
    assert not ddc.regularized_layers(plain)
    assert list(pruning.target_weights(plain)) == ["linear1"]
    with torch.no_grad():
        reference = model(x)
        for how in pruning.HOW:
            assert torch.equal(pruning.pruned(plain, 0.0, how)(x), reference)
            out = pruning.pruned(plain, 1.0, how)(x)
            assert (out == out[0]).all(), "linear1 without weights: one output for every input"
            half = pruning.target_weights(pruning.pruned(plain, 0.5, how))["linear1"]
            assert int((half == 0).sum()) == half.numel() // 2
    # magnitude: the survivors are the largest |w|; random: nested removed sets
    w = pruning.target_weights(plain)["linear1"].detach().abs()
    kept = pruning.target_weights(pruning.pruned(plain, 0.7, "magnitude"))["linear1"].detach().abs()
    assert float(kept[kept > 0].min()) >= float(w[kept == 0].max())
    small = pruning.target_weights(pruning.pruned(plain, 0.3, "random", seed=1))["linear1"] == 0
    large = pruning.target_weights(pruning.pruned(plain, 0.6, "random", seed=1))["linear1"] == 0
    assert bool((large | ~small).all())
    with pytest.raises(ValueError, match="fraction"):
        pruning.pruned(plain, 1.5, "random")


class _TwoLayer(torch.nn.Module):
    weight_slots = ("linear1",)

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = torch.nn.Linear(12, 16)
        self.linear2 = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(torch.relu(self.linear1(x)))


@pytest.mark.parametrize("wrap", ["weight_norm", "spectral_norm"])
def test_pruning_reaches_a_parametrized_weight(wrap: str) -> None:
    """A parametrized weight is recomputed at every access: pruning must reach the forward."""
    torch.manual_seed(0)
    model = _TwoLayer()
    getattr(torch.nn.utils.parametrizations, wrap)(model.linear1)
    model.eval()
    x = torch.randn(32, 12)
    plain = pruning.plain_model(model)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x))
        cut = pruning.pruned(plain, 0.9, "magnitude")
        weight = cut.linear1.weight
        assert int((weight == 0).sum()) == round(0.9 * weight.numel())
        assert not torch.allclose(cut(x), model(x))
    assert model.linear1.weight.count_nonzero() == model.linear1.weight.numel(), "a copy"


@pytest.mark.slow
@needs_torchattacks
def test_attacks_eps0_unchanged_and_pgd_at_least_fgsm(run_dir: Path) -> None:
    model, data, experiment = _model(run_dir, "none", 0)
    x = robustness._unit(data.test[0][:200])
    y = data.test[1][:200]
    wrapped = robustness.attacks.PixelModel(model, lambda c: _inputs(c, data, experiment))
    with torch.no_grad():
        clean = float((wrapped(x).argmax(1) == y).float().mean())
        assert torch.equal(wrapped(x), model(_inputs(data.test[0][:200], data, experiment)))
    zero = robustness.attacks.adversarial_accuracy(wrapped, x, y, epsilons=[0.0])
    assert zero == {"fgsm": {"0.0": pytest.approx(clean)}, "pgd": {"0.0": pytest.approx(clean)}}
    acc = robustness.attacks.adversarial_accuracy(wrapped, x, y, epsilons=[0.05, 0.1])
    for eps in ("0.05", "0.1"):
        assert acc["pgd"][eps] <= acc["fgsm"][eps] < clean
    assert acc["pgd"]["0.1"] <= acc["pgd"]["0.05"]
    assert not model.training


@pytest.mark.slow
@needs_torchattacks
def test_eot_attack_on_the_mc_network_leaves_the_model_alone(run_dir: Path) -> None:
    model, data, experiment = _model(run_dir, "ddc", 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = robustness._unit(data.test[0][:40])
    y = data.test[1][:40]
    wrapped = robustness.attacks.PixelModel(model, lambda c: _inputs(c, data, experiment))
    out = robustness.attacks.mc_adversarial_accuracy(
        wrapped, x, y, eot=2, samples=4, epsilons=[0.0, 0.2]
    )
    assert set(out) == {"mc_clean", "pgd_eot"} and set(out["pgd_eot"]) == {"0.0", "0.2"}
    assert out["pgd_eot"]["0.2"] < out["mc_clean"]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "DDC statistics untouched"
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pruning_cache_keyed_on_checkpoint(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    md = evaluate_run(work, parts=["pruning"], examples=60, log=lambda _: None)
    text = md.read_text()
    assert "## Edge removal" in text and "linear1" in text and "| ddc vs |" in text
    assert (work / "plots" / "robustness_pruning.png").exists()
    cached = work / "runs" / "ddc" / "seed0" / "robustness.json"
    first = json.loads(cached.read_text())
    assert first["parts"]["pruning"]["layers"] == {"linear1": [256, 64]}

    calls: list[str] = []
    original = robustness._evaluate_part

    def spy(part: str, *args: object, **kwargs: object) -> object:
        calls.append(part)
        return original(part, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(robustness, "_evaluate_part", spy)
    evaluate_run(work, parts=["pruning"], examples=60, log=lambda _: None)
    assert calls == [], "same checkpoints and settings: everything from the cache"
    # A retrained (here: changed) checkpoint of one run: only that run is evaluated again.
    path = work / "runs" / "ddc" / "seed0" / "checkpoint.pt"
    state = load_checkpoint(path)
    weight = next(k for k in state["model"] if k.endswith("weight") and "linear1" in k)
    state["model"][weight] = state["model"][weight] * 0.5
    save_checkpoint(path, state)
    evaluate_run(work, parts=["pruning"], examples=60, log=lambda _: None)
    assert calls == ["pruning"]
    again = json.loads(cached.read_text())
    assert again["checkpoint_sha256"] != first["checkpoint_sha256"]
    # Other settings (more examples) are not served from the cache either ...
    evaluate_run(work, parts=["pruning"], examples=80, log=lambda _: None)
    assert len(calls) == 5
    # ... nor do they overwrite it: going back to 60 examples computes nothing.
    kept = json.loads(cached.read_text())
    assert kept["examples"] == 80 and kept["other_examples"]["60"] == again
    evaluate_run(work, parts=["pruning"], examples=60, log=lambda _: None)
    assert len(calls) == 5
    assert json.loads((work / "robustness.json").read_text())["runs"][0]["examples"] == 60


@pytest.mark.slow
@needs_kornia
@needs_torchattacks
def test_command_end_to_end(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    figures: dict[str, Any] = {}
    save = robustness.render.save_figure

    def keep(fig: Any, path: Path) -> Path:
        figures[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(robustness.render, "save_figure", keep)
    assert main(["robustness", str(work), "--examples", "60"]) == 0
    for name, fig in figures.items():  # every method in its fixed colour, like every other plot
        drawn = {to_hex(line.get_color()) for ax in fig.axes for line in ax.lines}
        assert drawn == {to_hex(method_style(m)[0]) for m in ("none", "ddc")}, name
        assert fig.legends and "digits-mlp" in fig._suptitle.get_text(), name
    text = (work / "robustness.md").read_text()
    for heading in ("## Corruptions", "## Adversarial", "## Edge removal", "## Paired tests"):
        assert heading in text
    assert "| none | 2 |" in text and "| ddc | 2 |" in text
    summary = json.loads((work / "robustness.json").read_text())
    assert len(summary["runs"]) == 4
    none0 = next(r for r in summary["runs"] if r["method"] == "none")
    accuracy = none0["parts"]["corruptions"]["accuracy"]
    assert set(accuracy) == set(robustness.corruptions.CORRUPTIONS)
    assert all(len(v) == 5 for v in accuracy.values())
    # mCE of none against itself (mean over its seeds) averages 100.
    baseline = [x for x in summary["runs"] if x["method"] == "none"]
    metrics = [robustness.metrics.run_metrics(r, baseline) for r in baseline]
    assert sum(m["mCE"] for m in metrics) / 2 == pytest.approx(100.0, rel=0.05)
    # The paired table: ddc − none by seed, its t interval around the mean, Holm >= raw p.
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| none | ")]
    by_metric = {r[1]: r for r in rows if len(r) == 9}
    assert {"clean", "mCE", "PGD ε=0.1"} <= set(by_metric)
    clean = {(r["method"], r["seed"]): r["clean_accuracy"] for r in summary["runs"]}
    expected = 100 * sum(clean[("ddc", s)] - clean[("none", s)] for s in (0, 1)) / 2
    n, mean, ci = by_metric["clean"][2:5]
    assert n == "2" and float(mean) == pytest.approx(expected, abs=0.006)
    low, high = (float(v) for v in ci.strip("[]").split(", "))
    assert low <= float(mean) <= high
    for _, _, _, _, _, _, t_p, holm_p, _ in by_metric.values():
        if t_p != "—":
            assert float(holm_p) >= float(t_p)
    for name in ("corruptions", "adversarial", "pruning"):
        assert (work / "plots" / f"robustness_{name}.png").exists()
    # `ddc report` re-renders it from robustness.json.
    (work / "robustness.md").unlink()
    assert main(["report", str(work)]) == 0
    assert (work / "robustness.md").read_text() == text


@pytest.mark.slow
def test_errors(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(RobustnessError, match="not a run directory"):
        evaluate_run(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(run_dir / "config.json", empty / "config.json")
    (empty / "runs" / "ddc" / "seed0").mkdir(parents=True)
    with pytest.raises(RobustnessError, match="no trained model"):
        evaluate_run(empty, parts=["pruning"])
    with pytest.raises(RobustnessError, match="parts"):
        evaluate_run(run_dir, parts=["pruning", "fog"])
    with pytest.raises(RobustnessError, match="examples"):
        evaluate_run(run_dir, examples=0)
    assert main(["robustness", str(empty), "--parts", "pruning"]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert main(["robustness", str(run_dir), "--examples", "-1"]) == 2
    assert "--examples" in capsys.readouterr().err
    with monkeypatch.context() as patch:  # a missing optional library: what to install
        patch.setitem(sys.modules, "kornia", None)
        patch.setitem(sys.modules, "torchattacks", None)
        with pytest.raises(RobustnessError, match=r"robustness\]"):
            evaluate_run(run_dir, parts=["corruptions"])
        assert main(["robustness", str(run_dir), "--parts", "adversarial"]) == 2
        assert "--no-deps torchattacks" in capsys.readouterr().err


DICT = Path("/usr/share/dict")


@pytest.mark.slow
@pytest.mark.skipif(not (DICT / "american-english").exists(), reason="needs the word lists")
def test_sequence_experiment_pruning_only(tmp_path: Path) -> None:
    out = tmp_path / "wl"
    args = ["compare", "--experiment", "wordlang-lstm", "--methods", "none", "--seeds", "1"]
    args += ["--epochs", "1", "--subset", "200", "--quiet", "--out", str(out)]
    assert main(args) == 0
    with pytest.raises(RobustnessError, match="sequence experiment.*--parts pruning"):
        evaluate_run(out, parts=["corruptions", "pruning"], examples=50)
    md = evaluate_run(out, parts=["pruning"], examples=50, log=lambda _: None)
    assert "rnn.weight_hh_l0" in md.read_text()
