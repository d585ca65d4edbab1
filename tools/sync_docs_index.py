"""Write ``docs/index.md`` (the manual's home page) from ``README.md``, so the two never drift.

The README's links into ``docs/`` become links relative to the manual, and the line that
points at the manual becomes the list's heading. ``tests/test_docs.py`` fails when the page is
not what this writes:

    python tools/sync_docs_index.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANUAL_LINE = re.compile(r"^The manual is under .*$", re.MULTILINE)


def docs_index(readme: str) -> str:
    """The home page of the manual for the README text ``readme``."""
    text = readme.replace("](docs/", "](")
    return MANUAL_LINE.sub("The pages of this manual:", text)


def main() -> int:
    page = docs_index((ROOT / "README.md").read_text(encoding="utf-8"))
    (ROOT / "docs" / "index.md").write_text(page, encoding="utf-8")
    print(f"wrote {ROOT / 'docs' / 'index.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
