"""Classify a large image into a land-use map: ``aerossl map RUN_DIR SCENE``.

The scene (a GeoTIFF or any raster GDAL reads, with any compression and layout, or a plain
JPEG/PNG) is cut into tiles that cover the same ground as the run's training images (see
:mod:`aerossl.runs.mapping.scene`: the run's recorded ground sample distance against the scene's;
in pixels when either is unknown, or as ``--tile-size``/``--tile-m`` say), each tile is read
as the run read its training images (same bands, value scaling and resize to the run's image
size) and the tiles are classified in batches by the run's evaluated (EMA) network.

Streaming: a raster is read window by window through rasterio, one batch of tiles (a strip of
one tile row) ahead of the network in a thread; tiled and Cloud-Optimised GeoTIFFs decode only
the file blocks a window covers, and memory is bounded by a batch, a row of file blocks and
GDAL's block cache, whatever the scene's height. JPEG/PNG are decoded whole.

One map pixel per tile. Pixel ``(row, col)`` is the tile whose top-left scene pixel is
``(row * stride, col * stride)``; it stands for the ``stride`` block at the tile's centre, so
the outputs' transform is the scene's scaled by the stride and shifted by ``(tile - stride) /
2`` pixels. Tiles past the scene's edge are padded. A tile more than ``max_nodata`` of whose
pixels hold no data (the file's nodata value, NaN or mask, or, in a file that declares none,
every band 0; or outside the scene) is not classified: class :data:`NODATA_CLASS`, confidence
NaN. A block that cannot be decoded stops the map: what was classified before it is written
(the rest marked ``unread``) and the error names the file, the window and the tile row.

Outputs (in ``out_dir``, written under temporary names and renamed when all are complete), see
:mod:`aerossl.runs.mapping.outputs`: ``classes.tif`` + ``classes.qml``, ``confidence.tif``,
``tiles.geojson`` (georeferenced scenes only), ``preview.png`` and ``tiles.csv``. The GeoTIFFs'
metadata say how tiles were sized (``TILE_PLAN``) and how values were scaled (``SCALING``).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerossl.data.raster import GeoTransform
from aerossl.engine.checkpoint import staged_files
from aerossl.errors import AerosslError, DataError
from aerossl.runs.mapping import outputs
from aerossl.runs.mapping.outputs import NODATA_CLASS
from aerossl.runs.mapping.scene import (
    BandReader,
    TileGrid,
    band_reader,
    native_tile_size,
    nodata_fraction,
    open_scene,
    plan_tiles,
)

log = logging.getLogger("aerossl")


@dataclass
class MapResult:
    """What :func:`map_scene` wrote and measured."""

    out_dir: Path
    files: dict[str, Path]
    rows: int
    cols: int
    tile_size: tuple[int, int]
    stride: tuple[int, int]
    num_tiles: int
    num_classified: int
    num_skipped: int
    georeferenced: bool
    transform: GeoTransform | None
    tile_m: float | None = None
    plan: str = ""
    scaling: str = ""
    seconds: float = 0.0
    classes: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def tiles_per_second(self) -> float:
        """Tiles (read, skipped or classified) per second."""
        return self.num_tiles / self.seconds if self.seconds > 0 else float("nan")


def _batches(grid: TileGrid, batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """Tile positions in row order, in batches that stay within one tile row."""
    for r in range(grid.rows):
        for c0 in range(0, grid.cols, batch_size):
            yield [(r, c) for c in range(c0, min(c0 + batch_size, grid.cols))]


def _check_run(info: dict[str, Any], run_dir: Path) -> list[str]:
    names = list(info["classes"])
    if info.get("task", "multiclass") != "multiclass":
        raise AerosslError(f"{run_dir} is a {info['task']} run; a map has one class per tile, so "
                           "it needs a multiclass run")
    if len(names) >= NODATA_CLASS:
        raise AerosslError(f"{run_dir} has {len(names)} classes; a map holds at most 254")
    return names


def map_scene(
    run_dir: str | Path,
    scene_path: str | Path,
    out_dir: str | Path | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    max_nodata: float = 0.5,
    checkpoint: str = "last",
    device: str = "auto",
    progress: bool = True,
    tile_m: float | None = None,
    stride_m: float | None = None,
    bands: Sequence[str | int] | None = None,
    stretch: tuple[float, float] | None = None,
    tta: str = "none",
) -> MapResult:
    """Classify the tiles of a large scene with a run's model and write the map (see the
    module docstring). ``tile_size``/``stride`` in scene pixels, or ``tile_m``/``stride_m`` in
    metres (default: the ground of a training image, see :func:`scene.plan_tiles`);
    ``bands``: the scene's bands for the run's (indices or descriptions); ``stretch``: the
    percentiles that scale a 16-bit/float scene for a run of 8-bit images; ``tta``: average
    each tile's answer over its flipped (``flips``) or also turned (``dihedral``) copies;
    ``out_dir`` default: ``<scene stem>_map`` next to the scene."""
    from aerossl.runs.loader import load_run_config, load_run_network, resolve_device
    from aerossl.tasks import get_task

    start = time.perf_counter()
    run_dir, scene_path = Path(run_dir), Path(scene_path).expanduser()
    if batch_size < 1:
        raise AerosslError(f"batch_size must be at least 1, got {batch_size}")
    if not 0.0 <= max_nodata <= 1.0:
        raise AerosslError(f"max_nodata must be in [0, 1], got {max_nodata}")
    dev = resolve_device(device)
    network, info = load_run_network(run_dir, checkpoint, dev, tta)
    names = _check_run(info, run_dir)
    out = Path(out_dir) if out_dir else scene_path.with_name(scene_path.stem + "_map")

    with open_scene(scene_path) as scene:
        reader = band_reader(scene, info, run_dir, bands, stretch)
        plan = plan_tiles(scene, info.get("gsd_m"),
                          lambda: native_tile_size(load_run_config(run_dir), run_dir),
                          tile_size, stride, tile_m, stride_m)
        log.info("map: %s", plan.note)
        grid = TileGrid(scene.height, scene.width, plan.size, plan.stride)
        georef = scene.transform is not None
        if not georef:
            warnings.warn(f"{scene_path} is not georeferenced (no CRS or geotransform): "
                          "writing only preview.png and tiles.csv", stacklevel=2)
        classes_map, confidence, thumbnail, status, stopped = _classify(
            scene, grid, reader, network, get_task("multiclass"), dev, batch_size, max_nodata,
            progress)

        out.mkdir(parents=True, exist_ok=True)
        targets = {"preview": out / "preview.png", "tiles_csv": out / "tiles.csv"}
        if georef:
            targets.update(classes=out / "classes.tif", style=out / "classes.qml",
                           confidence=out / "confidence.tif", geojson=out / "tiles.geojson")
        map_gt = grid.map_transform(scene.transform) if scene.transform is not None else None
        meta = {"SCENE": str(scene_path), "RUN": str(run_dir), "TILE_PLAN": plan.note,
                "TILE_SIZE_PX": f"{plan.size[0]} x {plan.size[1]}",
                "STRIDE_PX": f"{plan.stride[0]} x {plan.stride[1]}", "SCALING": reader.note}
        if plan.tile_m is not None:
            meta["TILE_SIZE_M"] = f"{plan.tile_m:.6g}"
        if stopped:
            meta["INCOMPLETE"] = stopped
        with staged_files(targets) as temps:
            _write(temps, scene, grid, map_gt, classes_map, confidence, thumbnail, status,
                   names, meta, f"{scene_path.name}: {grid.rows} x {grid.cols} tiles "
                   f"({plan.note}), run {run_dir.name}")
    if stopped:
        raise DataError(f"{stopped}; the tiles classified before it are written to {out}")
    skipped = int((classes_map == NODATA_CLASS).sum())
    counts = {names[k]: int(v) for k, v in zip(*np.unique(classes_map, return_counts=True),
                                               strict=True) if k != NODATA_CLASS}
    return MapResult(out, targets, grid.rows, grid.cols, plan.size, plan.stride, len(grid),
                     len(grid) - skipped, skipped, georef, map_gt, plan.tile_m, plan.note,
                     reader.note, time.perf_counter() - start, names, counts)


def _classify(scene: Any, grid: TileGrid, reader: BandReader, network: torch.nn.Module,
              task: Any, dev: torch.device, batch_size: int, max_nodata: float, progress: bool
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Class, confidence, thumbnail and status of every tile, and the error that stopped the
    map early ("" when it ran through)."""
    from tqdm import tqdm

    classes_map = np.full((grid.rows, grid.cols), NODATA_CLASS, dtype=np.uint8)
    confidence = np.full((grid.rows, grid.cols), np.nan, dtype=np.float32)
    status = np.full((grid.rows, grid.cols), "unread", dtype=object)
    thumb_px = max(1, min(32, 1024 // max(grid.rows, grid.cols)))
    thumbnail = np.zeros((grid.rows * thumb_px, grid.cols * thumb_px, 3), dtype=np.uint8)
    (th, tw), (_, sx) = grid.size, grid.stride

    def load(batch: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Read one batch of tiles (in a thread, one batch ahead of the network)."""
        r = batch[0][0]
        y, x = grid.origin(r, batch[0][1])
        span = grid.origin(r, batch[-1][1])[1] + tw - x
        window = scene.read(y, x, th, span)
        valid = scene.valid(y, x, th, span, window)
        keep, tiles = [], []
        for (row, col) in batch:
            xo = col * sx - x
            status[row, col] = "nodata"
            if nodata_fraction(valid[:, xo: xo + tw]) > max_nodata:
                continue
            keep.append((row, col))
            tiles.append(reader(window[:, :, xo: xo + tw]))
        return keep, (np.stack(tiles) if tiles else np.empty((0,)))

    stopped = ""
    batches = _batches(grid, batch_size)  # a generator: memory does not grow with tiles
    with (ThreadPoolExecutor(1) as pool,
          tqdm(total=len(grid), unit="tile", desc="map", disable=not progress) as bar):
        batch: list[tuple[int, int]] | None = next(batches)
        pending = pool.submit(load, batch)
        while batch is not None:
            try:
                keep, tiles = pending.result()
            except DataError as exc:
                r, c0, c1 = batch[0][0], batch[0][1], batch[-1][1]
                stopped = (f"{exc}; the map stopped at tile row {r} of {grid.rows} (columns "
                           f"{c0}..{c1})")
                status[r, c0: c1 + 1] = "unread"
                break
            following = next(batches, None)
            if following is not None:
                pending = pool.submit(load, following)  # read ahead of the network
            if keep:
                x = torch.from_numpy(tiles)
                with torch.inference_mode():
                    probs = task.probs(network(x.to(dev).float().div_(255.0)).float())
                conf, pred = probs.max(dim=1)
                rgb = x[:, :3].float() if x.shape[1] >= 3 else x[:, :1].float().expand(
                    -1, 3, -1, -1)
                small = torch.nn.functional.adaptive_avg_pool2d(rgb, thumb_px).round().byte()
                for (r, c), k, p, t in zip(keep, pred.tolist(), conf.tolist(),
                                           small.permute(0, 2, 3, 1).numpy(), strict=True):
                    classes_map[r, c], confidence[r, c], status[r, c] = k, p, "ok"
                    thumbnail[r * thumb_px: (r + 1) * thumb_px,
                              c * thumb_px: (c + 1) * thumb_px] = t
            bar.update(len(batch))
            batch = following
    return classes_map, confidence, thumbnail, status, stopped


def _write(temps: dict[str, Path], scene: Any, grid: TileGrid, map_gt: GeoTransform | None,
           classes_map: np.ndarray, confidence: np.ndarray, thumbnail: np.ndarray,
           status: np.ndarray, names: list[str], meta: dict[str, str], title: str) -> None:
    """Every output, into the staged paths."""
    def boxes(r: int, c: int) -> tuple[int, int, int, int]:
        y, x = grid.origin(r, c)
        return x, y, x + grid.size[1], y + grid.size[0]

    outputs.write_preview(temps["preview"], classes_map, thumbnail, names, title)
    outputs.write_tiles_csv(temps["tiles_csv"], classes_map, confidence, boxes, names, status)
    if map_gt is None:
        return
    assert scene.transform is not None
    outputs.write_class_geotiff(temps["classes"], classes_map, scene.crs, map_gt, names, meta)
    outputs.write_qml(temps["style"], names)
    outputs.write_confidence_geotiff(temps["confidence"], confidence, scene.crs, map_gt, meta)
    x0, dx, rx, y0, ry, dy = scene.transform
    (th, tw), (sy, sx) = grid.size, grid.stride

    def corners(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx = cols[:, None] * sx + np.array([0, tw, tw, 0])[None]  # (N, 4) scene columns
        cy = rows[:, None] * sy + np.array([0, 0, th, th])[None]
        return x0 + cx * dx + cy * rx, y0 + cx * ry + cy * dy

    outputs.write_geojson(temps["geojson"], classes_map, confidence, corners, scene.crs, names)


# ----------------------------------------------------------------------------- CLI


__all__ = ["NODATA_CLASS", "MapResult", "TileGrid", "map_scene",
           "native_tile_size", "open_scene"]
