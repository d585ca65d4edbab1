"""Writers of real-format remote-sensing test data: GeoTIFFs and BigEarthNet patch folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

BIGEARTHNET_SIZES = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60,
                     "B07": 60, "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60}
UTM32N_WKT_EPSG = 32632


def gdal_metadata(names: Sequence[str]) -> str:
    """GDAL_METADATA XML with one band description per band (as GDAL writes it)."""
    items = "".join(f'<Item name="DESCRIPTION" sample="{i}" role="description">{n}</Item>'
                    for i, n in enumerate(names))
    return f"<GDALMetadata>{items}</GDALMetadata>"


def write_geotiff(
    path: Path,
    bands: np.ndarray,
    epsg: int = UTM32N_WKT_EPSG,
    origin: tuple[float, float] = (500000.0, 5000000.0),
    pixel: float = 10.0,
    names: Sequence[str] | None = None,
    date: str | None = None,
    pixel_is_point: bool = False,
    transformation: Sequence[float] | None = None,
    tiepoint: bool = True,
) -> Path:
    """A planar ``(C, H, W)`` GeoTIFF georeferenced by ModelTiepoint + ModelPixelScale (unless
    ``tiepoint`` is False; and, when given, a 4 x 4 row-major ModelTransformation) and an EPSG
    GeoKey (projected code
    for UTM, geographic for 4326)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    geographic = epsg == 4326
    keys = [1, 1, 0, 3,
            1024, 0, 1, 2 if geographic else 1,  # GTModelType: geographic / projected
            1025, 0, 1, 2 if pixel_is_point else 1,  # GTRasterType: point / area
            2048 if geographic else 3072, 0, 1, epsg]
    tags = [(34735, "H", len(keys), keys, False)]
    if tiepoint:
        tags += [(33550, "d", 3, (pixel, pixel, 0.0), False),
                 (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), False)]
    if transformation is not None:
        tags.append((34264, "d", 16, tuple(transformation), False))
    if names is not None:
        tags.append((42112, "s", 0, gdal_metadata(names), False))
    kwargs = {"datetime": date} if date is not None else {}
    if bands.ndim == 2:
        tifffile.imwrite(path, bands, photometric="minisblack", extratags=tags, **kwargs)
    else:
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate",
                         extratags=tags, **kwargs)
    return path


def utm_patch_json(labels: list[str], date: str, ulx: float = 500000.0,
                   uly: float = 5000000.0, size_m: float = 1200.0) -> dict:
    """A ``*_labels_metadata.json`` as BigEarthNet ships it (UTM 32N WKT projection)."""
    from pyproj import CRS

    return {"labels": labels,
            "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + size_m, "lry": uly - size_m},
            "projection": CRS.from_epsg(UTM32N_WKT_EPSG).to_wkt(version="WKT1_GDAL"),
            "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T32TMR_20170613T101608.SAFE",
            "acquisition_date": date}


def write_bigearthnet_patch(
    root: Path, name: str, labels: list[str], date: str = "2017-06-13 10:10:32", seed: int = 0,
    sizes: dict[str, int] | None = None, ulx: float = 500000.0,
) -> Path:
    """A patch folder: one uint16 GeoTIFF per band at its native size, plus the JSON."""
    folder = root / name
    rng = np.random.default_rng(seed)
    for band, size in (sizes or BIGEARTHNET_SIZES).items():
        base = 300 + 100 * list(BIGEARTHNET_SIZES).index(band)
        data = (base + rng.integers(0, 200, (size, size))).astype(np.uint16)
        write_geotiff(folder / f"{name}_{band}.tif", data, origin=(ulx, 5000000.0),
                      pixel=1200.0 / size)
    (folder / f"{name}_labels_metadata.json").write_text(
        json.dumps(utm_patch_json(labels, date, ulx=ulx)))
    return folder
