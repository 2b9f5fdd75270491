"""The wordlang corpus (Debian word lists) and the sequence models and methods."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dynamic_dropconnect as ddc
from dynamic_dropconnect.experiments.cli import main
from dynamic_dropconnect.experiments.datasets import (
    DatasetCorruptError,
    DatasetMissingError,
    load_dataset,
)
from dynamic_dropconnect.experiments.datasets.text import (
    MAX_WORD_LENGTH,
    WORD_LISTS,
    encode_words,
    select_words,
)
from dynamic_dropconnect.experiments.methods import apply_method
from dynamic_dropconnect.experiments.models import CharLSTM, CharTransformer, LockedDropout

DICT = Path("/usr/share/dict")
HAVE_WORDS = all((DICT / file).exists() for _, file, *_ in WORD_LISTS)
needs_words = pytest.mark.skipif(
    not HAVE_WORDS, reason="apt-get install wamerican wngerman wfrench wspanish witalian wdutch"
)


def test_selection_cleans_drops_shared_words_and_is_deterministic() -> None:
    texts = {
        "en": "Apple\nbanana\nit's\nx1y\nab\nhaus\ncherry\n",
        "de": "Haus\nbaum\nkäse\nstraße\n",
    }
    chosen = select_words(texts, 2)
    # lower-cased; "it's", "x1y" (not letters), "ab" (too short), "haus" (in both) are gone
    assert len(chosen["en"]) == 2 and set(chosen["en"]) <= {"apple", "banana", "cherry"}
    assert len(chosen["de"]) == 2 and set(chosen["de"]) <= {"baum", "käse", "straße"}
    assert select_words(texts, 2) == chosen  # seeded
    with pytest.raises(DatasetCorruptError, match="only 3 usable en words, need 4"):
        select_words(texts, 4)


def test_encoding_pads_on_the_left() -> None:
    ids = encode_words(["abc", "b"], "abc", length=4)
    assert ids.tolist() == [[0, 1, 2, 3], [0, 0, 0, 2]]


@pytest.mark.slow
@needs_words
def test_wordlang_loads_balanced_disjoint_splits() -> None:
    bundle = load_dataset("wordlang")
    assert bundle.num_classes == 6
    assert bundle.train.x.shape == (60_000, MAX_WORD_LENGTH) and bundle.test.x.shape == (12_000, 16)
    assert bundle.train.y.bincount().tolist() == [10_000] * 6
    assert bundle.test.y.bincount().tolist() == [2_000] * 6
    train = {tuple(row) for row in bundle.train.x.tolist()}
    assert not any(tuple(row) in train for row in bundle.test.x.tolist())  # no shared word
    assert (bundle.train.x[:, -1] > 0).all()  # left padding: the last position is a letter
    again = load_dataset("wordlang")
    assert torch.equal(again.train.x, bundle.train.x)


@needs_words
def test_wordlang_checksum_and_missing_errors(tmp_path: Path) -> None:
    # A file in --data-dir wins over the system one and is verified.
    (tmp_path / "french").write_text("bonjour\n")
    with pytest.raises(DatasetCorruptError, match=r"french.*33b3a15b"):
        load_dataset("wordlang", data_dir=tmp_path)


def test_wordlang_missing_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from dynamic_dropconnect.experiments.datasets import DATASETS

    info = DATASETS["wordlang"]
    monkeypatch.setitem(DATASETS, "wordlang", dataclasses.replace(info, system_dirs=()))
    with pytest.raises(DatasetMissingError, match="apt-get install wamerican wngerman"):
        load_dataset("wordlang", data_dir=tmp_path, download=False)


@pytest.mark.parametrize("cls", [CharLSTM, CharTransformer])
def test_sequence_models_and_methods(cls: type) -> None:
    torch.manual_seed(0)
    tokens = torch.randint(0, 20, (4, 16))
    tokens[:, :3] = 0  # left padding
    model = cls(num_classes=6, in_channels=16, image_size=16, vocab_size=20)
    assert model(tokens).shape == (4, 6)
    regularized = apply_method(cls(num_classes=6, in_channels=16, image_size=16, vocab_size=20),
                               "ddc")  # fmt: skip
    names = sorted(ddc.regularized_layers(regularized))
    if cls is CharLSTM:
        assert names == ["rnn.weight_hh_l0"]
        locked = apply_method(cls(num_classes=6, in_channels=16, image_size=16, vocab_size=20),
                              "locked-dropout")  # fmt: skip
        assert isinstance(locked.lock_in, LockedDropout) and locked.lock_out.p == 0.5
    else:
        assert len(names) == 8 and "encoder.layers.1.self_attn.out_proj.weight" in names
        with pytest.raises(ValueError, match="'locked-dropout' needs the locked_slots"):
            apply_method(cls(num_classes=6, in_channels=16, image_size=16, vocab_size=20),
                         "locked-dropout")  # fmt: skip
    with pytest.raises(ValueError, match="'standout' needs the activation_slots"):
        apply_method(cls(num_classes=6, in_channels=16, image_size=16, vocab_size=20), "standout")
    regularized(tokens).sum().backward()
    assert all(bool(r.has_gradient) for r in ddc.regularized_layers(regularized).values())


def test_locked_dropout_shares_the_mask_over_time() -> None:
    torch.manual_seed(0)
    out = LockedDropout(0.5)(torch.ones(3, 7, 5))
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same at every step
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="p must be in"):
        LockedDropout(1.0)


@pytest.mark.slow
@needs_words
def test_ddc_compare_on_wordlang(tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["compare", "--experiment", "wordlang-lstm", "--methods", "none,locked-dropout,ddc",
            "--seeds", "1", "--epochs", "1", "--subset", "1200", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert set(summary["methods"]) == {"none", "locked-dropout", "ddc"}
    header = (out / "runs/ddc/seed0/metrics.csv").read_text().splitlines()[0]
    assert "drop_rate/rnn.weight_hh_l0" in header
