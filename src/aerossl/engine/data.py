"""From a config's data section to cached uint8 images, a split, and augmented batches."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aerossl.config import DataConfig
from aerossl.data import (
    FolderDataset,
    Split,
    load_or_build_cache,
    split_from_files,
    stratified_split,
)
from aerossl.data.dataset import read_dataset, task_of
from aerossl.data.metadata import collect_metadata, encode_metadata
from aerossl.data.multilabel import multilabel_split, multilabel_split_from_files
from aerossl.data.multispectral import BandSpec, resolve_band_spec
from aerossl.data.splits import split_from_pool_file
from aerossl.errors import ConfigError
from aerossl.tasks import Task, get_task

log = logging.getLogger("aerossl")

#: Images of datasets up to this size are copied from the memory-mapped cache into RAM.
PRELOAD_BYTES = 4 * 2**30


@dataclass
class DataBundle:
    """Everything the engine needs to know about the data of a run."""

    dataset: FolderDataset
    split: Split
    images: torch.Tensor  # uint8 (N, C, S, S), CPU memory (or memory-mapped)
    labels: torch.Tensor  # int64 (N,); multilabel: float32 multi-hot (N, num_classes)
    task: Task = field(default_factory=lambda: get_task("multiclass"))
    source: Path | None = None  # the class folder or the manifest the data came from
    meta: torch.Tensor | None = None  # float32 (N, D) encoded metadata (data.metadata)
    bands: BandSpec | None = None  # how multi-band images were read (None: 8-bit RGB)
    cache_key: str = ""  # the image cache's key: what identifies these decoded images

    @property
    def meta_dim(self) -> int:
        """Width of the encoded metadata (0 without metadata)."""
        return 0 if self.meta is None else int(self.meta.shape[1])

    @property
    def classes(self) -> list[str]:
        """Class names, index order."""
        return self.dataset.classes

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.dataset.classes)

    @property
    def channels(self) -> int:
        """Channels of the cached images."""
        return int(self.images.shape[1])


def load_data(cfg: DataConfig, seed: int, split_dir: Path | None = None) -> DataBundle:
    """Scan, split and cache a dataset; with ``split_dir`` reuse a run's saved split files."""
    task = get_task(task_of(cfg))
    multilabel = task.name == "multilabel"
    if cfg.num_labeled is not None and not multilabel:
        raise ConfigError("data.num_labeled applies to multilabel data; for one class per "
                          "image use data.labels_per_class")
    dataset, source = read_dataset(cfg)
    from_files = multilabel_split_from_files if multilabel else split_from_files
    split_seed = seed if cfg.split_seed is None else cfg.split_seed
    if split_dir is not None:
        split = from_files(
            dataset, split_dir / "labeled.txt", split_dir / "test.txt", seed=split_seed
        )
    elif cfg.labeled_names_file is not None:
        split = from_files(
            dataset,
            Path(cfg.labeled_names_file),
            Path(cfg.test_names_file) if cfg.test_names_file else None,
            test_fraction=cfg.test_fraction,
            seed=split_seed,
        )
    elif cfg.train_pool_file is not None:
        split = split_from_pool_file(
            dataset, Path(cfg.train_pool_file),
            Path(cfg.test_names_file) if cfg.test_names_file else None,
            cfg.labels_per_class, split_seed,
        )
    elif multilabel:
        split = multilabel_split(dataset.labels, dataset.classes, cfg.test_fraction,
                                 cfg.labels_per_class, cfg.num_labeled, split_seed)
    else:
        split = stratified_split(
            dataset.labels, dataset.classes, cfg.test_fraction, cfg.labels_per_class, split_seed
        )
    paths = [dataset.root / f for f in dataset.files]
    bands = resolve_band_spec(
        paths, split.unlabeled, cfg.image_size, cfg.bands, cfg.scaling, cfg.scale_percentiles,
        cfg.max_value, cfg.band_min, cfg.band_max,
    )
    cache = load_or_build_cache(
        dataset, cfg.image_size, Path(cfg.cache_dir) if cfg.cache_dir else None,
        channels=3 if bands is None else bands.channels, spec=bands, verify=cfg.verify_cache,
    )
    if cache.nbytes <= PRELOAD_BYTES:
        images = torch.from_numpy(_read_into_memory(cache))
    else:  # stays memory-mapped: batches are read from disk (page cache) as they are drawn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only memmap
            images = torch.from_numpy(cache)
    labels = torch.as_tensor(dataset.labels, dtype=torch.float32 if multilabel else torch.long)
    meta = None
    if cfg.metadata != "none":
        locations = collect_metadata(dataset.root, dataset.files, cfg.metadata,
                                     cfg.missing_metadata, cfg.metadata_file)
        meta = torch.from_numpy(encode_metadata(locations, cfg.metadata_encoding))
    key = Path(str(getattr(cache, "filename", "") or "")).stem
    return DataBundle(dataset, split, images, labels, task, source, meta, bands, key)


def _read_into_memory(cache: np.ndarray) -> np.ndarray:
    """A private in-memory copy of the cache, read from its file when it is memory-mapped
    (copying from the map would also count the mapped pages: twice the memory at the peak)."""
    filename = getattr(cache, "filename", None)
    if filename is None:
        return np.array(cache)
    return np.fromfile(filename, dtype=cache.dtype, count=cache.size).reshape(cache.shape)


def channel_stats(images: torch.Tensor, indices: np.ndarray, chunk: int = 512) -> tuple[list, list]:
    """Per-channel mean and std (of uint8 / 255) over the given images, in chunks."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    count = 0
    for start in range(0, len(indices), chunk):
        x = images[torch.as_tensor(indices[start : start + chunk])].double() / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
