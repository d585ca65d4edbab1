"""The data flow points one way: no module imports a stage above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aerossl

SRC = Path(aerossl.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every ``aerossl...`` module a file imports (at any depth, lazily or not)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m.startswith("aerossl")}


#: (files, module prefixes they must not import)
RULES = [
    ("algorithms/*.py", ("aerossl.engine", "aerossl.api", "aerossl.cli", "aerossl.pipeline")),
    ("augment/*.py", ("aerossl.engine", "aerossl.algorithms")),
    ("data/*.py", ("aerossl.engine", "aerossl.algorithms")),
    ("engine/data.py", ("aerossl.algorithms",)),
    ("batch.py", ("aerossl.engine", "aerossl.algorithms", "aerossl.data")),
    ("ema.py", ("aerossl.engine", "aerossl.algorithms")),
    ("runs.py", ("aerossl.engine", "aerossl.algorithms")),
    ("checkpoint.py", ("aerossl.engine", "aerossl.algorithms")),
    ("predict.py", ("aerossl.engine.trainer",)),
    ("export.py", ("aerossl.engine.trainer",)),
]


@pytest.mark.parametrize(("pattern", "forbidden"), RULES)
def test_no_stage_imports_one_above_it(pattern: str, forbidden: tuple[str, ...]) -> None:
    files = sorted(SRC.glob(pattern))
    assert files, pattern
    bad = {f"{f.relative_to(SRC)} imports {m}" for f in files for m in imported_modules(f)
           if m.startswith(forbidden)}
    assert not bad, sorted(bad)


def test_no_algorithm_can_read_hidden_labels_by_name() -> None:
    for f in sorted((SRC / "algorithms").glob("*.py")):
        assert "unlabeled_true" not in f.read_text(), f
