"""The multispectral GeoTIFF and BigEarthNet readers on real Sentinel-2 files.

Small fixtures cut from the real files (tests/data, see tools/make_real_fixtures.py) carry the
key assertions everywhere; the tests on the whole real sets in ../shared/data are skipped where
they are absent.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from aerossl.config import DataConfig
from aerossl.data import scan_folder
from aerossl.data.bigearthnet import (
    BIGEARTHNET_BANDS,
    patch_band_names,
    patch_labels,
    patch_location,
    read_patch,
    scan_bigearthnet,
)
from aerossl.data.metadata import collect_metadata
from aerossl.data.raster import (
    SENTINEL2_BANDS,
    georeference,
    geotiff_location,
    read_raster,
    resize_band,
    select_bands,
)
from aerossl.engine.data import load_data
from aerossl.errors import DataError

DATA = Path(__file__).resolve().parent / "data"
EUROSAT_CUT = DATA / "eurosat_cut"
PATCH = "S2A_MSIL2A_20170613T101031_87_48"
BEN_CUT = DATA / "bigearthnet_cut"
#: ../shared/data next to the checkout (or next to a folder of worktrees above it)
SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[1:4]
               if (p / "shared" / "data").is_dir()), Path("shared") / "data")
EUROSAT = SHARED / "eurosat_ms"
BEN = SHARED / "bigearthnet_example"
needs_eurosat = pytest.mark.skipif(not EUROSAT.is_dir(), reason="../shared/data/eurosat_ms absent")
needs_ben = pytest.mark.skipif(not BEN.is_dir(), reason="../shared/data/bigearthnet_example absent")

#: Forest_1.tif: tiepoint and pixel size (UTM 32N) of the real tile, as its tags state them
FOREST_X0, FOREST_Y0 = 533043.6787387297, 5567792.427645094
FOREST_DX, FOREST_DY = 10.005196165071764, 10.008080018868775


# ------------------------------------------------------------------ EuroSAT (13-band GeoTIFF)


def test_eurosat_tile_bands_names_and_order() -> None:
    arr, names = read_raster(EUROSAT_CUT / "Forest" / "Forest_1.tif")
    assert arr.shape == (13, 16, 16) and arr.dtype == np.uint16
    assert names == list(SENTINEL2_BANDS) and names[8] == "B8A" and names[10] == "B10"
    with tifffile.TiffFile(EUROSAT_CUT / "Forest" / "Forest_1.tif") as tif:
        interleaved = tif.pages[0].asarray()  # (H, W, 13) as stored, pixel-interleaved
    assert np.array_equal(arr, np.moveaxis(interleaved, -1, 0))
    assert select_bands(names, 13, ["B04", "B03", "B02"], "x") == [3, 2, 1]
    assert select_bands(names, 13, ["b8a", "B8"], "x") == [8, 7]  # case, B8 -> B08
    # real reflectance: forest is dark in red, bright in near infrared; B10 (cirrus) is low
    assert arr[3].mean() < arr[7].mean() / 3 and arr[10].mean() < arr[7].mean()


def test_eurosat_location_from_geotiff_georeferencing() -> None:
    x, y, epsg = georeference(EUROSAT_CUT / "Forest" / "Forest_1.tif")
    assert epsg == 32632  # WGS 84 / UTM 32N
    assert x == pytest.approx(FOREST_X0 + 8 * FOREST_DX)  # centre of the 16 x 16 cut
    assert y == pytest.approx(FOREST_Y0 - 8 * FOREST_DY)
    loc = geotiff_location(EUROSAT_CUT / "Forest" / "Forest_1.tif")
    assert (loc.lat, loc.lon) == pytest.approx((50.260627, 9.464707), abs=1e-5)  # Hesse
    assert loc.date is None  # EuroSAT files carry no DateTime tag


@pytest.mark.parametrize("scaling", ["fixed", "percentile"])
def test_eurosat_rgb_bands_scaled_to_uint8(scaling: str, tmp_path: Path) -> None:
    cfg = DataConfig(root=str(EUROSAT_CUT), image_size=16, test_fraction=0.5,
                     labels_per_class=None, bands=["B04", "B03", "B02"], scaling=scaling,
                     cache_dir=str(tmp_path))
    data = load_data(cfg, seed=0)
    assert data.classes == ["Forest", "River"] and data.channels == 3
    assert data.bands.selected_names == ["B04", "B03", "B02"]
    raw = np.stack([read_raster(EUROSAT_CUT / f)[0][[3, 2, 1]].astype(np.float64)
                    for f in data.dataset.files])
    if scaling == "fixed":
        lo, hi = np.zeros(3), np.full(3, 10000.0)
    else:  # per-band 1st and 99th percentiles of the training images' pixels
        train = raw[data.split.unlabeled].transpose(1, 0, 2, 3).reshape(3, -1)
        lo, hi = np.percentile(train, 1, axis=1), np.percentile(train, 99, axis=1)
        assert data.bands.band_min == pytest.approx(lo, abs=1e-3)
    want = np.rint(np.clip((raw - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1) * 255)
    assert np.abs(data.images.numpy().astype(int) - want).max() <= 1


def test_eurosat_all_thirteen_bands_resampled(tmp_path: Path) -> None:
    cfg = DataConfig(root=str(EUROSAT_CUT), image_size=32, labels_per_class=None,
                     scaling="fixed", max_value=4000.0, cache_dir=str(tmp_path))
    data = load_data(cfg, seed=0)
    assert data.channels == 13 and tuple(data.images.shape[2:]) == (32, 32)
    raw = read_raster(EUROSAT_CUT / data.dataset.files[0])[0]
    up = resize_band(raw[7], 32)  # bicubic 16 -> 32 keeps the band's level
    assert up.mean() == pytest.approx(raw[7].mean(), rel=0.02)
    assert np.abs(data.images[0, 7].numpy() - np.clip(up / 4000 * 255, 0, 255)).max() <= 1


# ------------------------------------------------------------------------ BigEarthNet patch


def test_bigearthnet_patch_bands_at_10_20_60_m() -> None:
    folder = BEN_CUT / PATCH
    assert patch_band_names(folder) == list(BIGEARTHNET_BANDS)  # 12 bands, no B10
    sizes = {b: read_raster(folder / f"{PATCH}_{b}.tif")[0].shape[1] for b in BIGEARTHNET_BANDS}
    assert {b for b, s in sizes.items() if s == 24} == {"B02", "B03", "B04", "B08"}  # 10 m
    assert {b for b, s in sizes.items() if s == 4} == {"B01", "B09"}  # 60 m
    out, names = read_patch(folder, 24)
    assert out.shape == (12, 24, 24) and out.dtype == np.float32
    assert names == list(BIGEARTHNET_BANDS)
    for k, band in enumerate(names):
        raw = read_raster(folder / f"{PATCH}_{band}.tif")[0][0].astype(np.float32)
        if sizes[band] == 24:
            assert np.array_equal(out[k], raw)  # the 10 m grid as it is
        else:  # 20 m and 60 m bands: bicubic from their own grid, the level kept
            assert np.array_equal(out[k], resize_band(raw, 24))
            assert out[k].mean() == pytest.approx(raw.mean(), rel=0.05)
    # B05 (20 m) on the 10 m grid: each 2 x 2 block follows its 20 m pixel
    blocks = out[4].reshape(12, 2, 12, 2).mean(axis=(1, 3)).ravel()
    b05 = read_raster(folder / f"{PATCH}_B05.tif")[0][0].ravel().astype(np.float64)
    assert np.corrcoef(blocks, b05)[0, 1] > 0.97
    rgb, names = read_patch(folder, 12, ["B04", "B03", "B02"])
    assert names == ["B04", "B03", "B02"] and rgb.shape == (3, 12, 12)


def test_bigearthnet_labels_location_and_date_from_the_json() -> None:
    folder = BEN_CUT / PATCH
    assert patch_labels(folder) == [
        "Non-irrigated arable land",
        "Land principally occupied by agriculture, with significant areas of natural "
        "vegetation"]
    loc = patch_location(folder)  # centre of the UTM 33N box 404400..405600, 5341200..5342400
    assert (loc.lat, loc.lon) == pytest.approx((48.222307, 13.720948), abs=1e-5)
    assert loc.date == dt.date(2017, 6, 13)
    patches = scan_bigearthnet(BEN_CUT)
    assert patches.patches == [PATCH] and len(patches.classes) == 2
    metas = collect_metadata(BEN_CUT, [PATCH], "bigearthnet", "error", None)
    assert metas[0] == loc


# ------------------------------------------------------------ the whole real sets (../shared)


@needs_eurosat
def test_fixtures_are_cut_from_the_real_files() -> None:
    for rel in ("Forest/Forest_1.tif", "River/River_1.tif"):
        full, names = read_raster(EUROSAT / rel)
        cut, _ = read_raster(EUROSAT_CUT / rel)
        assert np.array_equal(cut, full[:, :16, :16]) and names == list(SENTINEL2_BANDS)
    if BEN.is_dir():
        for f in (BEN_CUT / PATCH).glob("*.tif"):
            full = read_raster(BEN / PATCH / f.name)[0]
            cut = read_raster(f)[0]
            assert np.array_equal(cut, full[:, :cut.shape[1], :cut.shape[2]])


@needs_eurosat
def test_all_eurosat_tiles_read_and_located() -> None:
    ds = scan_folder(EUROSAT)
    assert len(ds.classes) == 10 and np.bincount(ds.labels).tolist() == [20] * 10
    epsgs = set()
    for f in ds.files:
        arr, names = read_raster(EUROSAT / f)
        assert arr.shape == (13, 64, 64) and arr.dtype == np.uint16
        assert names == list(SENTINEL2_BANDS) and 0 < arr.max() < 2**16 - 1
        epsgs.add(georeference(EUROSAT / f)[2])
    assert epsgs <= set(range(32629, 32637)) and len(epsgs) > 1
    locations = [geotiff_location(EUROSAT / f) for f in ds.files]
    assert all(35 < m.lat < 72 and -11 < m.lon < 35 and m.date is None for m in locations)
    with pytest.raises(DataError, match=r"AnnualCrop_1\.tif: no acquisition date"):
        collect_metadata(EUROSAT, ds.files, "geotiff", "error", None)
    filled = collect_metadata(EUROSAT, ds.files, "geotiff", "fill", None)
    assert [(m.lat, m.lon) for m in filled] == [(m.lat, m.lon) for m in locations]


@needs_eurosat
@pytest.mark.slow
def test_eurosat_through_the_engine_rgb_and_thirteen_bands(tmp_path: Path) -> None:
    for bands, channels in ((["B04", "B03", "B02"], 3), (None, 13)):
        data = load_data(DataConfig(root=str(EUROSAT), image_size=32, bands=bands,
                                    cache_dir=str(tmp_path)), seed=0)
        assert data.channels == channels and len(data.split.test) == 100
        assert len(data.bands.band_min) == channels


@needs_ben
def test_all_bigearthnet_patches_grids_labels_and_metadata() -> None:
    patches = scan_bigearthnet(BEN)
    assert len(patches) == 6
    for p, labels in zip(patches.patches, patches.labels, strict=True):
        folder = BEN / p
        meta = json.loads((folder / f"{p}_labels_metadata.json").read_text())
        assert labels == meta["labels"] and labels
        for band in BIGEARTHNET_BANDS:
            size = read_raster(folder / f"{p}_{band}.tif")[0].shape[1]
            assert size == (120 if band in ("B02", "B03", "B04", "B08") else
                            20 if band in ("B01", "B09") else 60), (p, band)
        out, _ = read_patch(folder, 120)
        assert np.array_equal(out[1], read_raster(folder / f"{p}_B02.tif")[0][0])
        loc = patch_location(folder)
        assert loc.date == dt.date.fromisoformat(meta["acquisition_date"][:10])
        assert 35 < loc.lat < 72 and -11 < loc.lon < 35
