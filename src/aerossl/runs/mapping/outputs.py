"""The files of a map: Cloud-Optimised GeoTIFFs (classes with palette and names, confidence),
a QGIS style, tile polygons as GeoJSON, a tile CSV and a preview PNG.

The GeoTIFFs are written by rasterio with GDAL's COG driver: 256 px tiles, deflate, internal
overviews (nearest for classes, average for confidence) once a map is larger than a tile, the
scene's CRS and the map's affine (rotation terms kept), nodata, the colour table and the class
names in the metadata (``CLASSES``, ``CLASS_<i>``) and the band description. ``classes.qml``
beside ``classes.tif`` is a QGIS paletted-renderer style that QGIS loads with the raster, so the
legend shows the class names.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from aerossl.data.raster import GeoTransform

log = logging.getLogger("aerossl")

NODATA_CLASS = 255
"""Class index of skipped (no-data) tiles in ``classes.tif``."""

COG_BLOCK = 256


def class_colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 distinct colours (matplotlib tab20, tab20b, then hsv)."""
    from matplotlib import colormaps

    base = [colormaps["tab20"](i)[:3] for i in range(20)]
    base += [colormaps["tab20b"](i)[:3] for i in range(20)]
    if n > len(base):
        base += [colormaps["hsv"](i / (n - len(base)))[:3] for i in range(n - len(base))]
    return (np.asarray(base[:n]) * 255).round().astype(np.uint8)


def _write_cog(path: Path, array: np.ndarray, crs: Any, gt: GeoTransform, nodata: float,
               tags: dict[str, str], description: str, resampling: str,
               colormap: dict[int, tuple[int, int, int, int]] | None = None) -> None:
    """One band as a COG: built in memory, then copied by GDAL's COG driver."""
    from affine import Affine
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    profile = {"driver": "GTiff", "height": array.shape[0], "width": array.shape[1],
               "count": 1, "dtype": array.dtype.name, "crs": crs, "nodata": nodata,
               "transform": Affine.from_gdal(*gt)}
    with MemoryFile() as memory:
        with memory.open(**profile) as ds:
            ds.write(array, 1)
            ds.update_tags(**tags)
            ds.set_band_description(1, description)
            if colormap is not None:
                ds.write_colormap(1, colormap)
        with memory.open() as src:
            copy(src, str(path), driver="COG", compress="DEFLATE", blocksize=COG_BLOCK,
                 overview_resampling=resampling)


def write_class_geotiff(path: Path, classes_map: np.ndarray, crs: Any, gt: GeoTransform,
                        names: list[str], meta: dict[str, str]) -> None:
    """uint8 class indices with a palette, nodata :data:`NODATA_CLASS` and the class names."""
    colors = class_colors(len(names))
    colormap = {i: (0, 0, 0, 0) for i in range(256)}
    colormap.update({i: (*map(int, c), 255) for i, c in enumerate(colors)})
    tags = {"CLASSES": json.dumps(names), **{f"CLASS_{i}": n for i, n in enumerate(names)},
            "NODATA_CLASS": str(NODATA_CLASS), **meta}
    _write_cog(path, classes_map.astype(np.uint8), crs, gt, NODATA_CLASS, tags, "class",
               "NEAREST", colormap)


def write_confidence_geotiff(path: Path, confidence: np.ndarray, crs: Any, gt: GeoTransform,
                             meta: dict[str, str]) -> None:
    """float32 top-class probability per tile, nodata NaN."""
    _write_cog(path, confidence.astype(np.float32), crs, gt, float("nan"), meta,
               "probability of the predicted class", "AVERAGE")


def write_qml(path: Path, names: list[str]) -> None:
    """A QGIS style (paletted renderer) naming each class value; QGIS applies
    ``classes.qml`` to ``classes.tif`` when it opens it."""
    colors = class_colors(len(names))
    entries = "\n".join(
        f'        <paletteEntry value="{i}" alpha="255" color="#{r:02x}{g:02x}{b:02x}" '
        f"label={quoteattr(n)}/>" for i, (n, (r, g, b)) in enumerate(zip(names, colors,
                                                                         strict=True)))
    path.write_text(
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n  <pipe>\n'
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" '
        'nodataColor="">\n'
        f"      <colorPalette>\n{entries}\n      </colorPalette>\n"
        "    </rasterrenderer>\n  </pipe>\n</qgis>\n")


def write_geojson(path: Path, classes_map: np.ndarray, confidence: np.ndarray,
                  corners: Any, crs: Any, names: list[str]) -> str:
    """Tile polygons with class and confidence; WGS84 lon/lat when the scene's CRS can be
    transformed, else the scene's own coordinates. ``corners(rows, cols)`` gives the ``(N, 4)``
    x and y of each tile's corners in the scene's CRS. Returns the CRS written."""
    rows, cols = np.nonzero(classes_map != NODATA_CLASS)
    xs, ys = corners(rows, cols)
    written = "scene CRS (none)"
    if crs is not None:
        from rasterio.errors import CRSError
        from rasterio.warp import transform

        try:
            lon, lat = transform(crs, "EPSG:4326", xs.ravel(), ys.ravel())
            xs, ys = np.reshape(lon, xs.shape), np.reshape(lat, ys.shape)
            written = "EPSG:4326"
        except (CRSError, ValueError) as exc:  # a CRS GDAL cannot transform
            log.warning("map: cannot transform the scene's CRS to WGS84 (%s); GeoJSON in the "
                        "scene's CRS", exc)
            written = crs.to_string()
    with path.open("w") as fh:
        fh.write('{"type": "FeatureCollection",\n')
        if written != "EPSG:4326" and crs is not None:
            fh.write(f'"crs": {{"type": "name", "properties": {{"name": "{written}"}}}},\n')
        fh.write('"features": [\n')
        for n, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            ring = [[round(float(a), 9), round(float(b), 9)] for a, b in
                    zip(xs[n], ys[n], strict=True)]
            k = int(classes_map[r, c])
            feature = {"type": "Feature",
                       "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                       "properties": {"row": r, "col": c, "class": names[k], "class_index": k,
                                      "confidence": round(float(confidence[r, c]), 6)}}
            fh.write(("," if n else "") + json.dumps(feature) + "\n")
        fh.write("]}\n")
    return written


def write_tiles_csv(path: Path, classes_map: np.ndarray, confidence: np.ndarray,
                    boxes: Any, names: list[str], status: np.ndarray) -> None:
    """One row per tile: ``row, col, x0, y0, x1, y1`` (scene pixels, from ``boxes(r, c)``),
    class, confidence, status (``ok``, ``nodata`` or ``unread``: after a read error)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["row", "col", "x0", "y0", "x1", "y1", "class", "confidence", "status"])
        for r in range(classes_map.shape[0]):
            for c in range(classes_map.shape[1]):
                k = int(classes_map[r, c])
                ok = k != NODATA_CLASS
                out.writerow([r, c, *boxes(r, c), names[k] if ok else "",
                              f"{confidence[r, c]:.6f}" if ok else "", status[r, c]])


def write_preview(path: Path, classes_map: np.ndarray, thumbnail: np.ndarray | None,
                  names: list[str], title: str) -> None:
    """PNG: the scene (thumbnail) and the map side by side, with a legend of the classes
    present (and of skipped tiles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[: len(names)] = class_colors(len(names))
    colors[NODATA_CLASS] = (40, 40, 40)
    rgb = colors[classes_map]
    present = [k for k in range(len(names)) if (classes_map == k).any()]
    panels = 2 if thumbnail is not None else 1
    aspect = classes_map.shape[1] / max(classes_map.shape[0], 1)
    fig_h = 5.0
    fig, axes = plt.subplots(1, panels, figsize=(min(fig_h * aspect, 12) * panels, fig_h),
                             squeeze=False)
    if thumbnail is not None:
        axes[0, 0].imshow(thumbnail, interpolation="nearest")
        axes[0, 0].set_title("scene")
    axes[0, -1].imshow(rgb, interpolation="nearest")
    axes[0, -1].set_title("map")
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=colors[k] / 255, label=names[k]) for k in present]
    if (classes_map == NODATA_CLASS).any():
        handles.append(Patch(color=colors[NODATA_CLASS] / 255, label="no data (skipped)"))
    axes[0, -1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
