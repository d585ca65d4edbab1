"""``aerossl predict``: a trained run classifies a folder of real images; GeoTIFF lat/lon."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from pyproj import Transformer

import aerossl
from aerossl.cli import build_parser
from aerossl.data import demo_dataset_path
from aerossl.data.reader import read_image
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.runs.loader import build_network, load_run_config
from aerossl.runs.predict import geotiff_center, predict_paths

CLASSES = ["agricultural", "beach", "forest"]


def small_config(root: Path, out: Path) -> dict:
    return {
        "name": "supervised", "output_dir": str(out), "seed": 0,
        "data": {"root": str(root), "image_size": 32, "labels_per_class": 4},
        "model": {"name": "cnn", "widths": [8, 16, 16]},
        "algorithm": {"name": "supervised"},
        "train": {"steps": 6, "batch_size": 8, "eval_every": 6, "log_every": 3,
                  "progress": False, "tensorboard": False, "lr": 0.05},
        "report": [],
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ucm3")
    for name in CLASSES:
        shutil.copytree(demo_dataset_path() / name, root / name)
    return aerossl.train(small_config(root, tmp_path_factory.mktemp("runs"))).run_dir


def geotiff(path: Path, epsg: int, origin: tuple[float, float], scale: float,
            size: tuple[int, int] = (40, 60), geographic: bool = False) -> None:
    """A random RGB GeoTIFF (height, width = size) with north-up pixel scale + tiepoint."""
    rng = np.random.default_rng(0)
    keys = [1, 1, 0, 3, 1024, 0, 1, 2 if geographic else 1, 1025, 0, 1, 1,
            2048 if geographic else 3072, 0, 1, epsg]
    tifffile.imwrite(path, rng.integers(0, 256, (*size, 3), dtype=np.uint8), photometric="rgb",
                     extratags=[(33550, "d", 3, (scale, scale, 0.0), True),
                                (33922, "d", 6, (0.0, 0.0, 0.0, *origin, 0.0), True),
                                (34735, "H", len(keys), keys, True)])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_folder_writes_rows_skips_hidden_and_lists_unreadable(
    run_dir: Path, tmp_path: Path
) -> None:
    images = tmp_path / "in"
    shutil.copytree(demo_dataset_path() / "forest", images / "sub" / "forest")
    shutil.copy(demo_dataset_path() / "beach" / sorted(
        p.name for p in (demo_dataset_path() / "beach").iterdir())[0], images / "one.jpg")
    (images / "broken.jpg").write_bytes(b"not an image at all")
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "notes.txt").write_text("x")
    good = sorted(p for p in images.rglob("*.jpg") if p.name != "broken.jpg")

    res = predict_paths(run_dir, [images], tmp_path / "out.csv", top_k=2, batch_size=7,
                        progress=False)
    rows = read_rows(tmp_path / "out.csv")
    assert res.num_images == len(good) + 1 and res.num_predicted == len(good) == len(rows)
    assert [u[0] for u in res.unreadable] == [str(images / "broken.jpg")]
    assert "broken.jpg" in res.unreadable[0][1]
    assert {r["path"] for r in rows} == {str(p) for p in good}
    assert list(rows[0]) == ["path", "predicted_class", "confidence", "top1_class", "top1_prob",
                             "top2_class", "top2_prob", "lat", "lon"]
    for r in rows:
        p1, p2 = float(r["top1_prob"]), float(r["top2_prob"])
        assert p1 >= 1 / 3 - 1e-6 and p2 <= p1 and p1 + p2 <= 1 + 1e-5
        assert r["predicted_class"] == r["top1_class"] in CLASSES and r["lat"] == r["lon"] == ""

    # The predicted class is the argmax of the saved model on the same decoded image.
    cfg = load_run_config(run_dir)
    net = build_network(cfg, 3, 3)
    net.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["eval_model"])
    net.eval()
    for r in rows[:: max(1, len(rows) // 5)]:
        x = torch.from_numpy(read_image(r["path"], 32))[None].float() / 255
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)[0]
        assert r["predicted_class"] == CLASSES[int(probs.argmax())]
        assert float(r["confidence"]) == pytest.approx(float(probs.max()), abs=1e-5)


def test_geotiff_centres_become_wgs84_lat_lon_and_geojson(run_dir: Path, tmp_path: Path
                                                         ) -> None:
    utm = tmp_path / "utm.tif"
    geotiff(utm, 32633, (500000.0, 5000000.0), 0.5)  # 60 x 40 px of 0.5 m, UTM 33N
    wgs = tmp_path / "wgs.tiff"
    geotiff(wgs, 4326, (13.0, 52.0), 1e-4, geographic=True)
    assert geotiff_center(utm) == (500000.0 + 30 * 0.5, 5000000.0 - 20 * 0.5, 32633)

    res = predict_paths(run_dir, [utm, wgs], tmp_path / "p.csv", top_k=5,
                        geojson=tmp_path / "p.geojson", progress=False)
    assert res.num_georeferenced == 2 and not res.unreadable
    rows = {Path(r["path"]).name: r for r in read_rows(tmp_path / "p.csv")}
    assert "top3_prob" in rows["utm.tif"] and "top4_prob" not in rows["utm.tif"]  # 3 classes
    for r in rows.values():  # all classes listed: the probabilities sum to 1
        assert sum(float(r[f"top{i}_prob"]) for i in (1, 2, 3)) == pytest.approx(1, abs=1e-5)
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        500015.0, 4999990.0)
    assert float(rows["utm.tif"]["lat"]) == pytest.approx(lat, abs=1e-6)
    assert float(rows["utm.tif"]["lon"]) == pytest.approx(lon, abs=1e-6)
    assert float(rows["wgs.tiff"]["lat"]) == pytest.approx(52.0 - 20 * 1e-4, abs=1e-6)
    assert float(rows["wgs.tiff"]["lon"]) == pytest.approx(13.0 + 30 * 1e-4, abs=1e-6)

    gj = json.loads((tmp_path / "p.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 2
    for f in gj["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Point"
        x, y = f["geometry"]["coordinates"]
        row = rows[Path(f["properties"]["path"]).name]
        assert (y, x) == pytest.approx((float(row["lat"]), float(row["lon"])), abs=1e-6)
        assert f["properties"]["class"] == row["predicted_class"]
        assert f["properties"]["confidence"] == pytest.approx(float(row["confidence"]), abs=1e-5)


def test_cli_handler_prints_counts_and_unreadable(run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    img = next((demo_dataset_path() / "forest").iterdir())
    parser = build_parser()
    args = parser.parse_args(["predict", str(run_dir), str(img), str(bad),
                              "--output", str(tmp_path / "o.csv"), "--top-k", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "predicted 1 of 2 images" in out and "images/s" in out
    assert "bad.png" in out and str(tmp_path / "o.csv") in out
    with pytest.raises(aerossl.DataError, match="no such file"):
        predict_paths(run_dir, [tmp_path / "missing"], tmp_path / "x.csv", progress=False)
