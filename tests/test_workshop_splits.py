"""The GeoPython SSL workshop's split files (``UCM_train.txt`` / ``UCM_test.txt``) as they are."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config
from PIL import Image

import aerossl
from aerossl.data import scan_folder
from aerossl.data.splits import split_from_files, split_from_pool_file
from aerossl.errors import ConfigError, DataError

CLASSES = ["agricultural", "beach", "forest"]
PER_CLASS = 8


def write_workshop_files(root_dir: str, split: float = 0.5, seed: int = 123) -> None:
    """The workshop notebook's cell, as it is: per folder ``random.seed(seed)``, shuffle the
    file list, the first ``int(n * split)`` to UCM_train.txt, the rest to UCM_test.txt, each
    line ``path class_id`` with the path relative to the working directory. (The notebook
    shuffles ``os.listdir``'s order; sorted here, so the test is reproducible.)"""
    folders = sorted(f.path for f in os.scandir(root_dir) if f.is_dir())
    classes_dict = {os.path.basename(f): i for i, f in enumerate(folders)}
    with open(os.path.join(root_dir, "UCM_train.txt"), "w") as train_file, \
            open(os.path.join(root_dir, "UCM_test.txt"), "w") as test_file:
        for foldername in sorted(os.listdir(root_dir)):
            if not os.path.isdir(os.path.join(root_dir, foldername)):
                continue
            class_id = classes_dict[foldername]
            file_list = sorted(os.listdir(os.path.join(root_dir, foldername)))
            random.seed(seed)
            random.shuffle(file_list)
            train_count = int(len(file_list) * split)
            for filename in file_list[:train_count]:
                train_file.write(f"{os.path.join(root_dir, foldername, filename)} {class_id}\n")
            for filename in file_list[train_count:]:
                test_file.write(f"{os.path.join(root_dir, foldername, filename)} {class_id}\n")


@pytest.fixture
def workshop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workshop's layout in a fresh working directory: UCMerced_LandUse/Images/<class>/
    <class>NN.tif (real demo images as TIFF) and the split files written into Images/."""
    from aerossl.data import demo_dataset_path

    monkeypatch.chdir(tmp_path)
    images = tmp_path / "UCMerced_LandUse" / "Images"
    for name in CLASSES:
        sources = sorted((demo_dataset_path() / name).glob("*.jpg"))[:PER_CLASS]
        (images / name).mkdir(parents=True)
        for k, src in enumerate(sources):
            Image.open(src).convert("RGB").save(images / name / f"{name}{k}.tif")
    write_workshop_files("UCMerced_LandUse/Images")
    return images


def test_workshop_files_are_read_as_they_are(workshop: Path) -> None:
    ds = scan_folder("UCMerced_LandUse/Images")  # the .txt files at the root are not classes
    assert ds.classes == CLASSES and len(ds) == 3 * PER_CLASS
    first = Path("UCMerced_LandUse/Images/UCM_train.txt").read_text().splitlines()[0]
    assert first.startswith("UCMerced_LandUse/Images/agricultural/agricultural") and \
        first.endswith(" 0")
    split = split_from_pool_file(ds, "UCMerced_LandUse/Images/UCM_train.txt",
                                 "UCMerced_LandUse/Images/UCM_test.txt", labels_per_class=2,
                                 seed=5)
    pool = {ln.split()[0].split("Images/")[1]
            for ln in Path("UCMerced_LandUse/Images/UCM_train.txt").read_text().splitlines()}
    test = {ln.split()[0].split("Images/")[1]
            for ln in Path("UCMerced_LandUse/Images/UCM_test.txt").read_text().splitlines()}
    assert {ds.files[i] for i in split.test} == test
    assert {ds.files[i] for i in split.unlabeled} == pool
    labeled = [ds.files[i] for i in split.labeled]
    assert set(labeled) <= pool and np.bincount(ds.labels[split.labeled]).tolist() == [2, 2, 2]
    # a smaller budget of the same seed is a subset of a larger one; another seed differs
    four = split_from_pool_file(ds, "UCMerced_LandUse/Images/UCM_train.txt", None, 4, seed=5)
    assert set(split.labeled) <= set(four.labeled)
    assert {ds.files[i] for i in four.test} == test  # without a test file: all but the pool
    other = split_from_pool_file(ds, "UCMerced_LandUse/Images/UCM_train.txt", None, 2, seed=6)
    assert not np.array_equal(other.labeled, split.labeled)


def test_split_file_paths_relative_to_cwd_file_folder_or_root(workshop: Path,
                                                              tmp_path: Path) -> None:
    ds = scan_folder(workshop)
    want = [ds.files.index("beach/beach3.tif"), ds.files.index("forest/forest0.tif")]
    lines = {  # file location -> its lines naming the same two images
        "cwd.txt": "UCMerced_LandUse/Images/beach/beach3.tif 1\n"
                   "./UCMerced_LandUse/Images/forest/forest0.tif forest\n",
        "UCMerced_LandUse/beside.txt": "Images/beach/beach3.tif beach\n"
                                       "Images/forest/forest0.tif 2\n",
        "UCMerced_LandUse/Images/in_root.txt": "beach/beach3.tif\nforest\\forest0.tif 2\n",
        "elsewhere/up.txt": "../UCMerced_LandUse/Images/beach/beach3.tif 1\n"
                            f"{workshop / 'forest' / 'forest0.tif'} 2\n",
    }
    for name, text in lines.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        split = split_from_files(ds, name)
        assert split.labeled.tolist() == sorted(want), name


@pytest.mark.parametrize(("line", "pattern"), [
    ("UCMerced_LandUse/Images/beach/beach3.tif 2",
     r"bad\.txt:2: label 2 'forest' disagrees with the image 'beach/beach3\.tif', whose class "
     r"\(from its folder\) is 1 'beach'"),
    ("UCMerced_LandUse/Images/beach/beach3.tif 7", r"bad\.txt:2: label 7 is not a class index"),
    ("UCMerced_LandUse/Images/beach/beach3.tif baech",
     r"bad\.txt:2: label 'baech' is neither .*did you mean 'beach'"),
    ("UCMerced_LandUse/Images/beach/beach99.tif 1", r"bad\.txt:2: 'UCMerced_LandUse/Images/"
     r"beach/beach99\.tif' is not an image of the dataset"),
])
def test_split_file_label_errors_name_file_and_line(workshop: Path, line: str,
                                                    pattern: str) -> None:
    ds = scan_folder(workshop)
    Path("bad.txt").write_text(f"UCMerced_LandUse/Images/forest/forest1.tif 2\n{line}\n")
    with pytest.raises(DataError, match=pattern):
        split_from_files(ds, "bad.txt")


def test_train_pool_and_labeled_file_are_exclusive(workshop: Path) -> None:
    with pytest.raises(ConfigError, match="data.labeled_names_file .* or data.train_pool_file"):
        aerossl.load_config(None, ["data.root=UCMerced_LandUse/Images",
                                   "data.train_pool_file=a.txt", "data.labeled_names_file=b.txt"])


def test_trains_from_the_workshop_files(workshop: Path, tmp_path: Path) -> None:
    cfg = small_config(Path("UCMerced_LandUse/Images"), tmp_path / "runs", "fixmatch",
                       train__steps=4, train__eval_every=4, data__labels_per_class=2)
    cfg["data"].update(train_pool_file="UCMerced_LandUse/Images/UCM_train.txt",
                       test_names_file="UCMerced_LandUse/Images/UCM_test.txt")
    result = aerossl.train(cfg)
    assert result.steps == 4 and 0.0 <= result.final_acc <= 1.0
    split = result.run_dir / "split"
    pool = {ln.split()[0].split("Images/")[1]
            for ln in Path("UCMerced_LandUse/Images/UCM_train.txt").read_text().splitlines()}
    labeled = [ln for ln in (split / "labeled.txt").read_text().splitlines()
               if not ln.startswith("#")]
    assert len(labeled) == 6 and set(labeled) <= pool
    test = [ln for ln in (split / "test.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(test) == 3 * PER_CLASS // 2 and not set(test) & pool
    # resuming reads the run's own split files, wherever it is resumed from
    os.chdir(tmp_path / "runs")
    resumed = aerossl.resume(result.run_dir, ["train.steps=5"])
    assert resumed.steps == 5
