"""``aerossl cache list|prune``: entries, their last use, and what pruning removes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import aerossl
from aerossl.cli import main
from aerossl.data import load_or_build_cache, scan_folder
from aerossl.data.cache_admin import PARTIAL_GRACE_S, cache_entries
from aerossl.errors import ConfigError

DAY = 86400.0


def _age(paths: list[Path], days: float) -> None:
    stamp = time.time() - days * DAY
    for p in paths:
        os.utime(p, (stamp, stamp))


def _bank_folder(cache: Path, name: str, mb: int) -> Path:
    """A filled bank's files as :mod:`aerossl.engine.bank` writes them (contents are not read)."""
    folder = cache / "banks" / name
    folder.mkdir(parents=True)
    (folder / "clean.bin").write_bytes(np.ones(mb * 250_000, np.float32).tobytes())
    (folder / "clean.json").write_text(json.dumps({"shape": [18, 112, 14, 14],
                                                   "dtype": "float16", "done": []}))
    (folder / ".lock").touch()
    return folder


@pytest.fixture
def cache(image_folder: Path, tmp_path: Path) -> Path:
    """A cache folder with one real image cache and two bank folders of 2 and 4 MB."""
    cache = tmp_path / "cache"
    load_or_build_cache(scan_folder(image_folder), 24, cache_dir=cache)
    _bank_folder(cache, "b2", 2)
    _bank_folder(cache, "b4", 4)
    return cache


def test_list_names_each_entry_with_its_source_and_size(cache: Path, image_folder: Path) -> None:
    entries = {e.kind: e for e in aerossl.cache_list(cache)}
    assert set(entries) == {"images", "bank"}
    assert str(image_folder) in entries["images"].source
    assert "18 images, 3x24x24" in entries["images"].source
    assert entries["images"].size >= 18 * 3 * 24 * 24
    banks = sorted((e for e in cache_entries(cache) if e.kind == "bank"), key=lambda e: e.size)
    assert [b.path.name for b in banks] == ["b2", "b4"]
    assert 2e6 <= banks[0].size < 2.1e6 and "18 images, maps 112x14x14" in banks[0].source


def test_a_run_that_uses_an_image_cache_marks_it_used(cache: Path, image_folder: Path) -> None:
    (images,) = [e for e in cache_entries(cache) if e.kind == "images"]
    _age(images.files(), 40)
    (old,) = [e for e in cache_entries(cache) if e.kind == "images"]
    assert time.time() - old.last_used > 39 * DAY
    load_or_build_cache(scan_folder(image_folder), 24, cache_dir=cache)
    (used,) = [e for e in cache_entries(cache) if e.kind == "images"]
    assert time.time() - used.last_used < 60


def test_prune_by_age_removes_only_what_was_not_used(cache: Path) -> None:
    _age([cache / "banks" / "b4", *(cache / "banks" / "b4").iterdir()], 40)
    removed, problems = aerossl.cache_prune(cache, older_than_days=30)
    assert [e.path.name for e in removed] == ["b4"] and not problems
    assert not (cache / "banks" / "b4").exists() and (cache / "banks" / "b2").exists()
    assert {e.kind for e in cache_entries(cache)} == {"images", "bank"}


def test_prune_to_a_size_drops_the_least_recently_used_first(cache: Path) -> None:
    _age([cache / "banks" / "b2", *(cache / "banks" / "b2").iterdir()], 3)
    _age([cache / "banks" / "b4", *(cache / "banks" / "b4").iterdir()], 2)
    total = sum(e.size for e in cache_entries(cache))
    # room for all but 1 MB: the oldest (b2, 2 MB) goes, b4 (newer) stays
    removed, _ = aerossl.cache_prune(cache, max_gb=(total - 1e6) / 1e9)
    assert [e.path.name for e in removed] == ["b2"]
    assert (cache / "banks" / "b4").exists()
    removed, _ = aerossl.cache_prune(cache, max_gb=0)
    assert not cache_entries(cache)


def test_dry_run_removes_nothing_and_recent_partial_files_are_kept(cache: Path) -> None:
    fresh = cache / ".abc.x1.u8.tmp"
    stale = cache / ".abc.x2.u8.tmp"
    fresh.write_bytes(b"0" * 100)
    stale.write_bytes(b"0" * 100)
    _age([stale], 2 * PARTIAL_GRACE_S / DAY)
    before = sorted(p for p in cache.rglob("*"))
    would, _ = aerossl.cache_prune(cache, everything=True, dry_run=True)
    assert sorted(p for p in cache.rglob("*")) == before
    assert fresh not in [e.path for e in would] and stale in [e.path for e in would]
    aerossl.cache_prune(cache, everything=True)
    assert [e.path for e in cache_entries(cache)] == [fresh]


def test_cli_lists_prunes_and_refuses_a_prune_without_a_rule(
        cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "list", "--dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and str(cache / "banks" / "b4") in out
    assert main(["cache", "prune", "--dir", str(cache)]) == 2
    assert "older_than_days, max_gb or everything" in capsys.readouterr().err
    assert main(["cache", "prune", "--all", "--dry-run", "--dir", str(cache)]) == 0
    assert "would remove 3 entries" in capsys.readouterr().out
    assert len(cache_entries(cache)) == 3
    assert main(["cache", "prune", "--all", "--dir", str(cache)]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert main(["cache", "list", "--dir", str(cache)]) == 0
    assert "empty" in capsys.readouterr().out


def test_prune_rejects_negative_rules(cache: Path) -> None:
    with pytest.raises(ConfigError, match="max_gb"):
        aerossl.cache_prune(cache, max_gb=-1)
