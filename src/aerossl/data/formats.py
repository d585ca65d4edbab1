"""Dataset formats as plug-ins: how images and their labels are laid out on disk.

A format is a :class:`DataFormat` subclass in one module, registered once with
:func:`register_format`. It says which configs it reads (``data.layout``, or by its
:meth:`~DataFormat.claims`), finds the images and labels under the dataset root, names the
task its labels default to (``data.task: auto``) and what a run folder records as its root.
Everything else (splits, the decoded-image cache, band scaling, metadata) is the same for
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

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from aerossl.errors import ConfigError, suggest

if TYPE_CHECKING:
    from aerossl.config import DataConfig
    from aerossl.data.folder import FolderDataset

TaskName = Literal["multiclass", "multilabel"]

#: ``data.root`` values naming the bundled demo data (not recorded as a path in run folders).
DEMO_ROOTS = ("demo", "demo_multilabel")


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


def resolve_root(root: str) -> Path:
    """``'demo'`` names the embedded demo dataset (``'demo_multilabel'`` its multi-label
    manifest); anything else is a folder or manifest path."""
    from aerossl.data import demo_dataset_path
    from aerossl.data.multilabel import demo_multilabel_manifest

    if root == "demo_multilabel":
        return demo_multilabel_manifest()
    return demo_dataset_path() if root == "demo" else Path(root).expanduser()


def read_dataset(cfg: DataConfig) -> tuple[FolderDataset, Path]:
    """The images and labels a data config names, in its task's form (integer classes, or a
    multi-hot matrix for multilabel), and their source: the folder or the manifest."""
    from aerossl.data.multilabel import MultiLabelDataset, as_multiclass, as_multilabel

    dataset, source = format_for(cfg).scan(resolve_root(cfg.root), cfg)
    wants_multilabel = cfg.resolved_task() == "multilabel"
    if wants_multilabel and not isinstance(dataset, MultiLabelDataset):
        dataset = as_multilabel(dataset)
    elif not wants_multilabel and isinstance(dataset, MultiLabelDataset):
        dataset = as_multiclass(dataset)
    return dataset, source


def recorded_root(cfg: DataConfig, source: Path) -> dict[str, str]:
    """The ``data`` keys (root, and manifest when one was named) a run folder records; none
    for the bundled demo data."""
    return {} if cfg.root in DEMO_ROOTS else format_for(cfg).recorded_root(cfg, source)


# the built-in formats register themselves where they are implemented
import aerossl.data.bigearthnet  # noqa: E402
import aerossl.data.folder  # noqa: E402
import aerossl.data.multilabel  # noqa: E402, F401
