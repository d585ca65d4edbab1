"""Classify new images with a trained run: ``aerossl predict RUN_DIR PATH...``.

Images (files, or folders searched recursively; hidden files skipped) are decoded at the run's
image size in a thread pool, one chunk ahead of batched inference, so memory stays bounded by
two chunks whatever the number of images. Results go to a CSV (one row per readable image:
``path, predicted_class, confidence, top1_class, top1_prob, ..., lat, lon``) and optionally a
GeoJSON FeatureCollection of points for the georeferenced ones (GeoTIFF tags), e.g. for QGIS.
Unreadable files are not fatal: they get no row and are listed in :class:`PredictResult`.
"""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerossl.data.decode import TIFF_EXTENSIONS
from aerossl.data.folder import walk_images
from aerossl.data.raster import georeference, to_wgs84
from aerossl.data.reader import read_for_run, read_image
from aerossl.errors import AerosslError, DataError
from aerossl.runs.loader import load_run_network, resolve_device
from aerossl.tasks import get_task


@dataclass
class PredictResult:
    """What :func:`predict_paths` did."""

    output_csv: Path
    geojson: Path | None
    num_images: int  # image files found
    num_predicted: int  # rows written
    num_georeferenced: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Images classified per second, decoding included."""
        return self.num_predicted / self.seconds if self.seconds > 0 else float("nan")


# ----------------------------------------------------------------------------- inputs


def find_images(paths: list[Path] | list[str]) -> list[Path]:
    """Image files among ``paths``: files as given, folders searched recursively.

    In folders, hidden files and folders (name starting with '.') and files without an image
    extension are skipped; a file named explicitly is always kept. Raises :class:`DataError`
    for a path that does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(walk_images(path)[0])
        else:
            raise DataError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))  # a file reached twice is predicted once


# ----------------------------------------------------------------------------- GeoTIFF


def geotiff_center(path: str | Path) -> tuple[float, float, int | str] | None:
    """``(x, y, crs)``: the raster centre in its own CRS (EPSG code, else WKT; see
    :func:`aerossl.data.raster.georeference`), or ``None`` if not a georeferenced GeoTIFF."""
    if Path(path).suffix.lower() not in TIFF_EXTENSIONS:
        return None
    try:
        return georeference(path)
    except DataError:  # not georeferenced (or not a raster GDAL can read)
        return None


def to_lat_lon(x: float, y: float, crs: int | str) -> tuple[float, float] | None:
    """WGS84 ``(lat, lon)`` of ``(x, y)`` in ``crs`` (EPSG code or WKT); ``None`` if it cannot
    be placed."""
    try:
        return to_wgs84(x, y, crs, f"EPSG:{crs}" if isinstance(crs, int) else "raster CRS")
    except DataError:  # unknown EPSG code, or out of the projection's domain
        return None


# ----------------------------------------------------------------------------- model


# ----------------------------------------------------------------------------- predict


def _decode(path: Path, image_size: int, geo: bool, info: dict[str, Any] | None = None
            ) -> tuple[np.ndarray | None, tuple[float, float, int] | None, str]:
    try:
        img = (read_image(path, image_size) if info is None else
               read_for_run(path, image_size, info["channels"], info.get("bands"),
                            info.get("band_min"), info.get("band_max")))
    except Exception as exc:  # DataError mostly; never fatal for the whole run
        return None, None, str(exc)
    return img, geotiff_center(path) if geo else None, ""


def predict_paths(
    run_dir: str | Path,
    paths: list[Path] | list[str],
    output_csv: str | Path,
    top_k: int = 3,
    batch_size: int = 128,
    checkpoint: str = "last",
    geojson: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    workers: int | None = None,
    all_probs: bool = False,
    tta: str = "none",
) -> PredictResult:
    """Classify every image under ``paths`` with a run's saved model and write a CSV.

    Columns: ``path, predicted_class, confidence, top1_class, top1_prob, ..., topK_class,
    topK_prob, lat, lon`` (``top_k`` is capped at the number of classes; lat/lon are the
    WGS84 centre of a georeferenced GeoTIFF, else empty). ``geojson`` also writes a
    FeatureCollection of points (properties ``path, class, confidence``) for the
    georeferenced images. Unreadable images get no row; they are listed in the result.
    ``all_probs`` appends one ``prob_<class>`` column per class (pseudo-labelling).
    ``tta``: average over flipped (``flips``) or also turned (``dihedral``) copies of each
    image (:mod:`aerossl.models.tta`).
    """
    from tqdm import tqdm


    start = time.perf_counter()
    run_dir, output_csv = Path(run_dir), Path(output_csv)
    if top_k < 1:
        raise AerosslError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise AerosslError(f"batch_size must be at least 1, got {batch_size}")
    dev = resolve_device(device)
    network, info = load_run_network(run_dir, checkpoint, dev, tta)
    image_size, classes = info["image_size"], info["classes"]
    task = get_task(info.get("task", "multiclass"))
    files = find_images(paths)
    if not files:
        raise DataError(f"no image files ({', '.join(map(str, paths))}) found")
    k = min(top_k, len(classes))

    header = ["path", "predicted_class", "confidence"]
    for i in range(1, k + 1):
        header += [f"top{i}_class", f"top{i}_prob"]
    header += ["lat", "lon"]
    if all_probs:
        header += [f"prob_{c}" for c in classes]
    features: list[dict[str, Any]] = []
    unreadable: list[tuple[str, str]] = []
    written = georeferenced = 0
    chunks = [files[i: i + batch_size] for i in range(0, len(files), batch_size)]
    workers = workers or min(8, (os.cpu_count() or 2))

    output_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp_csv = output_csv.with_name(output_csv.name + ".part")
    with (ThreadPoolExecutor(workers) as pool, tmp_csv.open("w", newline="") as fh,
          tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar):
        out = csv.writer(fh)
        out.writerow(header)

        def submit(chunk: list[Path]) -> list[Future]:
            return [pool.submit(_decode, p, image_size, True, info) for p in chunk]

        pending = submit(chunks[0])
        for n, chunk in enumerate(chunks):
            decoded = [f.result() for f in pending]
            pending = submit(chunks[n + 1]) if n + 1 < len(chunks) else []  # decode ahead
            good = [(p, img, geo) for p, (img, geo, err) in zip(chunk, decoded, strict=True)
                    if img is not None]
            unreadable += [(str(p), err) for p, (img, _, err) in
                           zip(chunk, decoded, strict=True) if img is None]
            if good:
                x = torch.from_numpy(np.stack([img for _, img, _ in good]))
                with torch.inference_mode():
                    logits = network(x.to(dev).float().div_(255.0)).float()
                probs = task.probs(logits).cpu()  # multi-label: independent sigmoids
                top_p, top_i = probs.topk(k, dim=1)
                for (p, _, geo), tp, ti, pr in zip(good, top_p.tolist(), top_i.tolist(),
                                                   probs.tolist(), strict=True):
                    latlon = to_lat_lon(*geo) if geo else None
                    row: list[Any] = [str(p), classes[ti[0]], f"{tp[0]:.6f}"]
                    for c, q in zip(ti, tp, strict=True):
                        row += [classes[c], f"{q:.6f}"]
                    if latlon:
                        georeferenced += 1
                        row += [f"{latlon[0]:.9f}", f"{latlon[1]:.9f}"]
                        features.append({
                            "type": "Feature",
                            "geometry": {"type": "Point",
                                         "coordinates": [round(latlon[1], 9),
                                                         round(latlon[0], 9)]},
                            "properties": {"path": str(p), "class": classes[ti[0]],
                                           "confidence": round(tp[0], 6)},
                        })
                    else:
                        row += ["", ""]
                    if all_probs:
                        row += [f"{q:.6f}" for q in pr]
                    out.writerow(row)
                    written += 1
            bar.update(len(chunk))
    os.replace(tmp_csv, output_csv)

    geojson_path = Path(geojson) if geojson else None
    if geojson_path is not None:
        geojson_path.parent.mkdir(parents=True, exist_ok=True)
        geojson_path.write_text(json.dumps(
            {"type": "FeatureCollection", "features": features}, indent=1))
    return PredictResult(output_csv, geojson_path, len(files), written, georeferenced,
                         unreadable, time.perf_counter() - start, classes)


# ----------------------------------------------------------------------------- CLI


__all__ = ["PredictResult", "find_images", "geotiff_center", "predict_paths",
           "to_lat_lon"]
