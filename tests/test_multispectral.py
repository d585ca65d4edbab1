"""Multispectral input: GeoTIFFs and BigEarthNet patches into the uint8 cache, band selection,
value scaling, augmentations for N bands, and training end to end on 13 bands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from geodata import BIGEARTHNET_SIZES, write_bigearthnet_patch, write_geotiff
from pyproj import Transformer

import aerossl
from aerossl.augment.randaugment import RANDAUGMENT_OPS, RandAugment
from aerossl.data import load_or_build_cache, read_image, scan_folder
from aerossl.data.bigearthnet import (
    BIGEARTHNET_BANDS,
    patch_labels,
    patch_location,
    read_patch,
    scan_bigearthnet,
)
from aerossl.data.multispectral import BandSpec, resolve_band_spec
from aerossl.data.raster import SENTINEL2_BANDS, geotiff_location, read_raster
from aerossl.engine.trainer import Trainer
from aerossl.errors import DataError
from aerossl.runs.loader import load_run_network
from aerossl.validate import config_from_dict


def s2_cube(seed: int, size: int = 16, shift: int = 0) -> np.ndarray:
    """13 uint16 bands with reflectance-like values (band b around 500 + 150 b)."""
    rng = np.random.default_rng(seed)
    base = 500 + 150 * np.arange(13)[:, None, None] + shift
    return (base + rng.integers(0, 300, (13, size, size))).astype(np.uint16)


# ---------------------------------------------------------------------------- GeoTIFF


def test_13_band_uint16_geotiff_reads_bands_names_and_wgs84_centre(tmp_path: Path) -> None:
    cube = s2_cube(0, size=64)
    path = write_geotiff(tmp_path / "scene.tif", cube, epsg=32632, origin=(500000.0, 5000000.0),
                         pixel=10.0, date="2021:07:04 10:30:00")
    arr, names = read_raster(path)
    assert arr.shape == (13, 64, 64) and arr.dtype == np.uint16
    assert np.array_equal(arr, cube)
    assert names == list(SENTINEL2_BANDS) and "B8A" in names  # no descriptions: S2 defaults

    loc = geotiff_location(path)
    # centre of a pixel-is-area raster: origin + 32 pixels * 10 m east and south
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(500320.0, 4999680.0)
    assert loc.lat == pytest.approx(lat, abs=1e-9) and loc.lon == pytest.approx(lon, abs=1e-9)
    assert loc.lat == pytest.approx(45.15, abs=0.01) and loc.lon == pytest.approx(9.004, abs=0.01)
    assert str(loc.date) == "2021-07-04"

    # pixel-is-point: the tiepoint is the centre of pixel (0, 0) -> centre at 31.5 pixels
    point = write_geotiff(tmp_path / "point.tif", cube, pixel_is_point=True)
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(500315.0, 4999685.0)
    assert geotiff_location(point).lat == pytest.approx(lat, abs=1e-9)
    # a geographic CRS is passed through
    geo = write_geotiff(tmp_path / "geo.tif", cube[:2], epsg=4326, origin=(10.0, 50.0), pixel=0.01)
    assert geotiff_location(geo).lat == pytest.approx(50.0 - 0.32)
    assert geotiff_location(geo).lon == pytest.approx(10.0 + 0.32)


def test_training_and_prediction_place_a_rotated_geotiff_as_gdal_does(tmp_path: Path) -> None:
    """Every reader places a raster by GDAL's transform: a ModelTransformation (rotation
    included) alone, and for a file that carries the tiepoint and pixel scale too (which the
    GeoTIFF specification forbids), the tiepoint and scale, as GDAL and QGIS do."""
    from aerossl.data.metadata import collect_metadata
    from aerossl.data.raster import georeference
    from aerossl.runs.predict import geotiff_center, to_lat_lon

    cube = s2_cube(0, size=64)
    # a 20 m grid rotated by 90 degrees, far from the tiepoint's 10 m grid at (500000, 5000000)
    rotated = (0.0, 20.0, 0.0, 600000.0,
               20.0, 0.0, 0.0, 4900000.0,
               0.0, 0.0, 0.0, 0.0,
               0.0, 0.0, 0.0, 1.0)
    alone = write_geotiff(tmp_path / "a" / "rotated.tif", cube, transformation=rotated,
                          tiepoint=False, date="2021:07:04 10:30:00")
    centre = (600000.0 + 20.0 * 32, 4900000.0 + 20.0 * 32)  # column and row 32 of 64
    assert georeference(alone) == (*centre, 32632)
    assert geotiff_center(alone) == (*centre, 32632)
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(*centre)
    train = geotiff_location(alone)
    assert (train.lat, train.lon) == pytest.approx((lat, lon), abs=1e-9)
    assert to_lat_lon(*geotiff_center(alone)) == pytest.approx((lat, lon), abs=1e-9)
    meta = collect_metadata(tmp_path, ["a/rotated.tif"], "geotiff")
    assert (meta[0].lat, meta[0].lon) == pytest.approx((lat, lon), abs=1e-9)
    both = write_geotiff(tmp_path / "a" / "both.tif", cube, transformation=rotated)
    plain = write_geotiff(tmp_path / "a" / "plain.tif", cube)
    assert georeference(both) == geotiff_center(both) == georeference(plain) == (
        500320.0, 4999680.0, 32632)


def test_band_names_come_from_gdal_descriptions_and_select_by_name_or_index(
    tmp_path: Path,
) -> None:
    cube = s2_cube(1)[:4]
    path = write_geotiff(tmp_path / "rgbn.tif", cube, names=["B02", "B03", "B04", "B08"])
    assert read_raster(path)[1] == ["B02", "B03", "B04", "B08"]
    spec = resolve_band_spec([path], np.array([0]), 16, bands=["B04", "b3", 0])
    assert spec is not None and spec.select == (2, 1, 0) and spec.channels == 3
    with pytest.raises(DataError, match=r"rgbn\.tif.*band 'B05' does not exist.*B02, B03"):
        resolve_band_spec([path], np.array([0]), 16, bands=["B05"])
    assert resolve_band_spec([path], np.array([0]), 16, bands=["B8"]).select == (3,)  # B08
    with pytest.raises(DataError, match=r"did you mean 'B08'"):
        resolve_band_spec([path], np.array([0]), 16, bands=["B8X"])
    with pytest.raises(DataError, match="band index 4 is out of range"):
        resolve_band_spec([path], np.array([0]), 16, bands=[4])


def test_uint16_is_scaled_per_band_into_uint8_with_recorded_ranges(tmp_path: Path) -> None:
    paths = [write_geotiff(tmp_path / f"{i}.tif", s2_cube(i)) for i in range(3)]
    spec = resolve_band_spec(paths, np.arange(3), 16, scaling="fixed", max_value=4000)
    assert spec is not None and spec.band_min == (0.0,) * 13 and spec.band_max == (4000.0,) * 13
    out = read_image(paths[0], 16, 13, spec)
    expected = np.rint(np.clip(s2_cube(0).astype(np.float64) / 4000, 0, 1) * 255)
    assert out.dtype == np.uint8 and np.array_equal(out, expected.astype(np.uint8))

    robust = resolve_band_spec(paths, np.arange(3), 16)  # percentile 1..99 per band
    assert robust is not None and robust.band_min is not None and robust.band_max is not None
    pixels = np.stack([s2_cube(i) for i in range(3)]).astype(np.float32)
    for b in (0, 7, 12):
        lo, hi = np.percentile(pixels[:, b], [1, 99])
        assert robust.band_min[b] == pytest.approx(lo, abs=1e-3)
        assert robust.band_max[b] == pytest.approx(hi, abs=1e-3)
    scaled = read_image(paths[0], 16, 13, robust).astype(np.float64)
    # the robust range spends the levels on the values present: every band spans ~0..255
    assert scaled.min(axis=(1, 2)).max() <= 5 and scaled.max(axis=(1, 2)).min() >= 250
    step = (np.asarray(robust.band_max) - np.asarray(robust.band_min)) / 255
    restored = np.asarray(robust.band_min)[:, None, None] + scaled * step[:, None, None]
    inside = (s2_cube(0) >= np.asarray(robust.band_min)[:, None, None]) & (
        s2_cube(0) <= np.asarray(robust.band_max)[:, None, None])
    err = np.abs(restored - s2_cube(0))[inside]
    assert err.max() <= step.max() / 2 + 1e-6  # quantisation: at most half a level


def test_band_count_differing_between_files_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(3):
        write_geotiff(root / "a" / f"{i}.tif", s2_cube(i))
    write_geotiff(root / "b" / "short.tif", s2_cube(9)[:12])
    ds = scan_folder(root)
    spec = resolve_band_spec([ds.root / f for f in ds.files], np.arange(3), 16, scaling="fixed")
    with pytest.raises(DataError, match=r"short\.tif: image has 12 bands but the dataset's "
                                        r"first image .*0\.tif has 13"):
        load_or_build_cache(ds, 16, tmp_path / "cache", channels=13, spec=spec)


def test_rgb_data_keeps_the_rgb_reader_and_bands_select_rgb_channels(
    five_classes: Path,
) -> None:
    ds = scan_folder(five_classes)
    paths = [ds.root / f for f in ds.files]
    assert resolve_band_spec(paths, np.arange(10), 32) is None
    spec = resolve_band_spec(paths, np.arange(10), 32, bands=["B", "G", "R"])
    assert spec is not None and spec.band_min is None  # 8-bit: cached as is
    bgr = read_image(paths[0], 32, 3, spec)
    rgb = read_image(paths[0], 32)
    assert np.abs(bgr[::-1].astype(int) - rgb.astype(int)).max() <= 1  # bicubic per band


# ---------------------------------------------------------------------------- BigEarthNet


def test_bigearthnet_patch_folder_loads_bands_labels_and_date(tmp_path: Path) -> None:
    labels = ["Non-irrigated arable land", "Mixed forest"]
    folder = write_bigearthnet_patch(tmp_path / "BigEarthNet-v1.0",
                                     "S2A_MSIL2A_20170613T101031_1_2", labels,
                                     date="2017-06-13 10:10:32")
    arr, names = read_patch(folder, 120)
    assert arr.shape == (12, 120, 120) and arr.dtype == np.float32
    assert names == list(BIGEARTHNET_BANDS)
    # every band resampled to the 10 m grid; values stay in the band's range
    for k, band in enumerate(names):
        base = 300 + 100 * list(BIGEARTHNET_SIZES).index(band)
        assert base - 40 <= arr[k].mean() <= base + 240
    sub, sub_names = read_patch(folder, 32, ["B04", "B03", "B02"])
    assert sub.shape == (3, 32, 32) and sub_names == ["B04", "B03", "B02"]
    assert patch_labels(folder) == labels
    loc = patch_location(folder)
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(500600.0, 4999400.0)
    assert loc.lat == pytest.approx(lat, abs=1e-9) and loc.lon == pytest.approx(lon, abs=1e-9)
    assert str(loc.date) == "2017-06-13"

    scan = scan_bigearthnet(tmp_path / "BigEarthNet-v1.0")
    assert scan.patches == [folder.name] and scan.labels == [labels]
    assert scan.classes == sorted(labels)
    with pytest.raises(DataError, match="band 'B10' does not exist"):
        read_patch(folder, 32, ["B10"])


def test_bigearthnet_patches_in_class_folders_are_images_of_the_cache(tmp_path: Path) -> None:
    root = tmp_path / "ben"
    for i in range(2):
        write_bigearthnet_patch(root / "forest", f"P_{i}", ["Mixed forest"], seed=i)
        write_bigearthnet_patch(root / "water", f"Q_{i}", ["Water bodies"], seed=10 + i)
    ds = scan_folder(root)
    assert ds.files == ["forest/P_0", "forest/P_1", "water/Q_0", "water/Q_1"]
    paths = [ds.root / f for f in ds.files]
    spec = resolve_band_spec(paths, np.arange(4), 24, bands=["B04", "B03", "B02", "B08"])
    assert spec is not None and spec.channels == 4
    arr = load_or_build_cache(ds, 24, tmp_path / "cache", channels=4, spec=spec)
    assert arr.shape == (4, 4, 24, 24) and arr.dtype == np.uint8
    assert np.array_equal(arr[2], read_image(paths[2], 24, 4, spec))


# ---------------------------------------------------------------------------- augmentations


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_randaugment_ops_on_13_bands(op: str) -> None:
    """Every op keeps shape and range on 13 bands; all but Color and Contrast act on each band
    on its own (the same result on bands 0-2 as on a 3-band image), while Color and Contrast
    blend towards the mean over all bands (a grey level for any band count)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 13, 12, 12, generator=gen)
    aug = RandAugment(n=1, m=10, random_magnitude=False, ops=[op])
    params = aug.sample(6, torch.Generator().manual_seed(1))
    out = aug.apply(x, params)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    if op in ("Color", "Contrast"):
        grey = x.mean(1, keepdim=True)
        if op == "Contrast":
            grey = grey.mean((2, 3), keepdim=True)
        factor = 1 + params["sign"][:, 0].view(-1, 1, 1, 1) * 0.95
        expected = (grey + factor * (x - grey)).clamp(0, 1)
        assert torch.allclose(out, expected, atol=1e-5)
    else:
        assert torch.allclose(out[:, :3], aug.apply(x[:, :3].clone(), params), atol=1e-5)


# ---------------------------------------------------------------------------- training


def make_13_band_dataset(root: Path, per_class: int = 10) -> Path:
    """Two classes that differ in their red-edge/NIR bands (B05..B08) only."""
    for c, name in enumerate(("crop", "water")):
        for i in range(per_class):
            cube = s2_cube(100 * c + i).astype(np.int32)
            if c == 1:
                cube[4:8] -= 400
            write_geotiff(root / name / f"{name}{i:02d}.tif", cube.astype(np.uint16))
    return root


@pytest.mark.parametrize("bands", [None, ["B04", "B03", "B02"]])
def test_fixmatch_trains_on_13_bands_and_a_band_subset(tmp_path: Path, bands: list | None) -> None:
    root = make_13_band_dataset(tmp_path / "s2")
    cfg = {"name": "ms", "output_dir": str(tmp_path / "runs"), "seed": 0,
           "data": {"root": str(root), "image_size": 16, "labels_per_class": 2, "bands": bands},
           "model": {"name": "cnn", "widths": [8, 16]},
           "algorithm": {"name": "fixmatch", "threshold": 0.7},
           "train": {"steps": 6, "batch_size": 4, "mu": 2, "eval_every": 3, "log_every": 3,
                     "progress": False, "tensorboard": False},
           "report": []}
    result = aerossl.train(cfg)
    channels = 13 if bands is None else 3
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())["data"]
    assert len(saved["mean"]) == channels and len(saved["band_min"]) == channels
    assert all(hi > lo for lo, hi in zip(saved["band_min"], saved["band_max"], strict=True))
    network, info = load_run_network(result.run_dir)
    assert info["channels"] == channels
    assert network(torch.rand(2, channels, 16, 16)).shape == (2, 2)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows if r["split"] == "train")
    assert 0.0 <= result.final_acc <= 1.0
    # prediction reads new files with the run's bands and recorded scaling
    from aerossl.runs.predict import predict_paths

    pred = predict_paths(result.run_dir, [root / "water"], tmp_path / "pred.csv", progress=False,
                         workers=1)
    assert pred.num_predicted == 10 and not pred.unreadable, pred.unreadable
    assert pred.num_georeferenced == 10  # the GeoTIFFs are located
    # a resumed run reads with the recorded scaling: the same cached images
    from aerossl.engine.trainer import Trainer
    from aerossl.runs.loader import load_run_config

    again = Trainer(load_run_config(result.run_dir), result.run_dir, resume=True)
    assert again.data.bands == BandSpec(13, tuple(SENTINEL2_BANDS),
                                        again.data.bands.select, tuple(saved["band_min"]),
                                        tuple(saved["band_max"]), again.data.bands.reference)


def test_8_bit_gray_and_rgba_tiffs_stay_on_the_rgb_reader(tmp_path: Path) -> None:
    import tifffile

    gray = tmp_path / "gray.tif"
    tifffile.imwrite(gray, np.full((8, 8), 7, dtype=np.uint8))
    rgba = tmp_path / "rgba.tif"
    tifffile.imwrite(rgba, np.full((8, 8, 4), 9, dtype=np.uint8), photometric="rgb")
    for path in (gray, rgba):
        assert resolve_band_spec([path], np.array([0]), 8) is None
    named = write_geotiff(tmp_path / "named.tif", np.ones((4, 8, 8), np.uint8),
                          names=["B02", "B03", "B04", "B08"])
    spec = resolve_band_spec([named], np.array([0]), 8)
    assert spec is not None and spec.channels == 4 and spec.band_min is None


def test_bigearthnet_layout_trains_multilabel_with_its_labels_and_dates(tmp_path: Path) -> None:
    """A BigEarthNet root (patch folders, no class folders) is a multi-label dataset: classes
    from the patches' JSON labels, bands from the band files, metadata from the JSON."""
    root = tmp_path / "BigEarthNet-v1.0"
    label_sets = [["Mixed forest"], ["Water bodies"], ["Mixed forest", "Pastures"],
                  ["Pastures", "Water bodies"]]
    for i in range(16):
        write_bigearthnet_patch(root, f"S2A_T32_{i:02d}", label_sets[i % 4], seed=i,
                                date=f"2017-{1 + i % 12:02d}-13 10:10:32",
                                sizes={"B02": 24, "B03": 24, "B04": 24, "B8A": 12})
    cfg = {
        "name": "ben", "output_dir": str(tmp_path / "runs"), "seed": 0,
        "data": {"root": str(root), "layout": "bigearthnet", "image_size": 16,
                 "labels_per_class": 2, "metadata": "bigearthnet",
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"name": "cnn", "widths": [8, 16]},
        "algorithm": {"name": "supervised"},
        "train": {"steps": 4, "batch_size": 4, "eval_every": 4, "progress": False,
                  "tensorboard": False, "num_threads": 1},
        "report": [],
    }
    trainer = Trainer(config_from_dict(cfg))
    assert trainer.data.task.name == "multilabel"
    assert trainer.data.classes == ["Mixed forest", "Pastures", "Water bodies"]
    assert trainer.data.labels.shape == (16, 3)
    assert trainer.data.labels[2].tolist() == [1.0, 1.0, 0.0]  # patch 02: forest and pastures
    assert trainer.data.channels == 4 and trainer.data.meta_dim == 4
    result = trainer.fit()
    assert result is not None and result.metric == "map_macro"
    assert 0.0 <= result.final_acc <= 1.0
