"""``data.image_size: auto``: twice the source images' shorter side, at most 224, set when the
config is validated and recorded in the run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import small_config, write_image

import aerossl
from aerossl.data.dataset import auto_image_size
from aerossl.errors import ConfigError
from aerossl.validate import config_from_dict


def test_auto_size_doubles_small_sources_and_caps_at_the_weights_size() -> None:
    assert [auto_image_size(s) for s in (8, 28, 40, 64, 100, 120, 256, 10_000)] == [
        32, 64, 96, 128, 192, 224, 224, 224]


def test_auto_resolves_from_the_smallest_first_image_of_each_class(image_folder: Path) -> None:
    # alpha: 40 px JPEGs, beta: 32 px PNGs, gamma: 32 px TIFFs -> 2 x 32
    cfg = config_from_dict({"data": {"root": str(image_folder), "image_size": "auto"}})
    assert cfg.data.image_size == 64
    # the embedded demo (64 px) and an explicit size are left as they are
    assert config_from_dict({"data": {"image_size": "auto"}}).data.image_size == 128
    assert config_from_dict({"data": {"image_size": 96}}).data.image_size == 96


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_auto_reads_multiband_rasters_through_gdal(tmp_path: Path) -> None:
    for name in ("crop", "water"):
        path = tmp_path / "ms" / name / f"{name}.tif"
        path.parent.mkdir(parents=True)
        data = np.random.default_rng(0).integers(0, 4000, (13, 48, 60), dtype=np.uint16)
        with rasterio.open(path, "w", driver="GTiff", width=60, height=48, count=13,
                           dtype="uint16", compress="lzw") as dst:
            dst.write(data)
    cfg = config_from_dict({"data": {"root": str(tmp_path / "ms"), "image_size": "auto",
                                     "labels_per_class": 1}})
    assert cfg.data.image_size == 96  # 2 x 48, the shorter side


def test_bad_sizes_and_unreadable_images_are_config_errors(tmp_path: Path) -> None:
    for bad in ("big", 4, True, 2.5):
        with pytest.raises(ConfigError, match=r"data\.image_size: .*at least 8 .* or 'auto'"):
            config_from_dict({"data": {"image_size": bad}})
    root = tmp_path / "broken"
    write_image(root / "a" / "a0.png")
    (root / "b").mkdir()
    (root / "b" / "b0.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match=r"data\.image_size: auto: .*b0\.jpg: cannot read"):
        config_from_dict({"data": {"root": str(root), "image_size": "auto"}})


def test_a_run_records_the_resolved_size(make_image_folder, tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", {"x": 6, "y": 6}, size=20)
    raw = small_config(root, tmp_path / "runs", "supervised", data__image_size="auto",
                       data__labels_per_class=2, train__steps=2, train__eval_every=2)
    result = aerossl.train(raw)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["data"]["image_size"] == 32  # 2 x 20 = 40, to a multiple of 32
    assert aerossl.resume(result.run_dir).final_acc == result.final_acc
