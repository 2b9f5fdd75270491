"""The suite's extension API (register_model/dataset/method/experiment, plugins, the npz: and
folder: loaders) and resuming a run from its config.json.

The end-to-end tests run the example plugin of docs/suite.md, as written there, through
``ddc compare`` with ``--jobs 2`` and ``--resume`` (the resume in a fresh process, which must
find the plugin from config.json alone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments import plugins
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.config import EXPERIMENTS, Experiment, register_experiment
from dynamic_dropconnect.experiments.datasets import DATASETS, DatasetError, load_dataset
from dynamic_dropconnect.experiments.datasets.base import DatasetBundle, Split
from dynamic_dropconnect.experiments.datasets.registry import LOADERS, register_dataset
from dynamic_dropconnect.experiments.methods import (
    METHOD_KINDS,
    METHODS,
    apply_method,
    register_method,
)
from dynamic_dropconnect.experiments.models import MODELS, build_model
from dynamic_dropconnect.experiments.models.registry import register_model
from dynamic_dropconnect.experiments.suite import saved_run

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")


@pytest.fixture(autouse=True)
def _restore_registries() -> Iterator[None]:
    """Every registry, sys.path and the plugin modules as they were: a test's registrations
    do not leak into other tests."""
    registries = [MODELS, LOADERS, DATASETS, METHODS, METHOD_KINDS, EXPERIMENTS, ddc.REGULARIZERS]
    saved = [dict(r) for r in registries]
    path, modules = list(sys.path), set(sys.modules)
    yield
    for registry, before in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(before)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.split(".")[0] in ("mylab", "ddc_test_plugin", "ddc_ep_plugin"):
            del sys.modules[name]


class Tiny(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, hidden: int = 8):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(in_channels * image_size**2, hidden)
        self.act1: nn.Module = nn.ReLU()
        self.drop1: nn.Module = nn.Identity()
        self.linear2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.drop1(self.act1(self.linear1(self.flatten(x)))))


class HalfDrop(ddc.WeightRegularizer):
    def __init__(self, p: float = 0.5, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.p = p

    def drop_probabilities(self, weight: torch.Tensor) -> float:
        return self.p


class Scaled(nn.Module):
    def __init__(self, factor: float = 2.0) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * self.factor


# --------------------------------------------------------------------------------- registries


def test_the_built_ins_are_registered_through_the_same_functions() -> None:
    assert {"mlp", "simplecnn1", "char-lstm"} <= set(MODELS)
    assert {"mnist", "digits", "wordlang", "npz:", "folder:"} <= set(LOADERS)
    assert LOADERS["wordlang"].tokens and not LOADERS["mnist"].tokens
    assert METHOD_KINDS["ddc"].module is ddc.DynamicDropConnect and METHOD_KINDS["ddc"].weight
    assert METHOD_KINDS["dropout"].module is nn.Dropout
    assert METHODS["ddc-reference"].kind == "ddc" and "digits-mlp" in EXPERIMENTS


def test_register_model_builds_it_and_refuses_clashes_and_bad_names() -> None:
    register_model("tiny")(Tiny)
    model = build_model("tiny", num_classes=3, in_channels=1, image_size=4, hidden=5)
    assert isinstance(model, Tiny) and model.linear1.out_features == 5
    register_model("tiny")(Tiny)  # the same class again (a plugin imported twice): fine
    with pytest.raises(ValueError, match="model 'tiny' is already registered.*replace=True"):
        register_model("tiny")(Scaled)
    register_model("tiny", replace=True)(Scaled)
    for bad in ("Tiny", "my model", "a/b", "x:y", ""):
        with pytest.raises(ValueError, match="invalid model name"):
            register_model(bad)
    with pytest.raises(ValueError, match="unknown model 'nope'.*register_model"):
        build_model("nope", num_classes=2, in_channels=1, image_size=4)


def test_register_method_dispatches_on_the_registered_kind() -> None:
    register_method("half-drop", HalfDrop, options={"p": 0.25})
    register_method("half-drop-light", kind="half-drop", options={"p": 0.1})
    register_method("scaled", options={"factor": 3.0}, slots="activation_slots")(Scaled)

    model = apply_method(Tiny(num_classes=2, in_channels=1, image_size=4), "half-drop-light")
    reg = ddc.regularized_layers(model)["linear1"]
    assert isinstance(reg, HalfDrop) and reg.p == 0.1
    assert ddc.REGULARIZERS["half-drop"] is HalfDrop  # ddc.apply knows it by name too
    ddc.apply(nn.Sequential(nn.Linear(3, 3)), "half-drop", p=0.2)

    model = apply_method(Tiny(num_classes=2, in_channels=1, image_size=4), "scaled")
    assert isinstance(model.act1, Scaled) and model.act1.factor == 3.0
    apply_method(Tiny(num_classes=2, in_channels=1, image_size=4), "scaled", {"factor": 5.0})

    with pytest.raises(TypeError, match="method 'scaled' \\(Scaled\\) has no option 'p'.*factor"):
        apply_method(Tiny(num_classes=2, in_channels=1, image_size=4), "scaled", {"p": 0.1})
    with pytest.raises(TypeError, match="has no option 'q'"):
        register_method("bad-options", Scaled, options={"q": 1})
    with pytest.raises(ValueError, match="unknown kind 'nope'; valid: none, dropout"):
        register_method("x", kind="nope")
    with pytest.raises(ValueError, match="not both"):
        register_method("x", Scaled, kind="ddc")
    with pytest.raises(ValueError, match="method 'ddc' is already registered"):
        register_method("ddc", kind="dropconnect")
    with pytest.raises(ValueError, match="needs the dropout_slots"):
        register_method("to-drop", Scaled, slots="dropout_slots")
        apply_method(nn.Sequential(nn.Linear(2, 2)), "to-drop")


def test_register_dataset_checks_what_the_loader_returns() -> None:
    def bundle(x: torch.Tensor, y: torch.Tensor, classes: int = 2) -> DatasetBundle:
        return DatasetBundle("mine", Split(x, y), Split(x, y), classes, "test")

    images = torch.randint(0, 256, (6, 1, 4, 4))
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    register_dataset("int64-pixels")(lambda request: bundle(images, labels))
    with pytest.raises(DatasetError) as caught:
        load_dataset("int64-pixels")
    message = str(caught.value)
    assert "train x has dtype torch.int64" in message and "pixels?" in message
    assert "uint8 (0-255) or float" in message and "tokens=True" in message

    register_dataset("ids", tokens=True)(lambda request: bundle(images[:, 0, 0], labels))
    assert load_dataset("ids").train.x.dtype == torch.int64

    register_dataset("f64")(lambda request: bundle(images.double(), labels))
    assert load_dataset("f64").train.x.dtype == torch.float32
    register_dataset("narrow")(lambda request: bundle(images[:, :, :, :3].byte(), labels))
    with pytest.raises(DatasetError, match="shape \\(6, 1, 4, 3\\); images must be"):
        load_dataset("narrow")
    register_dataset("bad-labels")(lambda request: bundle(images.byte(), labels + 1))
    with pytest.raises(DatasetError, match="holds label 2; with num_classes=2 labels must"):
        load_dataset("bad-labels")
    register_dataset("float-labels")(lambda request: bundle(images.byte(), labels.float()))
    with pytest.raises(DatasetError, match="class labels must be integers 0..1"):
        load_dataset("float-labels")
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known: mnist.*npz:PATH"):
        load_dataset("nope")


def test_npz_dataset_rules(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8)  # (N, H, W): one channel
    y = np.arange(20) % 3
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    bundle = load_dataset(f"npz:{tmp_path / 'ok.npz'}")
    assert bundle.train.x.shape == (20, 1, 6, 6) and bundle.train.x.dtype == torch.uint8
    assert bundle.num_classes == 3 and "sha256" in bundle.source
    # relative to --data-dir
    assert len(load_dataset("npz:ok.npz", data_dir=tmp_path).test) == 5

    np.savez(tmp_path / "f.npz", x_train=x / 255.0, y_train=y, x_test=x / 255.0, y_test=y,
             num_classes=np.int64(4))  # fmt: skip
    bundle = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    assert bundle.train.x.dtype == torch.float32 and bundle.num_classes == 4

    np.savez(tmp_path / "i.npz", x_train=x.astype(np.int64), y_train=y, x_test=x, y_test=y)
    with pytest.raises(DatasetError, match="x_train has dtype int64 .*astype\\(np.uint8\\)"):
        load_dataset(f"npz:{tmp_path / 'i.npz'}")
    np.savez(tmp_path / "hwc.npz", x_train=np.zeros((2, 6, 6, 3), np.uint8), y_train=y[:2],
             x_test=np.zeros((2, 6, 6, 3), np.uint8), y_test=y[:2])  # fmt: skip
    with pytest.raises(DatasetError, match="\\(2, 6, 6, 3\\).*transpose\\(0, 3, 1, 2\\)"):
        load_dataset(f"npz:{tmp_path / 'hwc.npz'}")
    np.savez(tmp_path / "m.npz", x_train=x, y_train=y)
    with pytest.raises(DatasetError, match="lacks x_test, y_test"):
        load_dataset(f"npz:{tmp_path / 'm.npz'}")
    with pytest.raises(DatasetError, match="no file at"):
        load_dataset("npz:missing.npz")


def _image(path: Path, mode: str, size: int = 6, value: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value, 255 - value, 7) if mode == "RGB" else value
    Image.new(mode, (size, size), colour).save(path)


def test_folder_dataset_rules(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "grey"
    for part, n in (("train", 3), ("test", 1)):
        for label, name in enumerate(("cat", "dog")):
            for i in range(n):
                _image(root / part / name / f"{i}.png", "L", value=50 * label + i)
    (root / "train" / "cat" / ".DS_Store").write_text("skipped")
    bundle = load_dataset(f"folder:{root}")
    assert bundle.train.x.shape == (6, 1, 6, 6) and bundle.test.x.shape == (2, 1, 6, 6)
    assert bundle.train.y.tolist() == [0, 0, 0, 1, 1, 1] and bundle.num_classes == 2
    assert int(bundle.train.x[3, 0, 0, 0]) == 50

    _image(root / "test" / "dog" / "c.jpg", "RGB")  # one colour image: every image is RGB
    bundle = load_dataset(f"folder:{root}")
    assert bundle.train.x.shape == (6, 3, 6, 6) and bundle.test.x.shape == (3, 3, 6, 6)

    _image(root / "train" / "dog" / "big.png", "L", size=8)
    with pytest.raises(DatasetError, match="big.png: 8x8 pixels; every image must be square"):
        load_dataset(f"folder:{root}")
    (root / "train" / "dog" / "big.png").unlink()
    (root / "train" / "dog" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="notes.txt: not an image file.*.png, .jpg, .jpeg"):
        load_dataset(f"folder:{root}")
    (root / "train" / "dog" / "notes.txt").unlink()
    _image(root / "test" / "bird" / "0.png", "L")
    with pytest.raises(DatasetError, match="class folder\\(s\\) bird"):
        load_dataset(f"folder:{root}")


def test_plugin_errors_name_the_module(tmp_path: Path) -> None:
    with pytest.raises(plugins.PluginError, match="no module 'ddc_test_plugin_missing'"):
        plugins.load_plugins(["ddc_test_plugin_missing"])
    (tmp_path / "ddc_test_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(plugins.PluginError, match="ddc_test_plugin_broken failed.*boom"):
        plugins.load_plugins(["ddc_test_plugin_broken"])
    with pytest.raises(plugins.PluginError, match="not a module name"):
        plugins.load_plugins(["not a module"])


@pytest.mark.slow
def test_an_entry_point_plugin_is_loaded_without_a_flag(tmp_path: Path) -> None:
    info = tmp_path / "ddc_ep_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ddc-ep-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{plugins.ENTRY_POINT_GROUP}]\nmine = ddc_ep_plugin:register\n"
    )
    (tmp_path / "ddc_ep_plugin.py").write_text(
        "from dynamic_dropconnect.experiments.plugins import Experiment, register_experiment\n"
        "def register():\n"
        "    register_experiment(Experiment('ep-digits', 'digits', 'mlp', 2, 0.05, 0.0, 0))\n"
    )
    sys.path.insert(0, str(tmp_path))
    plugins.load_plugins()  # what every ddc process does: no flag names it
    assert "ep-digits" in EXPERIMENTS
    out = tmp_path / "run"
    args = ["compare", "--experiment", "ep-digits", "--methods", "ddc", "--seeds", "1"]
    assert main([*args, "--epochs", "1", "--quiet", "--out", str(out)]) == 0


# --------------------------------------------------------------------------- docs, end to end


def _docs_blocks(first_line: str) -> str:
    text = (ROOT / "docs" / "suite.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    chosen = [b for b in blocks if b.splitlines()[0].startswith(first_line)]
    assert chosen, f"docs/suite.md has no python block starting with {first_line!r}"
    return "\n\n".join(chosen)


def _docs_plugin(tmp_path: Path) -> Path:
    """docs/suite.md's example plugin, as written there, in tmp_path/mylab/ddc_plugin.py."""
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ddc_plugin.py").write_text(_docs_blocks("# mylab/ddc_plugin.py"))
    sys.path.insert(0, str(tmp_path))
    return tmp_path


def _results(out: Path) -> dict[str, float]:
    return {
        path.parent.parent.name: json.loads(path.read_text())["test_acc_at_best_val"]
        for path in sorted(out.glob("runs/*/seed*/result.json"))
    }


@pytest.mark.slow
def test_docs_plugin_runs_end_to_end_with_jobs_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Own model, own dataset, own methods (a WeightRegularizer and an activation module) and
    own experiment, from docs/suite.md, through `ddc compare --plugins`, then `--resume --jobs
    2` in a new process whose two spawned workers learn the plugin from config.json alone."""
    _docs_plugin(tmp_path)
    out = tmp_path / "runs" / "bars"
    methods = "small-weight-dc,noisy-relu"
    args = ["compare", "--plugins", "mylab.ddc_plugin", "--experiment", "bars-tiny"]
    args += ["--methods", methods, "--seeds", "1", "--epochs", "2"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["plugins"] == ["mylab.ddc_plugin"] and config["experiment"] == "bars-tiny"
    first = _results(out)
    assert sorted(first) == sorted(methods.split(","))
    settings = json.loads((out / "runs/small-weight-dc/seed0/result.json").read_text())
    assert settings["settings"]["method_options"] == {"small-weight-dc": {"p": 0.25}}
    metrics = (out / "runs/small-weight-dc/seed0/metrics.csv").read_text().splitlines()[0]
    assert "drop_rate/linear1" in metrics  # the base class's statistics come with it
    assert "small-weight-dc" in (out / "results.md").read_text()

    # Both runs lost (as if killed before they wrote anything): --resume in a fresh process,
    # with no flag but --out and --jobs, trains them again in two spawned workers.
    for method in methods.split(","):
        shutil.rmtree(out / "runs" / method)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), SRC])}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "dynamic_dropconnect.experiments.cli", "compare"]
    resumed = subprocess.run(
        [*command, "--out", str(out), "--resume", "--jobs", "2", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path / "runs",  # not where mylab is: only PYTHONPATH finds it
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing the compare of bars-tiny" in resumed.stdout
    assert resumed.stdout.count("started ") == 2  # each in its own worker process
    assert _results(out) == first  # the same seed, model and data: the same numbers


@pytest.mark.slow
def test_docs_npz_example_through_compare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _docs_plugin(tmp_path)
    monkeypatch.chdir(tmp_path)  # the example writes bars.npz into the current directory
    exec(compile(_docs_blocks("# make_bars_npz.py"), "make_bars_npz.py", "exec"), {})
    assert (tmp_path / "bars.npz").exists() and "bars-npz" in EXPERIMENTS
    out = tmp_path / "npz-run"
    args = ["compare", "--experiment", "bars-npz", "--methods", "none,dropout", "--seeds", "1"]
    assert main([*args, "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "runs/dropout/seed0/result.json").read_text())
    assert result["settings"]["dataset"] == "npz:bars.npz"


@pytest.mark.slow
def test_a_folder_dataset_through_compare(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = tmp_path / "shapes"
    for part, n in (("train", 24), ("test", 8)):
        for label, name in enumerate(("dark", "light")):
            for i in range(n):
                _image(root / part / name / f"{i}.png", "L", size=6, value=40 + 150 * label + i)
    register_experiment(
        Experiment("folder-mlp", f"folder:{root}", "mlp", 1, 0.05, 0.0, 0, batch_size=8,
                   model_options={"hidden": 16})
    )  # fmt: skip
    out = tmp_path / "run"
    args = ["compare", "--experiment", "folder-mlp", "--methods", "none,ddc", "--seeds", "1"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    assert saved_run(out).experiment.dataset == f"folder:{root}"


# ---------------------------------------------------------------------------- resume from DIR


def _readme_resume_command() -> list[str]:
    """The README's resume line, as written (up to its comment)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    line = next(
        line for line in lines if line.startswith("ddc compare --out") and "--resume" in line
    )
    return line.split("#")[0].split()


@pytest.mark.slow
def test_the_readme_resume_command_works_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = _readme_resume_command()
    assert words[:2] == ["ddc", "compare"] and "--resume" in words
    monkeypatch.chdir(tmp_path)
    out = words[words.index("--out") + 1]  # runs/mnist, relative to the current directory
    # Started with flags that are not the defaults: none of them is repeated on --resume.
    first = ["compare", "--methods", "none,ddc", "--seeds", "2", "--seed0", "3", "--epochs", "2"]
    first += ["--lr", "0.02", "--subset", "300", "--quiet", "--out", out]
    assert main(first) == 0
    before = _results(Path(out))
    (Path(out) / "runs/ddc/seed4/result.json").unlink()  # unfinished: continues from its epoch
    capsys.readouterr()
    assert main(words[1:]) == 0, capsys.readouterr().err
    assert f"continuing the compare of digits-mlp that {out}/config.json records" in (
        capsys.readouterr().out
    )
    assert _results(Path(out)) == before
    saved = saved_run(out)
    assert (saved.seeds, saved.subset, saved.experiment.lr) == ((3, 4), 300, 0.02)

    assert main([*words[1:], "--epochs", "3", "--lr", "0.02", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--epochs: 2 -> 3" in err and "--lr" not in err.split("(the run's")[0]
    assert main([*words[1:], "--experiment", "cifar10-vgg", "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--experiment: 'digits-mlp' -> 'cifar10-vgg'" in err
    assert "--compile: False -> True" in err
    assert main(["sweep", *words[2:]]) == 2
    assert "holds a `ddc compare` run" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_resumes_from_its_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--p", "0.2", "--pg", "0.25,0.5", "--no-matched", "--seeds", "1"]
    assert main([*args, "--epochs", "1", "--subset", "200", "--quiet", "--out", str(out)]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert main(["sweep", "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((out / "sweep.json").read_text()) == rows
    assert not (out / "matched").exists()  # --no-matched came from config.json
    assert main(["sweep", "--out", str(out), "--resume", "--pg", "0.5"]) == 2
    assert "--pg: [0.25, 0.5] -> [0.5]" in capsys.readouterr().err
