"""Experiment files (--config) and --set overrides: keys, values, precedence, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamic_dropconnect.experiments.config import EXPERIMENTS, Experiment, get_experiment
from dynamic_dropconnect.experiments.methods import METHODS
from dynamic_dropconnect.experiments.overrides import (
    ConfigError,
    apply_overrides,
    describe,
    load_config_file,
    method_option_names,
    model_option_names,
    normalize,
    parse_set,
    resolve,
)

MNIST = get_experiment("mnist-simplecnn1")  # 75 epochs, warmup 12, lr 0.001, wd 5e-4


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def _error(match: str, func, *args, **kwargs) -> str:
    """The ConfigError message of ``func(*args)``, asserted to contain ``match``."""
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert match in message, message
    return message


# --- --set: parsing ---------------------------------------------------------------------------


def test_set_values_are_toml_and_keys_canonical() -> None:
    parsed = parse_set(
        [
            "ddc.p=0.2",
            "optimizer.weight_decay=0",
            "optimizer=adam",
            "hflip=true",
            "image_size=none",
            "methods.ddc-learned.target=0.4",
            "model_options.hidden=64",
            'name="mine"',
        ]
    )
    assert parsed == {
        "ddc.p": 0.2,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "hflip": True,
        "image_size": None,
        "ddc-learned.target": 0.4,
        "model.hidden": 64,
        "name": "mine",
    }
    assert isinstance(parsed["weight_decay"], float)


def test_set_int_to_float_for_float_options_and_none_where_taken() -> None:
    parsed = parse_set(["ddc.tau=0", "ddc.p_max=none", "standout.alpha=2"])
    assert parsed == {"ddc.tau": 0.0, "ddc.p_max": None, "standout.alpha": 2.0}
    assert isinstance(parsed["ddc.tau"], float) and isinstance(parsed["standout.alpha"], float)


def test_set_later_item_wins_across_spellings() -> None:
    parsed = parse_set(["weight_decay=1", "optimizer.weight_decay=2", "weight_decay=3"])
    assert parsed == {"weight_decay": 3.0}
    assert parse_set(["lr=0.1", "optimizer.lr=0.2"]) == {"lr": 0.2}


def test_inline_table_value_is_flattened() -> None:
    assert parse_set(["methods={ddc={p=0.1, pg=0.2}}"]) == {"ddc.p": 0.1, "ddc.pg": 0.2}


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("epochs", "--set epochs: expected KEY=VALUE"),
        ("=3", "--set =3: the key is empty; valid: batch_size"),
        ("epochs=", "--set epochs=: the value is empty"),
        ("ddc.p=[1,", "cannot read value '[1,'"),
        ('name="abc', "cannot read value '\"abc'"),
        ("a..b=1", "key 'a..b' has an empty part; valid: batch_size"),
    ],
)
def test_set_malformed_items_are_named(item: str, match: str) -> None:
    _error(match, parse_set, [item])


def test_unknown_key_lists_valid_keys() -> None:
    message = _error("unknown key 'epoch'", parse_set, ["epoch=3"])
    assert "did you mean 'epochs'" in message
    for key in ("batch_size", "crop_padding", "epochs", "lr", "optimizer.weight_decay", "warmup"):
        assert key in message
    assert "model.<option>" in message and "<method>.<option>" in message
    assert "ddc-learned" in message  # the methods <method> may be
    assert message.startswith("--set epoch=3: ")


def test_unknown_method_lists_methods() -> None:
    message = _error("unknown method 'ddx'", parse_set, ["ddx.p=0.2"])
    assert "did you mean 'ddc'" in message
    assert all(name in message for name in METHODS)
    _error("unknown method 'nope'", parse_set, ["methods.nope.p=1"])


def test_unknown_method_option_lists_the_methods_options() -> None:
    message = _error("unknown option 'pgg' of method 'ddc'", parse_set, ["ddc.pgg=1"])
    assert "did you mean 'pg'" in message
    valid = message.split("valid options of ddc: ")[1]
    for option in ("p", "pg", "tau", "p_max", "direction", "rescale", "update", "mask_mode"):
        assert option in valid.split(", ")
    assert "generator" not in valid  # an object, not a value a file can give
    message = _error("unknown option 'alpha' of method 'dropout'", parse_set, ["dropout.alpha=1"])
    assert message.endswith("valid options of dropout: p")
    # apply_method builds nn.Dropout(p) only: inplace would be dropped silently
    _error("valid options of dropout: p", parse_set, ["dropout.inplace=true"])
    _error("valid options of none: none (it takes no options)", parse_set, ["none.p=0.1"])
    _error("valid options of standout: alpha, beta", parse_set, ["standout.p=0.1"])


def test_other_key_errors() -> None:
    _error("valid: optimizer.name, optimizer.lr", parse_set, ["optimizer.beta=0.9"])
    _error("--experiment NAME", parse_set, ["experiment=cifar10-vgg"])
    _error("set its options as ddc.<option>", parse_set, ["ddc=0.2"])
    _error("'model_options' takes a table", parse_set, ["model_options=3"])


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("epochs=2.5", "epochs must be a whole number, got 2.5"),
        ("epochs=true", "epochs must be a whole number, got True"),
        ("hflip=1", "hflip must be true or false, got 1"),
        ("lr=true", "lr must be a number, got True"),
        ("lr=fast", "lr must be a number, got 'fast'"),
        ("image_size=2.5", "image_size must be a whole number or none, got 2.5"),
        ("schedule=3", "schedule must be a string, got 3"),
        ("lr=inf", "lr=inf: a value must be a finite number"),
        ("ddc.p=2024-01-01", "a date is not a setting value"),
    ],
)
def test_value_types_are_checked(item: str, match: str) -> None:
    message = _error(match, parse_set, [item])
    assert message.startswith(f"--set {item}: ")


# --- applying -------------------------------------------------------------------------------


def test_method_option_lands_in_method_options() -> None:
    experiment = apply_overrides(MNIST, parse_set(["ddc.p=0.2", "ddc.pg=0.6"]))
    assert experiment.method_options == {"ddc": {"p": 0.2, "pg": 0.6}}
    assert MNIST.method_options == {}  # the base is not touched


def test_method_options_add_to_the_experiments_own() -> None:
    base = get_experiment("wordlang-transformer")
    experiment = apply_overrides(base, {"ddc.tau": 0.3})
    assert experiment.method_options["ddc"] == {"p": 0.05, "pg": 0.25, "tau": 0.3}
    assert experiment.method_options["dropout"] == {"p": 0.1}


def test_weight_decay_alias_sets_float_zero() -> None:
    experiment = apply_overrides(MNIST, parse_set(["optimizer.weight_decay=0"]))
    assert experiment.weight_decay == 0.0 and isinstance(experiment.weight_decay, float)


def test_epochs_keep_the_warmup_share() -> None:
    experiment = apply_overrides(MNIST, {"epochs": 15})
    assert experiment == MNIST.with_epochs(15)
    assert (experiment.epochs, experiment.warmup) == (15, 2)
    # an explicit warmup is taken as given
    explicit = apply_overrides(MNIST, {"epochs": 15, "warmup": 5})
    assert (explicit.epochs, explicit.warmup) == (15, 5)


def test_model_options_are_checked_against_the_model() -> None:
    mlp = get_experiment("digits-mlp")
    assert apply_overrides(mlp, {"model.hidden": 64}).model_options == {"hidden": 64}
    message = _error(
        "model.variant: unknown option of model 'mlp'",
        apply_overrides,
        mlp,
        {"model.variant": "mnist"},
    )
    assert message.endswith("valid options of mlp: model.hidden")
    # another model starts from no options: simplecnn1's variant is not the mlp's
    switched = apply_overrides(MNIST, {"model": "mlp"})
    assert switched.model == "mlp" and switched.model_options == {}
    assert model_option_names("simplecnn1") == ["variant"]


def test_dataset_and_model_names_are_checked() -> None:
    message = _error(
        "model='mpl': unknown model (did you mean 'mlp'?)", apply_overrides, MNIST, {"model": "mpl"}
    )
    assert "vgg13bn" in message
    message = _error(
        "dataset='mnsit': unknown dataset", apply_overrides, MNIST, {"dataset": "mnsit"}
    )
    assert "cifar10" in message


def test_experiment_checks_surface_with_the_key() -> None:
    message = _error("optimizer='rmsprop'", apply_overrides, MNIST, {"optimizer": "rmsprop"})
    assert "'sgd' or 'adam'" in message
    message = _error("schedule='linear'", apply_overrides, MNIST, {"schedule": "linear"})
    assert "valid: authors, cosine" in message
    _error("lr=0.0: lr must be a positive number", apply_overrides, MNIST, {"lr": 0})
    _error("epochs=0: epochs must be >= 1", apply_overrides, MNIST, {"epochs": 0})
    _error("weight_decay=-1.0", apply_overrides, MNIST, {"weight_decay": -1})
    # only the combination is refused: both keys are named
    message = _error(
        "warmup must be in [0, epochs)",
        apply_overrides,
        MNIST,
        {
            "epochs": 10,
            "warmup": 10,
        },
    )
    assert message.startswith("epochs=10, warmup=10: ")


def test_method_values_are_checked_by_building_the_method() -> None:
    message = _error("ddc.p=1.5: method 'ddc':", apply_overrides, MNIST, {"ddc.p": 1.5})
    assert "p" in message.split("method 'ddc':")[1]
    _error("ddc.direction='sideways'", apply_overrides, MNIST, {"ddc.direction": "sideways"})
    _error("dropout.p=1.5: method 'dropout'", apply_overrides, MNIST, {"dropout.p": 1.5})
    _error("method 'ddc-learned'", apply_overrides, MNIST, {"ddc-learned.target": 2.0})
    _error(
        "ddc-shuffled.pg=-1.0: method 'ddc-shuffled'",
        apply_overrides,
        MNIST,
        {"ddc-shuffled.pg": -1},
    )


def test_option_names_follow_the_library() -> None:
    # every default option of a method and every experiment's method option is a valid name
    for name, method in METHODS.items():
        names = method_option_names(name)
        assert names is not None
        assert set(method.options) <= set(names), name
    for experiment in EXPERIMENTS.values():
        for name, options in experiment.method_options.items():
            assert set(options) <= set(method_option_names(name)), (experiment.name, name)
        names = model_option_names(experiment.model)
        assert set(experiment.model_options) <= set(names or experiment.model_options)
    _error("unknown method 'ddx'", method_option_names, "ddx")


# --- experiment files -------------------------------------------------------------------------

BRIEF_TOML = """
experiment = "mnist-simplecnn1"
epochs = 10
lr = 0.01

[optimizer]
name = "sgd"
weight_decay = 0.0005
momentum = 0.8

[model]
variant = "cifar10"

[methods.ddc]
p = 0.2

[run]
methods = ["none", "ddc"]
seeds = 2
subset = 500
"""


def test_config_file_round_trip(tmp_path: Path) -> None:
    config = load_config_file(_write(tmp_path, BRIEF_TOML))
    assert config.experiment == "mnist-simplecnn1"
    assert config.run == {"methods": ["none", "ddc"], "seeds": 2, "subset": 500}
    resolved = resolve(None, config)
    expected = Experiment(
        "mnist-simplecnn1",
        "mnist",
        "simplecnn1",
        10,
        0.01,
        5e-4,
        2,  # round(12 * 10 / 75)
        momentum=0.8,
        model_options={"variant": "cifar10"},
        method_options={"ddc": {"p": 0.2}},
    )
    assert resolved.experiment == expected
    assert resolved.base == "mnist-simplecnn1"
    assert resolved.run == config.run
    assert set(resolved.sources.values()) == {str(tmp_path / "run.toml")}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epoch = 3\n", "unknown key 'epoch' (did you mean 'epochs'?); valid: batch_size"),
        ("weight_decay = 0\n[optimizer]\nweight_decay = 1\n", "are the same setting"),
        ("[methods.ddc]\npgg = 1\n", "unknown option 'pgg' of method 'ddc'"),
        ("[methods.ddx]\np = 1\n", "unknown method 'ddx'"),
        ("[optimizer]\nnesterov = true\n", "valid: optimizer.name, optimizer.lr"),
        ("epochs = 2.5\n", "epochs must be a whole number, got 2.5"),
        ("experiment = 'mnist'\n", "key 'experiment': unknown experiment 'mnist'; valid: "),
        ("experiment = 3\n", "experiment must be a name, got 3"),
        ("[run]\nseed = 1\n", "unknown key 'run.seed' (did you mean 'seeds'?); valid: run.methods"),
        ("[run]\nmethods = ['ddc', 'dcc']\n", "run.methods: unknown method 'dcc'; valid: none"),
        ("[run]\nseeds = 0\n", "run.seeds must be >= 1, got 0"),
        ("[run]\nsubset = 1.5\n", "run.subset must be a whole number, got 1.5"),
        ("[methods]\n", "methods is an empty table"),
        ("epochs = \n", "not valid TOML"),
    ],
)
def test_config_file_errors_name_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    message = _error(match, load_config_file, path)
    assert message.startswith(f"--config {path}: ")


def test_config_file_missing(tmp_path: Path) -> None:
    _error("cannot read it", load_config_file, tmp_path / "absent.toml")


def test_config_file_values_go_through_experiment_checks(tmp_path: Path) -> None:
    config = load_config_file(_write(tmp_path, '[optimizer]\nname = "rmsprop"\n'))
    assert config.overrides == {"optimizer": "rmsprop"}
    message = _error("optimizer='rmsprop'", resolve, "digits-mlp", config)
    assert "'sgd' or 'adam'" in message


# --- precedence and recording -----------------------------------------------------------------


def test_precedence_defaults_config_flags_set(tmp_path: Path) -> None:
    config = load_config_file(
        _write(tmp_path, "epochs = 10\nlr = 0.01\nbatch_size = 32\n[methods.ddc]\np = 0.1\n")
    )
    resolved = resolve(
        "mnist-simplecnn1",
        config,
        sets=["lr=0.03", "ddc.p=0.2", "ddc.p=0.25"],
        flags={"epochs": 20, "lr": 0.02, "schedule": None},
    )
    experiment = resolved.experiment
    assert experiment.momentum == MNIST.momentum  # experiment default
    assert experiment.batch_size == 32  # config file
    assert experiment.epochs == 20  # flag over config file
    assert experiment.lr == 0.03  # --set over flag and file
    assert experiment.method_options == {"ddc": {"p": 0.25}}  # later --set wins
    assert resolved.sources == {
        "batch_size": str(tmp_path / "run.toml"),
        "epochs": "--epochs",
        "lr": "--set",
        "ddc.p": "--set",
    }
    # no experiment named: the config file's, else the CLI's default
    assert resolve(
        None, load_config_file(_write(tmp_path, 'experiment = "cifar10-vgg"\n'))
    ).base == ("cifar10-vgg")
    assert resolve("digits-mlp", config).base == "digits-mlp"


def test_duplicate_in_one_layer_is_an_error_but_not_across_set() -> None:
    _error(
        "weight_decay and optimizer.weight_decay are the same setting",
        normalize,
        {
            "optimizer.weight_decay": 0,
            "weight_decay": 1,
        },
    )


def test_describe_is_json_safe_and_header_shows_the_settings(tmp_path: Path) -> None:
    config = load_config_file(_write(tmp_path, BRIEF_TOML))
    resolved = resolve(None, config, sets=["image_size=none", "ddc.p_max=none"])
    record = resolved.describe()
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["experiment"] == "mnist-simplecnn1"
    assert record["settings"] == resolved.experiment.to_dict()
    assert record["overrides"]["ddc.p_max"] is None
    assert record["override_sources"]["ddc.p_max"] == "--set"
    assert describe(MNIST)["overrides"] == {}


# --- through the CLI: ddc compare --config FILE --set KEY=VALUE -----------------------------

_RUN_TOML = """\
experiment = "digits-mlp"
epochs = 1
[optimizer]
weight_decay = 0.0
[methods.ddc]
p = 0.2
[run]
methods = ["none", "ddc"]
seeds = 1
subset = 300
"""


@pytest.mark.slow
def test_cli_config_and_set_are_applied_recorded_and_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from dynamic_dropconnect.experiments.cli import main

    config = _write(tmp_path, _RUN_TOML)
    out = tmp_path / "run"
    args = ["compare", "--config", str(config), "--out", str(out), "--quiet"]
    assert main([*args, "--set", "ddc.pg=0.6", "--set", "lr=0.1", "--methods", "ddc"]) == 0
    capsys.readouterr()
    record = json.loads((out / "config.json").read_text())
    # [run] gave seeds and subset; the --methods flag beat the file's methods.
    assert record["methods"] == ["ddc"] and record["seeds"] == [0] and record["subset"] == 300
    assert record["settings"]["method_options"] == {"ddc": {"p": 0.2, "pg": 0.6}}
    assert record["settings"]["lr"] == 0.1 and record["settings"]["weight_decay"] == 0.0
    assert record["override_sources"] == {
        "epochs": str(config),
        "weight_decay": str(config),
        "ddc.p": str(config),
        "ddc.pg": "--set",
        "lr": "--set",
    }
    result = json.loads((out / "runs/ddc/seed0/result.json").read_text())
    assert result["settings"]["method_options"]["ddc"] == {"p": 0.2, "pg": 0.6}  # trained so
    header = (out / "results.md").read_text().split("| method |")[0]
    assert "**overridden**: " in header and "ddc.pg=0.6 (--set)" in header

    # --resume alone continues the recorded run and keeps the provenance; another --set is
    # refused naming what it would change, before anything is written.
    assert main(["compare", "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["overrides"] == record["overrides"]
    capsys.readouterr()
    assert main(["compare", "--out", str(out), "--resume", "--set", "ddc.p=0.3"]) == 2
    err = capsys.readouterr().err
    assert "--config/--set method_options" in err and "'p': 0.3" in err


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("ddc.pgg=1", "unknown option 'pgg' of method 'ddc'"),
        ("epoch=3", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("optimizer=rmsprop", "optimizer='rmsprop'"),
        ("lr", "--set"),
    ],
)
def test_cli_bad_set_is_an_error_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, item: str, expected: str
) -> None:
    from dynamic_dropconnect.experiments.cli import main

    out = tmp_path / "run"
    assert main(["compare", "--set", item, "--out", str(out), "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()
