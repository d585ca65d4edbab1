"""Dataset formats as plug-ins: how images and their labels are laid out on disk.

A format is a :class:`DataFormat` subclass in one module, registered once with
:func:`register_format`. It says which configs it reads (``data.layout``, or by its
:meth:`~DataFormat.claims`), finds the images and labels under the dataset root, names the
task its labels default to (``data.task: auto``) and what a run folder records as its root.
A format returns a :class:`FolderDataset` (or its multi-label form). Everything else (splits,
the decoded-image cache, band scaling, metadata) is the same for
every format. The built-in ones:

- ``classes`` (:mod:`aerossl.data.folder`): one sub-folder per class;
- ``manifest`` (:mod:`aerossl.data.multilabel`): a CSV ``path,labels`` (chosen by
  ``data.manifest``, a ``.csv`` root or ``demo_multilabel``);
- ``bigearthnet`` (:mod:`aerossl.data.bigearthnet`): BigEarthNet patch folders.

How a single file is decoded (8-bit RGB, N-band GeoTIFF, a patch folder's band files) is not a
format's business: :mod:`aerossl.data.decode` and :mod:`aerossl.data.multispectral` read
any image any format lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

import numpy as np

from aerossl.errors import ConfigError, suggest

if TYPE_CHECKING:
    from aerossl.config import DataConfig

TaskName = Literal["multiclass", "multilabel"]

#: ``data.root`` values naming the bundled demo data (not recorded as a path in run folders).
DEMO_ROOTS = ("demo", "demo_multilabel")


@dataclass(eq=False)
class FolderDataset:
    """Image files of a folder dataset and their integer labels.

    ``files`` are POSIX paths relative to ``root``, sorted by (class, path); ``labels[i]``
    indexes ``classes`` for ``files[i]``; ``skipped`` counts hidden or non-image files found
    inside class folders.
    """

    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        """Absolute path of image ``index``."""
        return self.root / self.files[index]



class DataFormat:
    """One way of laying a dataset out on disk (subclass, then :func:`register_format`)."""

    name: ClassVar[str]
    #: the task of ``data.task: auto``: the form its labels come in
    task: ClassVar[TaskName] = "multiclass"

    def claims(self, cfg: DataConfig) -> bool:
        """Whether this format reads a config that leaves ``data.layout`` at its default
        (``classes``); the default format itself claims nothing."""
        return False

    def scan(self, root: Path, cfg: DataConfig) -> tuple[FolderDataset, Path]:
        """The images and labels under ``root`` (class indices, or a
        :class:`~aerossl.data.multilabel.MultiLabelDataset`) and the folder or file they were
        read from."""
        raise NotImplementedError

    def recorded_root(self, cfg: DataConfig, source: Path) -> dict[str, str]:
        """The ``data`` keys a run folder records so that it finds the data again from any
        working directory (``source`` as :meth:`scan` returned it)."""
        return {"root": str(source)}


FORMATS: dict[str, DataFormat] = {}
"""Registered formats by name, in registration order (filled by :func:`register_format`)."""

_F = TypeVar("_F", bound=type[DataFormat])


def register_format(cls: _F) -> _F:
    """Class decorator: register (one instance of) a :class:`DataFormat` under ``cls.name``."""
    if cls.name in FORMATS:
        raise ConfigError(f"data format {cls.name!r} is already registered")
    FORMATS[cls.name] = cls()
    return cls


def format_names() -> list[str]:
    """Names of the registered formats, in registration order."""
    return list(FORMATS)


def check_layout(name: str) -> str:
    """``name`` if it is a registered format, else a ConfigError with the valid names."""
    if name not in FORMATS:
        raise ConfigError(f"unknown data layout {name!r}{suggest(name, format_names())} "
                          f"(registered: {', '.join(format_names())})")
    return name


def format_for(cfg: DataConfig) -> DataFormat:
    """The format that reads ``cfg``: ``data.layout`` when it names another format than the
    default ``classes``, else the first registered format that claims the config, else
    ``classes``."""
    if cfg.layout != "classes":
        return FORMATS[check_layout(cfg.layout)]
    for fmt in FORMATS.values():
        if fmt.claims(cfg):
            return fmt
    return FORMATS["classes"]

