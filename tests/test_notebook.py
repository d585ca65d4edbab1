"""The tutorial notebook runs top to bottom (with a tiny training budget), so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


@pytest.mark.slow  # executes the whole tutorial (CI runs it: pytest -m slow)
def test_tutorial_notebook_executes_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    params.source = f'STEPS_SCALE = 0.01\nOUTPUT_DIR = "{tmp_path / "runs"}"'
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "demo_fixmatch: test accuracy" in outputs
    assert (tmp_path / "runs" / "demo_fixmatch" / "report.html").is_file()
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the dataset and augmentation figures
