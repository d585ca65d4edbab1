"""``aerossl map``: a mosaic of real UC Merced images at known positions becomes a map whose
tiles carry the run's own per-image predictions, with the scene's georeferencing scaled."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import small_config
from PIL import Image
from pyproj import Transformer

import aerossl
from aerossl import cli
from aerossl.data import demo_dataset_path
from aerossl.data.decode import read_image
from aerossl.data.geotiff import geotransform
from aerossl.engine.trainer import load_run_network
from aerossl.errors import DataError
from aerossl.mapping import NODATA_CLASS, TileGrid, open_scene

EPSG = 32611  # UTM 11N (Merced, California)
ORIGIN = (710000.0, 4130000.0)
PIXEL = 0.3  # m, UC Merced's resolution
ROWS, COLS, TILE = 3, 4, 64  # the demo images are 64 x 64: the run's native size
EMPTY = (2, 3)  # the all-zero (no-data) tile


def geokeys(epsg: int = EPSG) -> list[int]:
    return [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg]


def geotiff_tags(origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL) -> list[tuple]:
    keys = geokeys()
    return [(33550, "d", 3, (pixel, pixel, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, *origin, 0.0), False),
            (34735, "H", len(keys), keys, False)]


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


def test_map_of_mosaic_has_run_predictions_at_positions_and_scaled_geotransform(
    run_dir: Path, mosaic: tuple[np.ndarray, dict], tmp_path: Path
) -> None:
    scene, expected = mosaic
    path = tmp_path / "mosaic.tif"  # compressed, in 32 px file tiles: read by windows
    tifffile.imwrite(path, scene, photometric="rgb", tile=(32, 32), compression="zlib",
                     extratags=geotiff_tags())
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", batch_size=5, progress=False)
    assert res.tile_size == TILE and (res.rows, res.cols) == (ROWS, COLS)  # native size
    assert res.num_skipped == 1 and res.num_classified == ROWS * COLS - 1

    with tifffile.TiffFile(res.files["classes"]) as tif:
        page = tif.pages[0]
        classes = page.asarray()
        gt = geotransform(page)
        meta = str(page.tags[42112].value)
        assert page.tags[42113].value.strip("\x00") == str(NODATA_CLASS)
        assert page.colormap is not None
    assert classes.shape == (ROWS, COLS)
    for (r, c), k in expected.items():
        assert classes[r, c] == k, (r, c)
    assert classes[EMPTY] == NODATA_CLASS
    assert gt == pytest.approx((ORIGIN[0], PIXEL * TILE, 0.0, ORIGIN[1], 0.0, -PIXEL * TILE))
    assert json.dumps(res.classes) in meta.replace("&quot;", '"')

    confidence = tifffile.imread(res.files["confidence"])
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


def test_stride_shifts_the_map_to_tile_centres(run_dir: Path, mosaic: tuple, tmp_path: Path
                                              ) -> None:
    scene, expected = mosaic
    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, scene, photometric="rgb", extratags=geotiff_tags())  # one strip
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=64, stride=32,
                            progress=False)
    assert (res.rows, res.cols) == (2 * ROWS - 1, 2 * COLS - 1)
    step = 32 * PIXEL
    assert res.transform == pytest.approx((ORIGIN[0] + 16 * PIXEL, step, 0.0,
                                           ORIGIN[1] - 16 * PIXEL, 0.0, -step))
    classes = tifffile.imread(res.files["classes"])
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


@pytest.mark.parametrize(("count", "dtype", "names"), [
    (13, np.uint16, r"13 bands \(B01.*B12\), uint16"), (5, np.uint8, r"5 unnamed bands, uint8")])
def test_scene_with_other_bands_is_an_error_naming_both(
    run_dir: Path, tmp_path: Path, count: int, dtype: type, names: str
) -> None:
    path = tmp_path / "s2.tif"
    tifffile.imwrite(path, np.ones((count, 64, 64), dtype=dtype), photometric="minisblack",
                     planarconfig="separate")
    with pytest.raises(DataError, match=names + r".*run .* takes 3 bands \(R, G, B"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=32, progress=False)
    assert not (tmp_path / "map").exists()


def test_nothing_is_written_when_an_output_fails(run_dir: Path, mosaic: tuple, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from aerossl import mapping

    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, mosaic[0], photometric="rgb", extratags=geotiff_tags())

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mapping, "write_geojson", fail)  # the last output written
    with pytest.raises(OSError, match="disk full"):
        aerossl.map_scene(run_dir, path, tmp_path / "map", progress=False)
    assert list((tmp_path / "map").iterdir()) == []


def test_nodata_value_and_partial_edge_tiles_are_skipped(run_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(1, 255, (100, 150, 3), dtype=np.uint8)
    scene[:50, :50] = 7  # the GeoTIFF's nodata value
    path = tmp_path / "nodata.tif"
    tifffile.imwrite(path, scene, photometric="rgb",
                     extratags=[*geotiff_tags(), (42113, "s", 0, "7", False)])
    res = aerossl.map_scene(run_dir, path, tmp_path / "map", tile_size=50, progress=False)
    classes = tifffile.imread(res.files["classes"])
    assert classes.shape == (2, 3)  # 150 = 3 tiles, 100 = 2 tiles exactly
    assert classes[0, 0] == NODATA_CLASS and (np.delete(classes.ravel(), 0) < 21).all()
    res = aerossl.map_scene(run_dir, path, tmp_path / "map2", tile_size=64, progress=False)
    classes = tifffile.imread(res.files["classes"])  # 2 x 3 tiles, the last ones mostly outside
    assert classes.shape == (2, 3)
    assert classes[1, 2] == NODATA_CLASS and classes[0, 1] != NODATA_CLASS


@pytest.mark.parametrize("layout", ["tiled", "strips", "contiguous", "planar", "pages"])
def test_windowed_reads_match_the_whole_image(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(1)
    bands = rng.integers(0, 60000, (3, 90, 130), dtype=np.uint16)
    hwc = np.moveaxis(bands, 0, -1)
    path = tmp_path / f"{layout}.tif"
    if layout == "tiled":
        tifffile.imwrite(path, hwc, photometric="rgb", tile=(32, 48), compression="zlib")
    elif layout == "strips":
        tifffile.imwrite(path, hwc, photometric="rgb", rowsperstrip=7, compression="zlib")
    elif layout == "contiguous":
        tifffile.imwrite(path, hwc, photometric="rgb")
    elif layout == "planar":
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(path, bands, photometric="minisblack")
    with open_scene(path) as scene:
        assert (scene.count, scene.height, scene.width) == (3, 90, 130)
        for y, x, h, w in [(0, 0, 90, 130), (10, 40, 33, 70), (70, 110, 40, 40)]:
            expected = np.zeros((3, h, w), dtype=np.uint16)
            expected[:, : min(h, 90 - y), : min(w, 130 - x)] = bands[:, y:y + h, x:x + w]
            np.testing.assert_array_equal(scene.read(y, x, h, w), expected)


def test_tile_grid_covers_the_scene() -> None:
    grid = TileGrid(height=100, width=256, size=64, stride=64)
    assert (grid.rows, grid.cols) == (2, 4)
    grid = TileGrid(height=40, width=40, size=64, stride=32)
    assert (grid.rows, grid.cols) == (1, 1)
    assert TileGrid(256, 256, 64, 32).map_transform((0, 1, 0, 0, 0, -1)) == (
        16, 32, 0, -16, 0, -32)


def test_multispectral_scene_is_read_with_the_runs_bands_and_scaling(tmp_path: Path) -> None:
    from aerossl.data.geotiff import SENTINEL2_BANDS
    from aerossl.mapping import band_reader

    rng = np.random.default_rng(2)
    bands = rng.integers(0, 4000, (13, 40, 40), dtype=np.uint16)
    path = tmp_path / "s2.tif"
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate")
    info = {"channels": 3, "bands": ["B04", "B03", "B02"], "band_min": [0.0, 0.0, 0.0],
            "band_max": [4000.0, 2000.0, 1000.0], "image_size": 40}
    with open_scene(path) as scene:
        assert scene.names == list(SENTINEL2_BANDS)
        reader = band_reader(scene, info, tmp_path)
        tile = reader(scene.read(0, 0, 40, 40))
    assert reader.select == [3, 2, 1]
    expected = np.rint(np.clip(bands[[3, 2, 1]] / np.array([4000, 2000, 1000])[:, None, None],
                               0, 1) * 255)
    np.testing.assert_array_equal(tile, expected.astype(np.uint8))
    with open_scene(path) as scene, pytest.raises(
            DataError, match=r"13 bands \(B01.*\).*takes 3 bands \(B04, B03, B05X\).*B05X"):
        band_reader(scene, {**info, "bands": ["B04", "B03", "B05X"]}, tmp_path)
