"""Metrics as JSON lines (the run's record) and, optionally, TensorBoard."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from aerossl.engine.checkpoint import writing

log = logging.getLogger("aerossl")


def _step_of(line: str) -> int | None:
    """The step of a metrics row, or None for a blank or partly written line."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class MetricLogger:
    """Appends ``{"step", "split", ...}`` rows to ``metrics.jsonl``.

    When resuming at ``start_step`` rows logged after the checkpoint (by the run that was
    stopped) are dropped, so the file reads as if the run had never stopped. A failed write
    raises CheckpointError naming the file.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, start_step: int = 0) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb_dir = Path(run_dir) / "tensorboard"
        with writing(self.path):
            if self.path.exists():
                kept = [line for line in self.path.read_text().splitlines()
                        if _step_of(line) is not None and _step_of(line) <= start_step]
                tmp = self.path.with_name(f".{self.path.name}.tmp")
                tmp.write_text("".join(line + "\n" for line in kept))
                os.replace(tmp, self.path)  # a kill during the rewrite leaves the old file
            self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed; writing metrics.jsonl only")
            else:
                with writing(self.tb_dir):
                    self._tb = SummaryWriter(str(self.tb_dir), purge_step=start_step or None)

    def log(self, step: int, split: str, values: dict[str, Any]) -> None:
        """Write one row (non-finite values become null)."""
        clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
        with writing(self.path):
            self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
            self._file.flush()
        if self._tb is not None:
            with writing(self.tb_dir):
                for k, v in clean.items():
                    if v is not None:
                        self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        """Flush and close (closing twice is harmless)."""
        if self._file.closed:
            return
        with writing(self.path):
            self._file.close()
        if self._tb is not None:
            with writing(self.tb_dir):
                self._tb.close()
