"""Real GeoTIFFs as GIS tools write them, through the training, map and ground-resolution
paths: the seven sample files of ../shared/data/geotiff_samples, and Cloud-Optimised GeoTIFFs
(JPEG, LZW, deflate, ZSTD) written here with rasterio from UC Merced images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from conftest import small_config
from PIL import Image

import aerossl
from aerossl.data import demo_dataset_path
from aerossl.data.raster import measure_gsd, open_raster, read_raster
from aerossl.data.reader import read_image
from aerossl.errors import DataError
from aerossl.runs.mapping import NODATA_CLASS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = SHARED / "geotiff_samples"
UCM = SHARED / "ucmerced"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="no ../shared geotiff_samples")
needs_ucm = pytest.mark.skipif(not UCM.is_dir(), reason="no ../shared/data/ucmerced")
UCM_GSD = 0.3048
DEMO_GSD = UCM_GSD * 256 / 64  # the demo holds UC Merced images shrunk to 64 px


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supervised demo run that records the demo's ground resolution."""
    cfg = small_config("demo", tmp_path_factory.mktemp("runs"), "supervised",
                       model__widths=[8, 16, 32], train__steps=30, train__batch_size=16,
                       train__eval_every=30, train__log_every=30, data__gsd_m=DEMO_GSD)
    return aerossl.train(cfg).run_dir


def write_cog(path: Path, chw: np.ndarray, compress: str, pixel: float = UCM_GSD,
              origin: tuple[float, float] = (710000.0, 4130000.0), epsg: int = 32611) -> Path:
    """A Cloud-Optimised GeoTIFF (GDAL's COG driver) of ``chw``."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    profile = {"driver": "GTiff", "height": chw.shape[1], "width": chw.shape[2],
               "count": chw.shape[0], "dtype": chw.dtype.name, "crs": f"EPSG:{epsg}",
               "transform": Affine(pixel, 0, origin[0], 0, -pixel, origin[1])}
    with MemoryFile() as memory:
        with memory.open(**profile) as ds:
            ds.write(chw)
        with memory.open() as src:
            copy(src, str(path), driver="COG", compress=compress, blocksize=128,
                 **({"quality": 90} if compress == "JPEG" else {}))
    return path


def ucm_image(name: str) -> np.ndarray:
    """A UC Merced image ``(3, 256, 256)`` (resized where the original is not square)."""
    cls = name.rstrip("0123456789")
    img = Image.open(UCM / cls / f"{name}.jpg").convert("RGB").resize((256, 256))
    return np.asarray(img).transpose(2, 0, 1).copy()


# ----------------------------------------------------------------------------- samples


@needs_samples
@pytest.mark.parametrize("name", ["RGB.byte.tif", "rgb_lzw.tif", "RGBA.uint16.tif",
                                  "shade.tif", "rotated.tif", "float_nan.tif"])
def test_training_reader_reads_every_sample(name: str) -> None:
    arr, _ = read_raster(SAMPLES / name)
    with open_raster(SAMPLES / name) as raster:
        assert arr.shape == (raster.count, raster.height, raster.width)
        assert arr.dtype == raster.dtype
    if arr.dtype == np.uint8 and arr.shape[0] in (1, 3):
        img = read_image(SAMPLES / name, 32)
        assert img.shape == (3, 32, 32) and img.dtype == np.uint8


@needs_samples
def test_samples_georeferencing_nodata_and_ground_resolution() -> None:
    with open_raster(SAMPLES / "RGB.byte.tif") as r:
        assert r.crs.to_epsg() == 32618 and r.nodata == 0
        assert r.gsd == pytest.approx((300.0, 300.0), rel=0.01)  # UTM: ground ~ grid
    with open_raster(SAMPLES / "shade.tif") as r:  # Web Mercator: 9.55 "m" are 7.3 m at 40 N
        assert r.transform[1] == pytest.approx(9.5546, abs=1e-3) and r.gsd[1] == pytest.approx(7.34,
                                                                                   abs=0.05)
        assert r.nodata == 255
    with open_raster(SAMPLES / "rotated.tif") as r:
        assert r.transform == pytest.approx((100.0, 17.3205, 5.0, 200.0, 10.0, -8.6603),
                                            abs=1e-3)
        assert r.crs is None and r.gsd is None
    with open_raster(SAMPLES / "float_nan.tif") as r:
        assert np.isnan(r.nodata) and np.isnan(r.read_all()).any()
    with open_raster(SAMPLES / "RGBA.uint16.tif") as r:
        assert r.rgb_indices() == [2, 1, 0]  # stored blue, green, red, alpha


@needs_samples
def test_corrupt_tiles_are_an_error_naming_the_file_and_the_window(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"corrupt\.tif: cannot read window rows \d+\.\.\d+, "
                       r"columns \d+\.\.\d+ \(GDAL: .*TIFFReadEncodedTile"):
        read_raster(SAMPLES / "corrupt.tif")
    with pytest.raises(DataError, match=r"corrupt\.tif: cannot read window"):
        read_image(SAMPLES / "corrupt.tif", 32)


@needs_samples
def test_map_reads_every_sample(run_dir: Path, tmp_path: Path) -> None:
    for name, tile in [("RGB.byte.tif", 64), ("rgb_lzw.tif", 64), ("RGBA.uint16.tif", 64),
                       ("shade.tif", 128), ("rotated.tif", 5), ("float_nan.tif", 1)]:
        res = aerossl.map_scene(run_dir, SAMPLES / name, tmp_path / name, tile_size=tile,
                                progress=False)
        assert res.num_classified > 0, name
        with rasterio.open(res.files["classes"]) as ds, open_raster(SAMPLES / name) as src:
            assert ds.crs == src.crs and ds.nodata == NODATA_CLASS
            x0, dx, rx, y0, ry, dy = src.transform
            assert tuple(ds.transform.to_gdal()) == pytest.approx(
                (x0, dx * tile, rx * tile, y0, ry * tile, dy * tile))
            assert json.loads(ds.tags()["CLASSES"]) == res.classes
    byte = aerossl.map_scene(run_dir, SAMPLES / "RGB.byte.tif", tmp_path / "b", tile_size=64,
                             progress=False)
    assert byte.num_skipped > 0  # the black (nodata 0) collar around the Landsat scene
    assert "percentiles" in aerossl.map_scene(run_dir, SAMPLES / "RGBA.uint16.tif",
                                              tmp_path / "c", tile_size=64,
                                              progress=False).scaling


@needs_samples
def test_map_stops_at_a_corrupt_tile_and_keeps_what_it_classified(run_dir: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "map"
    with pytest.raises(DataError, match=r"corrupt\.tif: cannot read window.*stopped at tile "
                       r"row (\d+) of 8.*written to"):
        aerossl.map_scene(run_dir, SAMPLES / "corrupt.tif", out, tile_size=128, stride=128,
                          progress=False)
    with rasterio.open(out / "classes.tif") as ds:
        classes = ds.read(1)
        assert "stopped at tile row" in ds.tags()["INCOMPLETE"]
    assert (classes[:4] != NODATA_CLASS).all()  # the undamaged top half (512 px block rows)
    status = (out / "tiles.csv").read_text()
    assert ",ok" in status and ",unread" in status


# ----------------------------------------------------------------------------- COGs


@needs_ucm
@pytest.mark.parametrize("compress", ["JPEG", "LZW", "DEFLATE", "ZSTD"])
def test_compressed_cogs_train_and_map(run_dir: Path, tmp_path: Path, compress: str) -> None:
    root = tmp_path / "cogs"
    for cls in ("forest", "harbor"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            write_cog(root / cls / f"{cls}{i:02d}.tif", ucm_image(f"{cls}{i:02d}"), compress)
    assert measure_gsd(sorted(root.glob("*/*.tif"))) == pytest.approx(UCM_GSD, rel=1e-3)
    cfg = small_config(root, tmp_path / "runs", "supervised", train__steps=4,
                       data__labels_per_class=2, data__test_fraction=0.5)
    result = aerossl.train(cfg)
    recorded = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert recorded["data"]["gsd_m"] == pytest.approx(UCM_GSD, rel=1e-3)
    scene = write_cog(tmp_path / "scene.tif", np.concatenate(
        [ucm_image("forest00"), ucm_image("harbor00")], axis=2), compress)
    res = aerossl.map_scene(result.run_dir, scene, tmp_path / "map", progress=False)
    assert res.tile_size == (256, 256) and (res.rows, res.cols) == (1, 2)
    assert res.tile_m == pytest.approx(256 * UCM_GSD, rel=1e-3)


# ----------------------------------------------------------------------------- resolution


def _mosaic_scene(names: list[str], cols: int) -> np.ndarray:
    rows = [np.concatenate([ucm_image(n) for n in names[r * cols:(r + 1) * cols]], axis=2)
            for r in range(len(names) // cols)]
    return np.concatenate(rows, axis=1)


@needs_ucm
def test_same_ground_footprint_and_class_map_at_two_resolutions(run_dir: Path,
                                                                tmp_path: Path) -> None:
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    classes = sorted(p.name for p in UCM.iterdir() if p.is_dir())
    names = [f"{c}{i:02d}" for i, c in enumerate(classes)][:20]
    chw = _mosaic_scene(names, cols=5)  # 4 x 5 UC Merced images at 0.3048 m
    fine = write_cog(tmp_path / "fine.tif", chw, "DEFLATE")
    coarse = np.zeros((3, chw.shape[1] // 2, chw.shape[2] // 2), dtype=np.uint8)
    with rasterio.open(fine) as src:
        for b in range(3):
            reproject(chw[b], coarse[b], src_transform=src.transform, src_crs=src.crs,
                      dst_transform=src.transform @ Affine.scale(2), dst_crs=src.crs,
                      resampling=Resampling.average)
    coarse_path = write_cog(tmp_path / "coarse.tif", coarse, "DEFLATE", pixel=2 * UCM_GSD)
    a = aerossl.map_scene(run_dir, fine, tmp_path / "a", progress=False)
    b = aerossl.map_scene(run_dir, coarse_path, tmp_path / "b", progress=False)
    footprint = 64 * DEMO_GSD  # the run's 64 px images of 1.2192 m
    assert a.tile_m == pytest.approx(footprint) and b.tile_m == pytest.approx(footprint)
    assert a.tile_size == (256, 256) and b.tile_size == (128, 128)
    assert (a.rows, a.cols) == (b.rows, b.cols) == (4, 5)
    assert a.transform == pytest.approx(b.transform)
    with rasterio.open(a.files["classes"]) as ma, rasterio.open(b.files["classes"]) as mb:
        agreement = (ma.read(1) == mb.read(1)).mean()
    assert agreement >= 0.9


@needs_ucm
def test_scene_far_from_the_runs_resolution_warns_with_both(run_dir: Path,
                                                            tmp_path: Path) -> None:
    path = write_cog(tmp_path / "s.tif", ucm_image("forest00"), "DEFLATE", pixel=10.0)
    with pytest.warns(UserWarning, match=r"\(9\.99\d m/px\) differs from the run's \(1\.219 m/px"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", progress=False)


def test_metres_need_a_known_resolution_and_pixels_are_said(run_dir: Path,
                                                            tmp_path: Path) -> None:
    img = next(iter(sorted(demo_dataset_path().glob("*/*.jpg"))))
    scene = tmp_path / "plain.png"
    shutil.copy(img, scene.with_suffix(".jpg"))
    Image.open(img).save(scene)
    with pytest.raises(DataError, match="pass --tile-size and --stride in pixels"):
        aerossl.map_scene(run_dir, scene, tmp_path / "m", tile_m=50.0, progress=False)
    res = aerossl.map_scene(run_dir, scene, tmp_path / "m", progress=False)
    assert "in pixels: the ground resolution of the scene is unknown" in res.plan


def test_degree_crs_scene_gets_tiles_in_ground_metres(run_dir: Path, tmp_path: Path) -> None:
    img = np.asarray(Image.open(sorted(demo_dataset_path().glob("*/*.jpg"))[0]).convert("RGB"))
    chw = np.tile(img.transpose(2, 0, 1), (1, 4, 4))  # 256 x 256 px
    path = write_cog(tmp_path / "wgs.tif", chw, "DEFLATE", pixel=1e-5, origin=(10.0, 60.0),
                     epsg=4326)  # 1e-5 deg: 1.11 m north-south, 0.56 m east-west at 60 N
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", progress=False)
    footprint = 64 * DEMO_GSD
    assert res.tile_size[0] == round(footprint / 1.1131) and res.tile_size[1] == round(
        footprint / 0.5581)


def test_gdal_block_cache_is_bounded_so_map_memory_stays_flat(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from rasterio.env import get_gdal_config, set_gdal_config

    from aerossl.data import raster

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    raster._bound_block_cache.cache_clear()
    set_gdal_config("GDAL_CACHEMAX", 2**30)  # GDAL's default: 5 % of the machine's memory
    path = tmp_path / "small.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    with open_raster(path):
        pass
    assert int(get_gdal_config("GDAL_CACHEMAX")) <= raster.BLOCK_CACHE_BYTES
