"""Metrics as JSON lines (the run's record) and, optionally, TensorBoard."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("aerossl")


class MetricLogger:
    """Appends ``{"step", "split", ...}`` rows to ``metrics.jsonl``.

    When resuming at ``start_step`` rows logged after the checkpoint (by the run that was
    stopped) are dropped, so the file reads as if the run had never stopped.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, start_step: int = 0) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= start_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step
                                         or None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed; writing metrics.jsonl only")

    def log(self, step: int, split: str, values: dict[str, Any]) -> None:
        """Write one row (non-finite values become null)."""
        clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
        self._file.write(json.dumps({"step": step, "split": split, **clean}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if v is not None:
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        """Flush and close."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()
