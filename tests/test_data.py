"""Tests of aerossl.data: folder scan, decoding, cache, splits and the demo dataset."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from aerossl.data import (
    IMAGE_EXTENSIONS,
    FolderDataset,
    Split,
    demo_dataset_path,
    load_or_build_cache,
    read_image,
    scan_folder,
    split_from_files,
    stratified_split,
    write_split,
)
from aerossl.data import cache as cache_mod
from aerossl.data.dataset import task_of
from aerossl.errors import ConfigError, DataError

UCMERCED = Path(__file__).resolve().parents[2] / "shared/data/ucmerced"


# ----------------------------------------------------------------------------- scan


def test_scan_skips_hidden_and_non_images_with_one_warning(image_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        ds = scan_folder(image_folder)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"skipped 3 files under {image_folder.resolve()}" in warnings[0].getMessage()
    assert ds.skipped == 3
    assert ds.root == image_folder.resolve()
    assert ds.classes == ["alpha", "beta", "gamma"]
    assert len(ds) == len(ds.files) == 18
    assert not any("/." in f or f.startswith(".") or f.endswith(".txt") for f in ds.files)
    assert "alpha/sub/a5.JPG" in ds.files  # recursive, case-insensitive extension
    assert ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [6, 6, 6]
    keys = [(ds.classes[lab], f) for f, lab in zip(ds.files, ds.labels, strict=True)]
    assert keys == sorted(keys)
    assert all(
        f.split("/")[0] == ds.classes[lab] for f, lab in zip(ds.files, ds.labels, strict=True)
    )
    assert ds.path(0) == ds.root / ds.files[0]
    assert sorted(IMAGE_EXTENSIONS) == [".jpeg", ".jpg", ".png", ".tif", ".tiff"]


def test_scan_clean_folder_does_not_warn(tmp_path, make_image_folder, caplog):
    make_image_folder(tmp_path / "d", {"x": 2, "y": 3})
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        ds = scan_folder(str(tmp_path / "d"))
    assert not caplog.records
    assert ds.skipped == 0 and isinstance(ds, FolderDataset)


def test_scan_errors(tmp_path, make_image_folder):
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(tmp_path / "file.jpg")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r"no class folders found \(found 1 images"):
        scan_folder(flat)
    root = make_image_folder(tmp_path / "d", {"forest": 2})
    (root / "river").mkdir()
    (root / "river" / "readme.txt").write_text("empty")
    with pytest.raises(DataError, match=r"river.*class folder 'river' has no images"):
        scan_folder(root)


# --------------------------------------------------------------------------- decode


def test_read_image_tiff_and_jpeg_and_odd_sizes(image_folder):
    for name in ["alpha/a0.jpg", "gamma/g0.tif", "gamma/g5_odd.tif", "beta/b1.png"]:
        for size in (32, 24):
            arr = read_image(image_folder / name, size)
            assert arr.shape == (3, size, size) and arr.dtype == np.uint8
            assert arr.flags.c_contiguous
    gray_png = read_image(image_folder / "beta/b1.png", 32)
    gray_tif = read_image(image_folder / "gamma/g4.tiff", 32)
    for gray in (gray_png, gray_tif):
        assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[0], gray[2])
    for name in ("beta/b2.png", "beta/b3.png"):  # RGBA, palette
        assert read_image(image_folder / name, 32).shape == (3, 32, 32)
    # already at size: pixels unchanged (lossless PNG / TIFF)
    expected = tifffile.imread(image_folder / "gamma/g0.tif").transpose(2, 0, 1)
    assert np.array_equal(read_image(image_folder / "gamma/g0.tif", 32), expected)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_read_image_tiff_layouts_and_errors(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    out = read_image(tmp_path / "planar.tif", 16)
    assert out.shape == (3, 16, 16)
    tifffile.imwrite(tmp_path / "deep.tif", np.zeros((8, 8, 3), dtype=np.uint16), photometric="rgb")
    with pytest.raises(DataError, match=r"deep\.tif.*uint16.*8-bit"):
        read_image(tmp_path / "deep.tif", 8)
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"bad\.tif: cannot decode image"):
        read_image(tmp_path / "bad.tif", 8)
    with pytest.raises(DataError, match="channels=4 is not supported"):
        read_image(tmp_path / "planar.tif", 8, channels=4)


# ---------------------------------------------------------------------------- cache


def test_cache_builds_then_reuses_without_decoding(image_folder, tmp_path, monkeypatch, caplog):
    ds = scan_folder(image_folder)
    cache_dir = tmp_path / "cache"
    arr = load_or_build_cache(ds, 24, cache_dir=cache_dir)
    assert isinstance(arr, np.memmap) and arr.shape == (18, 3, 24, 24) and arr.dtype == np.uint8
    assert not arr.flags.writeable
    for i in (0, 7, 17):
        assert np.array_equal(arr[i], read_image(ds.path(i), 24))
    key = cache_mod.cache_key(ds, 24)
    meta = json.loads((cache_dir / f"{key}.json").read_text())
    assert meta["shape"] == [18, 3, 24, 24] and meta["key"] == key
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"{key}.json", f"{key}.u8"]

    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "read_image", boom)
    with caplog.at_level(logging.INFO, logger="aerossl"):
        again = load_or_build_cache(scan_folder(image_folder), 24, cache_dir=cache_dir, verify=True)
    assert np.array_equal(np.asarray(again), np.asarray(arr))
    assert any("using cached images" in r.getMessage() for r in caplog.records)


def test_cache_key_changes_with_files_and_default_dir(image_folder, _isolated_cache_dir):
    ds = scan_folder(image_folder)
    load_or_build_cache(ds, 16)  # default dir = $AEROSSL_CACHE_DIR
    key = cache_mod.cache_key(ds, 16)
    assert (_isolated_cache_dir / f"{key}.u8").exists()
    assert cache_mod.cache_key(ds, 24) != key
    write_image_path = image_folder / "gamma" / "g9.tif"
    tifffile.imwrite(write_image_path, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    ds2 = scan_folder(image_folder)
    key2 = cache_mod.cache_key(ds2, 16)
    assert key2 != key
    assert load_or_build_cache(ds2, 16).shape == (19, 3, 16, 16)
    assert (_isolated_cache_dir / f"{key2}.u8").exists()
    # same list, touched file -> new key
    st = write_image_path.stat()
    os.utime(write_image_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_mod.cache_key(ds2, 16) != key2


def test_cache_truncated_or_missing_metadata_is_rebuilt(image_folder, tmp_path, caplog):
    ds = scan_folder(image_folder)
    cache_dir = tmp_path / "cache"
    first = np.array(load_or_build_cache(ds, 16, cache_dir=cache_dir))
    key = cache_mod.cache_key(ds, 16)
    data = cache_dir / f"{key}.u8"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size - 100)
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        rebuilt = load_or_build_cache(ds, 16, cache_dir=cache_dir)
    assert any("invalid" in r.getMessage() and "bytes" in r.getMessage() for r in caplog.records)
    assert np.array_equal(np.asarray(rebuilt), first)
    assert data.stat().st_size == first.nbytes
    (cache_dir / f"{key}.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        assert np.array_equal(np.asarray(load_or_build_cache(ds, 16, cache_dir=cache_dir)), first)
    assert any("metadata file missing" in r.getMessage() for r in caplog.records)


def test_cache_corrupt_image_is_named_and_leaves_nothing(image_folder, tmp_path):
    (image_folder / "beta" / "b4.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    ds = scan_folder(image_folder)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match=r"(?s)1 of 18 images.*beta/b4\.png: cannot decode image"):
        load_or_build_cache(ds, 16, cache_dir=cache_dir)
    assert list(cache_dir.iterdir()) == []


# --------------------------------------------------------------------------- splits


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts).astype(np.int64)


def test_stratified_split_counts_determinism_and_protocol():
    labels = _labels([10, 12, 9])
    classes = ["a", "b", "c"]
    s = stratified_split(labels, classes, test_fraction=0.5, labels_per_class=3, seed=1)
    assert s == stratified_split(labels, classes, test_fraction=0.5, labels_per_class=3, seed=1)
    assert s != stratified_split(labels, classes, test_fraction=0.5, labels_per_class=3, seed=2)
    assert np.bincount(labels[s.test]).tolist() == [5, 6, round(4.5)]
    assert np.bincount(labels[s.unlabeled]).tolist() == [5, 6, 9 - round(4.5)]
    assert np.bincount(labels[s.labeled]).tolist() == [3, 3, 3]
    assert not np.intersect1d(s.unlabeled, s.test).size
    assert np.isin(s.labeled, s.unlabeled).all()
    assert np.union1d(s.unlabeled, s.test).tolist() == list(range(len(labels)))
    for part in (s.labeled, s.unlabeled, s.test):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    everything = stratified_split(labels, classes, labels_per_class=None, seed=1)
    assert np.array_equal(everything.labeled, everything.unlabeled)
    assert np.array_equal(everything.test, s.test)
    bigger = stratified_split(labels, classes, labels_per_class=4, seed=1)
    assert np.isin(s.labeled, bigger.labeled).all()  # nested for one seed


def test_stratified_split_too_few_train_images():
    with pytest.raises(DataError, match=r"class 'b' has 6 images, 3 of them.*labels_per_class=4"):
        stratified_split(_labels([10, 6]), ["a", "b"], labels_per_class=4)


def test_write_split_roundtrip(image_folder, tmp_path):
    ds = scan_folder(image_folder)
    s = stratified_split(ds.labels, ds.classes, labels_per_class=2, seed=3)
    summary = write_split(s, ds, tmp_path / "run")
    split_dir = tmp_path / "run" / "split"
    assert summary["counts"] == {"labeled": 6, "unlabeled": 9, "test": 9}
    assert summary["per_class"]["gamma"] == {"labeled": 2, "unlabeled": 3, "test": 3}
    json.dumps(summary)
    back = split_from_files(ds, split_dir / "labeled.txt", split_dir / "test.txt")
    assert back == s
    listed = [
        ln
        for ln in (split_dir / "unlabeled.txt").read_text().splitlines()
        if not ln.startswith("#")
    ]
    assert listed == [ds.files[i] for i in s.unlabeled]


def test_split_from_files_parsing_and_drawn_test(image_folder, tmp_path):
    ds = scan_folder(image_folder)
    names = tmp_path / "labeled.txt"
    names.write_text("# my labels\n\nalpha\\a0.jpg\n./beta/b0.png\r\n  gamma/g0.tif  \n")
    s = split_from_files(ds, names, test_fraction=0.5, seed=0)
    assert [ds.files[i] for i in s.labeled] == ["alpha/a0.jpg", "beta/b0.png", "gamma/g0.tif"]
    assert np.bincount(ds.labels[s.test]).tolist() == [3, 3, 3]
    assert not np.intersect1d(s.labeled, s.test).size
    assert np.isin(s.labeled, s.unlabeled).all()
    assert np.union1d(s.unlabeled, s.test).tolist() == list(range(len(ds)))
    assert s == split_from_files(ds, names, test_fraction=0.5, seed=0)


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        (
            "alpha/a0.jpg\n\nalpha/zz.jpg\n",
            r"labeled\.txt:3: 'alpha/zz.jpg' is not an image of "
            r"the dataset at .*images",
        ),
        ("pics/alpha/a0.jpg\n", r"labeled\.txt:1: .*did you mean 'alpha/a0.jpg'"),
        ("# c\nalpha/../../secret.jpg\n", r"labeled\.txt:2: .*outside the dataset root"),
        ("/etc/passwd\n", r"labeled\.txt:1: .*absolute path"),
        ("C:\\data\\a.jpg\n", r"labeled\.txt:1: .*absolute path"),
        ("# nothing\n", r"labeled\.txt: split file names no images"),
    ],
)
def test_split_file_errors(image_folder, tmp_path, lines, pattern):
    ds = scan_folder(image_folder)
    names = tmp_path / "labeled.txt"
    names.write_text(lines)
    with pytest.raises(DataError, match=pattern):
        split_from_files(ds, names)


def test_split_file_labeled_and_test_overlap(image_folder, tmp_path):
    ds = scan_folder(image_folder)
    (tmp_path / "labeled.txt").write_text("alpha/a0.jpg\nbeta/b0.png\n")
    (tmp_path / "test.txt").write_text("gamma/g0.tif\nbeta/b0.png\n")
    with pytest.raises(
        DataError,
        match=r"labeled\.txt:2: 'beta/b0.png' is also in the test "
        r"file .*test\.txt:2",
    ):
        split_from_files(ds, tmp_path / "labeled.txt", tmp_path / "test.txt")


def test_split_dataclass_equality():
    a = Split(np.array([1]), np.array([1, 2]), np.array([0]))
    assert a == Split(np.array([1]), np.array([1, 2]), np.array([0]))
    assert a != Split(np.array([2]), np.array([1, 2]), np.array([0]))


# --------------------------------------------------------------------- demo and real


def test_demo_dataset(caplog):
    root = demo_dataset_path()
    with caplog.at_level(logging.WARNING, logger="aerossl"):
        ds = scan_folder(root)
    assert not caplog.records  # README.md at the root is not a skipped file
    assert len(ds.classes) == 21 and len(ds) == 840
    assert np.bincount(ds.labels).tolist() == [40] * 21
    assert (root / "README.md").is_file()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= 5 * 1024 * 1024
    for i in (0, 839):
        assert read_image(ds.path(i), 64).shape == (3, 64, 64)
    s = stratified_split(ds.labels, ds.classes, labels_per_class=4, seed=0)
    assert (len(s.labeled), len(s.unlabeled), len(s.test)) == (84, 420, 420)


@pytest.mark.skipif(not UCMERCED.is_dir(), reason="shared UC Merced copy not available")
def test_real_ucmerced_images():
    for name in [
        "agricultural/agricultural00.jpg",
        "airplane/airplane55.jpg",
        "airplane/airplane59.jpg",
        "tenniscourt/tenniscourt99.jpg",
    ]:
        arr = read_image(UCMERCED / name, 64)
        assert arr.shape == (3, 64, 64) and arr.dtype == np.uint8
        assert 10 < arr.mean() < 245 and arr.std() > 1
    full = read_image(UCMERCED / "agricultural/agricultural00.jpg", 256)
    assert full.shape == (3, 256, 256)


def _tiff_claiming(width: int, height: int) -> bytes:
    """A tiny little-endian TIFF whose header claims ``width`` x ``height`` 8-bit pixels."""
    import struct

    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, width * height)]
    ifd = struct.pack("<H", len(entries))
    data_offset = 8 + 2 + 12 * len(entries) + 4
    for tag, typ, value in entries:
        value = data_offset if tag == 273 else value
        ifd += struct.pack("<HHI", tag, typ, 1)
        ifd += struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 16


def test_tiff_claiming_absurd_dimensions_is_refused_before_allocation(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.tif"
    path.write_bytes(_tiff_claiming(100_000, 40_000))  # 4e9 pixels in a 150-byte file
    tracemalloc.start()
    with pytest.raises(DataError, match=r"bomb.tif: TIFF of shape .* too large to decode"):
        read_image(path, 32)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20


def test_cache_with_corrupted_bytes_of_the_right_size_is_rebuilt(image_folder, tmp_path, caplog):
    ds = scan_folder(image_folder)
    first = np.array(load_or_build_cache(ds, 16, tmp_path / "c"))
    data_file = next((tmp_path / "c").glob("*.u8"))
    raw = bytearray(data_file.read_bytes())
    raw[100] ^= 0xFF  # same size, one byte flipped
    data_file.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="aerossl"):
        again = load_or_build_cache(ds, 16, tmp_path / "c", verify=True)
    assert "invalid" in caplog.text
    assert np.array_equal(first, again)


def test_a_registered_format_is_read_by_its_layout_name(tmp_path, make_image_folder,
                                                        capsys) -> None:
    """A new data format is one class and one registration; data.layout selects it, its task
    is the default of data.task=auto and the run folder records its root."""
    import aerossl
    from aerossl.config import DataConfig
    from aerossl.data.dataset import read_dataset, recorded_root
    from aerossl.data.formats import FORMATS, DataFormat, FolderDataset, register_format

    flat = tmp_path / "flat"
    make_image_folder(tmp_path / "src", {"cat": 2, "dog": 3})
    flat.mkdir()
    for f in sorted((tmp_path / "src").rglob("*.png")):
        (flat / f"{f.parent.name}__{f.name}").write_bytes(f.read_bytes())

    from aerossl.cli import main

    assert aerossl.register_format is register_format and aerossl.DataFormat is DataFormat

    @register_format
    class Flat(DataFormat):  # "<class>__<name>.png" in one folder
        name = "_test_flat"

        def scan(self, root, cfg):
            files = sorted(p.name for p in root.iterdir())
            classes = sorted({f.split("__")[0] for f in files})
            labels = np.array([classes.index(f.split("__")[0]) for f in files])
            return FolderDataset(root, files, labels, classes), root

    try:
        cfg = DataConfig(root=str(flat), layout="_test_flat")
        assert task_of(cfg) == "multiclass"
        dataset, source = read_dataset(cfg)
        assert source == flat and dataset.classes == ["cat", "dog"]
        assert dataset.labels.tolist() == [0, 0, 1, 1, 1]
        assert recorded_root(cfg, source) == {"root": str(flat)}
        multi, _ = read_dataset(cfg.model_copy(update={"task": "multilabel"}))
        assert multi.labels.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]]
        with pytest.raises(ConfigError, match="already registered"):
            register_format(Flat)
        assert main(["list"]) == 0
        listed = capsys.readouterr().out
        assert "data formats:   classes, manifest, bigearthnet, _test_flat" in listed
    finally:
        FORMATS.pop("_test_flat", None)
    with pytest.raises(ConfigError, match=r"unknown data layout '_test_flat'.*registered: "
                                          r"classes, manifest, bigearthnet"):
        aerossl.load_config(overrides=["data.layout=_test_flat"])
    with pytest.raises(ConfigError, match="did you mean 'bigearthnet'"):
        aerossl.load_config(overrides=["data.layout=bigearthnt"])
