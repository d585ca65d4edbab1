"""The run folder's training state: what a checkpoint holds, how it is written (best.pt, then
last.pt, each atomically) and how a resumed run takes it back, rank by rank.

:class:`RunState` is the part of :class:`~aerossl.engine.trainer.Trainer` that owns this; it
reads the Trainer's attributes (algorithm, EMA, optimiser, batch source, counters).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from aerossl.config import save_config
from aerossl.data import write_split
from aerossl.engine import distributed
from aerossl.engine.checkpoint import load_checkpoint, save_checkpoint, writing

log = logging.getLogger("aerossl")


class RunState:
    """Checkpoint contents, writing and resuming (a part of the Trainer)."""

    @property
    def checkpoint_dir(self) -> Path:
        """Where last.pt and best.pt live."""
        return self.run_dir / "checkpoints"

    def _setup_run_dir(self) -> None:
        """Load the checkpoint (resume) or write config and split (new run); the metric log is
        opened by :meth:`fit`, under the run folder's lock."""
        if self.resume:
            # to the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
            self._load_state(load_checkpoint(self.checkpoint_dir / "last.pt", "cpu"))
            log.info("resuming %s at step %d of %d", self.run_dir, self.step, self.cfg.train.steps)
            return
        if self.is_main:
            with writing(self.run_dir):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_config(self.cfg, self.run_dir / "config.yaml")
                summary = write_split(self.data.split, self.data.dataset, self.run_dir)
                (self.run_dir / "split" / "summary.json").write_text(json.dumps(summary, indent=2))
        distributed.barrier()

    def _rank_state(self) -> dict[str, Any]:
        """This rank's own randomness (augmentation generator, stream positions, torch RNG) and
        the values it logged since the last log row."""
        state = {"batches": self.batches.state_dict(), "torch_rng": torch.get_rng_state(),
                 "window": {k: [float(v) for v in vals] for k, vals in self.window.items()}}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is.

        Under DDP this gathers every rank's randomness (a collective call: every rank calls it);
        the weights, optimiser and buffers are the same on all ranks and stored once.
        """
        state = {
            "step": self.step,
            "algorithm": self.algorithm.state_dict(),
            "eval_model": self.eval_network().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batches": self.batches.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best_acc": self.best_acc,
            "best_step": self.best_step,
            "elapsed": self.elapsed,
            "skipped_steps": self.skipped_steps,
            "window": {k: [float(v) for v in vals] for k, vals in self.window.items()},
            "classes": self.data.classes,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.world_size > 1:
            state["rank_states"] = distributed.gather_objects(self._rank_state())
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.algorithm.load_state_dict(state["algorithm"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["eval_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        own = self._own_rank_state(state)
        self._batches_state = own["batches"]  # loaded once the batch source is built
        torch.set_rng_state(own["torch_rng"])
        if "cuda_rng" in own and self.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda_rng"], self.device)
        self.best_acc, self.best_step = float(state["best_acc"]), int(state["best_step"])
        self.elapsed = float(state["elapsed"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        window = own.get("window", state["window"])
        self.window = defaultdict(list, {k: list(v) for k, v in window.items()})

    def _own_rank_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's saved randomness; when the number of ranks changed since the checkpoint,
        rank 0's (data order is global, so it continues exactly) with fresh per-rank seeds."""
        ranks = state.get("rank_states") or [state]
        if len(ranks) == self.world_size:
            return ranks[self.rank]
        if self.is_main:
            log.warning("resuming a %d-process run with %d processes: data order continues "
                        "exactly, augmentation randomness does not", len(ranks), self.world_size)
        own = dict(ranks[0])
        if self.rank:
            reseed = torch.Generator().manual_seed(self.cfg.seed + 7919 * self.rank + self.step)
            own["batches"] = {**own["batches"], "generator": reseed.get_state()}
            own["torch_rng"] = torch.Generator().manual_seed(
                self.cfg.seed + 1_000_003 * self.rank + self.step).get_state()
        return own

    def save(self, best: bool = False) -> None:
        """Write best.pt (when ``best``) and then last.pt, each atomically.

        best.pt goes first: last.pt records ``best_step``, so a run killed between the two
        writes resumes from the previous last.pt and re-evaluates (and rewrites) that best.
        """
        distributed.sync_buffers(self.algorithm, self.ema)
        state = self.state_dict()
        if not self.is_main:
            return
        if best:
            save_checkpoint(
                {"step": self.step, "eval_model": state["eval_model"], "acc": self.best_acc,
                 "classes": self.data.classes},
                self.checkpoint_dir / "best.pt",
            )
        save_checkpoint(state, self.checkpoint_dir / "last.pt")
