"""The manual's home page is the README (tools/sync_docs_index.py), links and all."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sync_tool():
    spec = importlib.util.spec_from_file_location("sync_docs_index",
                                                  ROOT / "tools" / "sync_docs_index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_index_is_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert page == _sync_tool().docs_index(readme), (
        "docs/index.md differs from README.md: run python tools/sync_docs_index.py")


def test_the_home_page_links_resolve_inside_the_manual() -> None:
    page = _sync_tool().docs_index("See [the guide](docs/guide/sweep.md).\n"
                                   "The manual is under [`docs/`](docs/index.md), built with.\n")
    assert page == "See [the guide](guide/sweep.md).\nThe pages of this manual:\n"
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+\.md)\)", index):
        assert (ROOT / "docs" / target).is_file(), target
