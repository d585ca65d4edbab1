"""``aerossl map``: a mosaic of real UC Merced images at known positions becomes a map whose
tiles carry the run's own per-image predictions, with the scene's georeferencing scaled."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import small_config
from PIL import Image
from pyproj import Transformer

import aerossl
from aerossl import cli
from aerossl.data import demo_dataset_path
from aerossl.data.reader import read_image
from aerossl.errors import DataError
from aerossl.runs.loader import load_run_network
from aerossl.runs.mapping import NODATA_CLASS, TileGrid, open_scene
from aerossl.runs.mapping.scene import band_reader

EPSG = 32611  # UTM 11N (Merced, California)
ORIGIN = (710000.0, 4130000.0)
PIXEL = 0.3  # m, UC Merced's resolution
ROWS, COLS, TILE = 3, 4, 64  # the demo images are 64 x 64: the run's native size
EMPTY = (2, 3)  # the all-zero (no-data) tile


SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "geotiff_samples"
UCM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucmerced"


def write_scene(path: Path, data: np.ndarray, pixel: float | None = PIXEL,
                origin: tuple[float, float] = ORIGIN, crs: str | None = f"EPSG:{EPSG}",
                **profile: object) -> Path:
    """A GeoTIFF written by rasterio (GDAL) from ``(H, W, C)`` or ``(C, H, W)`` data; ``pixel``
    None: no georeferencing. ``profile``: GDAL creation options (compress, tiled...)."""
    from affine import Affine

    chw = data.transpose(2, 0, 1) if data.ndim == 3 and data.shape[-1] in (3, 4) else data
    chw = chw[None] if chw.ndim == 2 else chw
    geo = {} if pixel is None else {"crs": crs, "transform": Affine(pixel, 0, origin[0], 0,
                                                                      -pixel, origin[1])}
    with rasterio.open(path, "w", driver="GTiff", height=chw.shape[1], width=chw.shape[2],
                       count=chw.shape[0], dtype=chw.dtype.name, **geo, **profile) as ds:
        ds.write(chw)
    return path


def read_map(path: Path) -> tuple[np.ndarray, rasterio.DatasetReader]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supervised run on the embedded demo (21 classes), trained briefly."""
    cfg = small_config("demo", tmp_path_factory.mktemp("runs"), "supervised",
                       model__widths=[8, 16, 32], train__steps=30, train__batch_size=16,
                       train__eval_every=30, train__log_every=30)
    return aerossl.train(cfg).run_dir


@pytest.fixture(scope="module")
def mosaic(run_dir: Path) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """A ROWS x COLS mosaic of demo images (HWC uint8) with one all-zero tile, and the run's
    own prediction for the image at each position; images are chosen so that the predictions
    differ between positions as much as possible."""
    network, info = load_run_network(run_dir)
    files = sorted(demo_dataset_path().glob("*/*.jpg"))[::7]
    x = torch.from_numpy(np.stack([read_image(f, info["image_size"]) for f in files]))
    with torch.inference_mode():
        preds = network(x.float() / 255).argmax(1).tolist()
    chosen: list[int] = []
    for i in sorted(range(len(files)), key=lambda i: (preds.index(preds[i]) != i, i)):
        if len(chosen) < ROWS * COLS - 1:
            chosen.append(i)  # first one image per predicted class, then any
    scene = np.zeros((ROWS * TILE, COLS * TILE, 3), dtype=np.uint8)
    expected = {}
    positions = [(r, c) for r in range(ROWS) for c in range(COLS) if (r, c) != EMPTY]
    for (r, c), i in zip(positions, chosen, strict=True):
        scene[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = np.asarray(
            Image.open(files[i]).convert("RGB"))
        expected[(r, c)] = preds[i]
    assert len(set(expected.values())) >= 3, "the run must tell several of the tiles apart"
    return scene, expected


def test_map_of_mosaic_has_run_predictions_at_positions_and_georeference(
    run_dir: Path, mosaic: tuple[np.ndarray, dict], tmp_path: Path
) -> None:
    scene, expected = mosaic
    path = write_scene(tmp_path / "mosaic.tif", scene, tiled=True, blockxsize=32,
                       blockysize=32, compress="deflate")  # read by windows
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", batch_size=5, progress=False)
    assert res.tile_size == (TILE, TILE) and (res.rows, res.cols) == (ROWS, COLS)  # native
    assert res.num_skipped == 1 and res.num_classified == ROWS * COLS - 1
    assert "in pixels" in res.plan and "ground resolution of the run" in res.plan

    with rasterio.open(res.files["classes"]) as ds:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == EPSG and ds.nodata == NODATA_CLASS
        assert tuple(ds.transform.to_gdal()) == pytest.approx(
            (ORIGIN[0], PIXEL * TILE, 0.0, ORIGIN[1], 0.0, -PIXEL * TILE))
        tags = ds.tags()
        assert json.loads(tags["CLASSES"]) == res.classes
        assert tags["CLASS_3"] == res.classes[3] and "in pixels" in tags["TILE_PLAN"]
        assert ds.colormap(1)[1][:3] != ds.colormap(1)[0][:3]
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert classes.shape == (ROWS, COLS)
    for (r, c), k in expected.items():
        assert classes[r, c] == k, (r, c)
    assert classes[EMPTY] == NODATA_CLASS
    qml = res.files["style"].read_text()
    assert 'type="paletted"' in qml and f'label="{res.classes[0]}"' in qml

    with rasterio.open(res.files["confidence"]) as ds:
        confidence = ds.read(1)
        assert np.isnan(ds.nodata) and ds.crs.to_epsg() == EPSG
    assert np.isnan(confidence[EMPTY])
    mask = np.ones_like(confidence, dtype=bool)
    mask[EMPTY] = False
    assert ((confidence[mask] > 0) & (confidence[mask] <= 1)).all()

    geo = json.loads(res.files["geojson"].read_text())
    assert len(geo["features"]) == ROWS * COLS - 1
    feature = next(f for f in geo["features"] if f["properties"]["row"] == 1
                   and f["properties"]["col"] == 2)
    assert feature["properties"]["class"] == res.classes[expected[(1, 2)]]
    lon, lat = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True).transform(
        ORIGIN[0] + 2 * TILE * PIXEL, ORIGIN[1] - 1 * TILE * PIXEL)
    assert feature["geometry"]["coordinates"][0][0] == pytest.approx([lon, lat], abs=1e-8)
    assert res.files["preview"].stat().st_size > 1000
    assert not list((tmp_path / "map").glob(".*part"))


def test_large_map_is_a_cog_with_internal_overviews(tmp_path: Path) -> None:
    from aerossl.runs.mapping import outputs

    classes = (np.arange(700 * 600) % 5).astype(np.uint8).reshape(700, 600)
    gt = (ORIGIN[0], 19.2, 0.0, ORIGIN[1], 0.0, -19.2)
    path = tmp_path / "classes.tif"
    outputs.write_class_geotiff(path, classes, f"EPSG:{EPSG}", gt, list("abcde"), {})
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [2, 4] and ds.block_shapes[0] == (256, 256)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(1), classes)


def test_stride_shifts_the_map_to_tile_centres(run_dir: Path, mosaic: tuple, tmp_path: Path
                                              ) -> None:
    scene, expected = mosaic
    path = write_scene(tmp_path / "mosaic.tif", scene)  # strips, uncompressed
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=64, stride=32,
                            progress=False)
    assert (res.rows, res.cols) == (2 * ROWS - 1, 2 * COLS - 1)
    step = 32 * PIXEL
    assert res.transform == pytest.approx((ORIGIN[0] + 16 * PIXEL, step, 0.0,
                                           ORIGIN[1] - 16 * PIXEL, 0.0, -step))
    classes, _ = read_map(res.files["classes"])
    for (r, c), k in expected.items():  # even rows/cols are the mosaic's own tiles
        assert classes[2 * r, 2 * c] == k


def test_png_scene_without_georeference_gives_preview_and_csv_with_warning(
    run_dir: Path, mosaic: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    scene, expected = mosaic
    path = tmp_path / "mosaic.png"
    Image.fromarray(scene).save(path)
    out = tmp_path / "map"
    assert cli.main(["map", str(run_dir), str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not georeferenced" in printed
    assert sorted(p.name for p in out.iterdir()) == ["preview.png", "tiles.csv"]
    rows = list(csv.DictReader((out / "tiles.csv").open()))
    assert len(rows) == ROWS * COLS
    classes = load_run_network(run_dir)[1]["classes"]
    by_pos = {(int(r["row"]), int(r["col"])): r for r in rows}
    for (r, c), k in expected.items():
        row = by_pos[(r, c)]
        assert row["class"] == classes[k] and row["status"] == "ok"
        assert (int(row["x0"]), int(row["y0"]), int(row["x1"])) == (c * 64, r * 64, c * 64 + 64)
    assert by_pos[EMPTY]["status"] == "nodata" and by_pos[EMPTY]["class"] == ""


def test_scene_with_unmatched_bands_is_an_error_naming_both_and_the_flag(
    run_dir: Path, tmp_path: Path
) -> None:
    path = write_scene(tmp_path / "five.tif", np.ones((5, 64, 64), dtype=np.uint8))
    with pytest.raises(DataError, match=r"5 unnamed bands, uint8.*run .* takes 3 bands "
                       r"\(R, G, B\).*pass --bands"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=32, progress=False)
    assert not (tmp_path / "map").exists()
    with pytest.raises(DataError, match=r"--bands: band index 7 is out of range"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=32, bands=[0, 1, 7],
                          progress=False)
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=32, bands=[4, 2, 0],
                            progress=False)
    assert res.num_classified == 4


def test_16_bit_sentinel2_scene_takes_its_rgb_bands_with_a_stated_stretch(
    run_dir: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    cube = rng.integers(500, 3000, (13, 64, 96), dtype=np.uint16)
    path = write_scene(tmp_path / "s2.tif", cube, pixel=10.0, compress="lzw")
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=32, progress=False)
    assert res.num_classified == 6
    assert "2th-98th percentiles" in res.scaling and "uint16" in res.scaling
    with open_scene(path) as scene:
        reader = band_reader(scene, load_run_network(run_dir)[1], run_dir)
    assert reader.select == [3, 2, 1]  # B04, B03, B02
    low, high = np.percentile(cube[3].astype(float), [2, 98])
    assert reader.band_min[0] == pytest.approx(low) and reader.band_max[0] == pytest.approx(high)
    with rasterio.open(res.files["classes"]) as ds:
        assert "percentiles" in ds.tags()["SCALING"]


def test_nothing_is_written_when_an_output_fails(run_dir: Path, mosaic: tuple, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from aerossl.runs.mapping import outputs

    path = write_scene(tmp_path / "mosaic.tif", mosaic[0])

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "write_geojson", fail)  # the last output written
    with pytest.raises(OSError, match="disk full"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", progress=False)
    assert list((tmp_path / "map").iterdir()) == []


def test_nodata_value_and_partial_edge_tiles_are_skipped(run_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(1, 255, (100, 150, 3), dtype=np.uint8)
    scene[:50, :50] = 7  # the GeoTIFF's nodata value
    path = write_scene(tmp_path / "nodata.tif", scene, nodata=7)
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=50, progress=False)
    classes, _ = read_map(res.files["classes"])
    assert classes.shape == (2, 3)  # 150 = 3 tiles, 100 = 2 tiles exactly
    assert classes[0, 0] == NODATA_CLASS and (np.delete(classes.ravel(), 0) < 21).all()
    res = aerossl.map_scene(run_dir, path, tmp_path / "map2", tile_size=64, progress=False)
    classes, _ = read_map(res.files["classes"])  # 2 x 3 tiles, the last ones mostly outside
    assert classes.shape == (2, 3)
    assert classes[1, 2] == NODATA_CLASS and classes[0, 1] != NODATA_CLASS


def test_internal_mask_marks_no_data(run_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    scene = rng.integers(1, 255, (3, 64, 128), dtype=np.uint8)
    path = write_scene(tmp_path / "masked.tif", scene)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        mask = np.full((64, 128), 255, dtype=np.uint8)
        mask[:, 64:] = 0
        ds.write_mask(mask)
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=64, progress=False)
    classes, _ = read_map(res.files["classes"])
    assert classes[0, 0] != NODATA_CLASS and classes[0, 1] == NODATA_CLASS


@pytest.mark.parametrize("options", [
    {"tiled": True, "blockxsize": 32, "blockysize": 48, "compress": "deflate"},
    {"blockysize": 7, "compress": "lzw"}, {}, {"interleave": "band", "compress": "zstd"},
    {"tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "packbits"}])
def test_windowed_reads_match_the_whole_image(tmp_path: Path, options: dict) -> None:
    rng = np.random.default_rng(1)
    bands = rng.integers(0, 60000, (3, 90, 130), dtype=np.uint16)
    path = write_scene(tmp_path / "scene.tif", bands, **options)
    with open_scene(path) as scene:
        assert (scene.count, scene.height, scene.width) == (3, 90, 130)
        for y, x, h, w in [(0, 0, 90, 130), (10, 40, 33, 70), (70, 110, 40, 40)]:
            expected = np.zeros((3, h, w), dtype=np.uint16)
            expected[:, : min(h, 90 - y), : min(w, 130 - x)] = bands[:, y:y + h, x:x + w]
            np.testing.assert_array_equal(scene.read(y, x, h, w), expected)


def test_tile_grid_covers_the_scene() -> None:
    grid = TileGrid(height=100, width=256, size=(64, 64), stride=(64, 64))
    assert (grid.rows, grid.cols) == (2, 4)
    grid = TileGrid(height=40, width=40, size=(64, 64), stride=(32, 32))
    assert (grid.rows, grid.cols) == (1, 1)
    assert TileGrid(256, 256, (64, 64), (32, 32)).map_transform((0, 1, 0, 0, 0, -1)) == (
        16, 32, 0, -16, 0, -32)
    grid = TileGrid(height=100, width=300, size=(50, 100), stride=(50, 100))
    assert (grid.rows, grid.cols) == (2, 3)


def test_multispectral_scene_is_read_with_the_runs_bands_and_scaling(tmp_path: Path) -> None:
    from aerossl.data.raster import SENTINEL2_BANDS

    rng = np.random.default_rng(2)
    bands = rng.integers(0, 4000, (13, 40, 40), dtype=np.uint16)
    path = write_scene(tmp_path / "s2.tif", bands)
    info = {"channels": 3, "bands": ["B04", "B03", "B02"], "band_min": [0.0, 0.0, 0.0],
            "band_max": [4000.0, 2000.0, 1000.0], "image_size": 40}
    with open_scene(path) as scene:
        assert scene.names == list(SENTINEL2_BANDS)
        reader = band_reader(scene, info, tmp_path)
        tile = reader(scene.read(0, 0, 40, 40))
    assert reader.select == [3, 2, 1] and "recorded band_min" in reader.note
    expected = np.rint(np.clip(bands[[3, 2, 1]] / np.array([4000, 2000, 1000])[:, None, None],
                               0, 1) * 255)
    np.testing.assert_array_equal(tile, expected.astype(np.uint8))
    with open_scene(path) as scene, pytest.raises(
            DataError, match=r"13 bands \(B01.*\).*takes 3 bands \(B04, B03, B05X\).*B05X"):
        band_reader(scene, {**info, "bands": ["B04", "B03", "B05X"]}, tmp_path)
    with open_scene(path) as scene:  # --bands picks other bands for the run's
        assert band_reader(scene, info, tmp_path, bands=["B08", 2, "b2"]).select == [7, 2, 1]
