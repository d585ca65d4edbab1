"""Try each bad input a user can give aerossl and print the error a user sees, as Markdown.

The README's bad-input table is this script's output:

    python tools/bad_input_table.py
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

import aerossl
from aerossl.data import demo_dataset_path, read_image, scan_folder
from aerossl.engine.checkpoint import load_checkpoint

logging.disable(logging.WARNING)


def tiny_config(root: Path, out: Path, **data: object) -> dict:
    """A two-step supervised run on ``root``."""
    return {"name": "bad", "output_dir": str(out),
            "data": {"root": str(root), "image_size": 16, **data},
            "model": {"name": "cnn", "widths": [8, 16]}, "algorithm": {"name": "supervised"},
            "train": {"steps": 2, "batch_size": 4, "eval_every": 2, "progress": False,
                      "tensorboard": False}, "report": []}


def two_classes(tmp: Path, per_class: int = 6) -> Path:
    """Two real classes from the demo dataset."""
    root = tmp / "two"
    for name in ("beach", "forest"):
        (root / name).mkdir(parents=True)
        for f in sorted((demo_dataset_path() / name).iterdir())[:per_class]:
            shutil.copy(f, root / name / f.name)
    return root


class Payload:
    """Unpickling this would run ``touch``."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/aerossl-payload-ran",))


def cases(tmp: Path) -> list[tuple[str, Callable[[], object]]]:
    """(description, action that should raise) pairs."""
    root = two_classes(tmp)
    out = tmp / "runs"
    empty = tmp / "empty_class"
    shutil.copytree(root, empty)
    shutil.rmtree(empty / "forest")
    (empty / "forest").mkdir()
    corrupt = tmp / "corrupt"
    shutil.copytree(root, corrupt)
    (corrupt / "beach" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    split = tmp / "labeled.txt"
    split.write_text("beach/" + sorted(os.listdir(root / "beach"))[0] + "\nbeach/missing.jpg\n")
    escape = tmp / "escape.txt"
    escape.write_text("../../etc/passwd\n")
    cfg_file = tmp / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": {"batch_sise": 8}}))
    evil = tmp / "evil.pt"
    torch.save({"format": 1, "step": 0, "x": Payload()}, evil)
    bomb = tmp / "bomb.tif"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_data import _tiff_claiming

    bomb.write_bytes(_tiff_claiming(100_000, 40_000))
    locked = tmp / "locked"
    aerossl.train(tiny_config(root, tmp, labels_per_class=2), [f"output_dir={tmp}",
                                                              "name=locked"])
    hold = ("import sys, time; from aerossl.engine.lock import RunLock; "
            "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(locked)], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    holder.stdout.readline()  # the other process holds the run folder's lock now
    return [
        ("dataset folder does not exist",
         lambda: aerossl.train(tiny_config(tmp / "nope", out))),
        ("class folder with no images", lambda: scan_folder(empty)),
        ("fewer train images than `labels_per_class`",
         lambda: aerossl.train(tiny_config(root, out, labels_per_class=5))),
        ("corrupt image file",
         lambda: aerossl.train(tiny_config(corrupt, out, labels_per_class=2))),
        ("split-file line naming a missing file",
         lambda: aerossl.train(tiny_config(root, out, labeled_names_file=str(split)))),
        ("split-file path escaping the dataset root",
         lambda: aerossl.train(tiny_config(root, out, labeled_names_file=str(escape)))),
        ("misspelled config key", lambda: aerossl.load_config(cfg_file)),
        ("wrong type for a field", lambda: aerossl.load_config(overrides=["train.steps=many"])),
        ("unknown algorithm", lambda: aerossl.load_config(overrides=["algorithm.name=fixmath"])),
        ("algorithm parameter misspelled",
         lambda: aerossl.load_config(overrides=["algorithm.treshold=0.9"])),
        ("YAML that would build a Python object",
         lambda: aerossl.load_config(_write(tmp / "obj.yaml",
                                            "name: !!python/object/apply:os.system [ls]\n"))),
        ("checkpoint carrying a pickled code payload", lambda: load_checkpoint(evil)),
        ("a file that is not a checkpoint",
         lambda: load_checkpoint(_write(tmp / "notes.pt", "hello"))),
        ("TIFF header claiming 100000 x 40000 pixels", lambda: read_image(bomb, 32)),
        ("resuming a run folder another process is training", lambda: aerossl.resume(locked)),
        ("resuming a folder with no checkpoint",
         lambda: aerossl.resume(_mkdir(tmp / "fresh"))),
    ], holder


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(tiny_config(path, path)))
    return path


def main() -> None:
    rows = ["| bad input | what the user sees |", "|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["AEROSSL_CACHE_DIR"] = str(tmp / "cache")
        todo, holder = cases(tmp)
        try:
            for what, action in todo:
                try:
                    action()
                except aerossl.AerosslError as e:
                    msg = str(e).replace(d, "…").replace("\n", " / ").replace("|", "\\|")
                    rows.append(f"| {what} | `{type(e).__name__}: {msg}` |")
                else:
                    raise SystemExit(f"no error for: {what}")
        finally:
            holder.kill()
    assert not Path("/tmp/aerossl-payload-ran").exists(), "the pickled payload ran"
    print("\n".join(rows))


if __name__ == "__main__":
    main()
