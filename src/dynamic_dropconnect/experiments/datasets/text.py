"""Text data: a word-language corpus built from Debian's spelling word lists.

``wordlang``: which of six languages a word belongs to, from its characters alone. The words
come from the word lists Debian ships for spell checkers (``/usr/share/dict``), one package per
language: ``wamerican`` (English, SCOWL), ``wngerman`` (German), ``wfrench`` (French),
``wspanish`` (Spanish), ``witalian`` (Italian), ``wdutch`` (Dutch, OpenTaal). They install
offline from the Debian archive; each file is verified by its sha256 (of the package versions
named in :data:`WORD_LISTS`).

Preparation, fixed and deterministic: Unicode NFC, lower case; keep words of letters only
(no digits, hyphens or apostrophes) of 3 to 16 characters; drop every word that occurs in more
than one language (so the label is never ambiguous); per language, shuffle the sorted words
with seed 0 and take 12,000: the first 10,000 train, the last 2,000 test (72,000 words in all,
balanced). Characters become ids ``1..V`` in sorted order (``0`` pads); each word is padded on
the **left** to 16, so a recurrent model's last step is the word's last character.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import torch

from .base import (
    DatasetBundle,
    DatasetCorruptError,
    DatasetInfo,
    Split,
    read_verified,
    resolve_files,
)

__all__ = [
    "MAX_WORD_LENGTH",
    "TEST_PER_LANGUAGE",
    "TRAIN_PER_LANGUAGE",
    "WORD_LISTS",
    "encode_words",
    "load_wordlang",
    "select_words",
]

#: (language code, file in /usr/share/dict, Debian package, version, licence)
WORD_LISTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("en", "american-english", "wamerican", "2020.12.07-2", "SCOWL licence (permissive)"),
    ("de", "ngerman", "wngerman", "20161207-11", "GPL-2+"),
    ("fr", "french", "wfrench", "1.2.7-2", "GPL-2+"),
    ("es", "spanish", "wspanish", "1.0.30", "GPL-2+"),
    ("it", "italian", "witalian", "1.10", "GPL-3+"),
    ("nl", "dutch", "wdutch", "1:2.20.19-2", "BSD-3-Clause or CC-BY-3.0 (OpenTaal)"),
)
MIN_WORD_LENGTH = 3
MAX_WORD_LENGTH = 16
TRAIN_PER_LANGUAGE = 10_000
TEST_PER_LANGUAGE = 2_000
SELECTION_SEED = 0
_LETTERS = re.compile(r"^[^\W\d_]+$")


def _words(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        word = unicodedata.normalize("NFC", line.strip()).lower()
        if MIN_WORD_LENGTH <= len(word) <= MAX_WORD_LENGTH and _LETTERS.match(word):
            out.add(word)
    return out


def select_words(texts: dict[str, str], per_language: int) -> dict[str, list[str]]:
    """Clean each language's list, drop words shared by languages, draw ``per_language``."""
    cleaned = {lang: _words(text) for lang, text in texts.items()}
    seen: dict[str, int] = {}
    for words in cleaned.values():
        for w in words:
            seen[w] = seen.get(w, 0) + 1
    chosen = {}
    for lang, words in cleaned.items():
        unique = sorted(w for w in words if seen[w] == 1)
        if len(unique) < per_language:
            raise DatasetCorruptError(
                f"wordlang: only {len(unique)} usable {lang} words, need {per_language}"
            )
        order = np.random.default_rng(SELECTION_SEED).permutation(len(unique))[:per_language]
        chosen[lang] = [unique[i] for i in order]
    return chosen


def encode_words(words: list[str], alphabet: str, length: int = MAX_WORD_LENGTH) -> torch.Tensor:
    """``(N, length)`` int64 character ids (1-based in ``alphabet``), left-padded with 0."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    out = torch.zeros(len(words), length, dtype=torch.int64)
    for row, word in enumerate(words):
        ids = [index[c] for c in word[-length:]]
        out[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.int64)
    return out


def load_wordlang(
    info: DatasetInfo, data_dir: str | Path | None = None, *, download: bool = True
) -> DatasetBundle:
    """The word-language corpus (see the module docstring) from the verified word lists."""
    resolved = resolve_files(info, data_dir, download=download, verify=False)
    specs = {spec.name: spec for spec in info.files}
    texts = {}
    for lang, file, *_ in WORD_LISTS:
        raw = read_verified(resolved.files[file], specs[file], info.name)
        texts[lang] = raw.decode("utf-8")
    chosen = select_words(texts, TRAIN_PER_LANGUAGE + TEST_PER_LANGUAGE)
    alphabet = "".join(sorted({c for words in chosen.values() for w in words for c in w}))
    splits = {"train": ([], []), "test": ([], [])}
    for label, (lang, *_rest) in enumerate(WORD_LISTS):
        words = chosen[lang]
        for name, part in (
            ("train", words[:TRAIN_PER_LANGUAGE]),
            ("test", words[TRAIN_PER_LANGUAGE:]),
        ):
            splits[name][0].extend(part)
            splits[name][1].extend([label] * len(part))

    def split(name: str) -> Split:
        words, labels = splits[name]
        return Split(encode_words(words, alphabet), torch.tensor(labels, dtype=torch.int64))

    where = resolved.files[WORD_LISTS[0][1]].parent
    return DatasetBundle(
        name=info.name,
        train=split("train"),
        test=split("test"),
        num_classes=len(WORD_LISTS),
        source=f"{where} (Debian word lists; alphabet of {len(alphabet)} characters)",
    )
