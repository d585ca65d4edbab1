"""Resumable, seed-deterministic streams of index batches.

Each stream walks through a fresh permutation of its index set per epoch; epoch ``e``'s
permutation is a pure function of (seed, stream id, e), so the stream's whole state is two
integers and a resumed run sees exactly the batches an uninterrupted one would. Under
distributed training every rank draws the same global batch and keeps its own slice.
"""

from __future__ import annotations

import numpy as np
import torch


class IndexStream:
    """Infinite stream of batches of indices drawn without replacement, epoch by epoch."""

    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        seed: int,
        stream_id: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(indices) == 0:
            raise ValueError("an index stream needs at least one index")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} ranks")
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        self.stream_id = stream_id
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.pos = 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        key = ((self.seed * 1_000_003 + self.stream_id) * 1_000_003 + epoch) % (2**63)
        g = torch.Generator().manual_seed(key)
        return self.indices[torch.randperm(len(self.indices), generator=g)]

    def next(self) -> torch.Tensor:
        """The next batch (this rank's slice of the global batch)."""
        parts, need = [], self.batch_size
        while need > 0:
            take = self._perm[self.pos : self.pos + need]
            parts.append(take)
            need -= len(take)
            self.pos += len(take)
            if self.pos >= len(self._perm):
                self.epoch += 1
                self.pos = 0
                self._perm = self._permutation(self.epoch)
        batch = torch.cat(parts)
        return batch[self.rank :: self.world_size]

    def state_dict(self) -> dict[str, int]:
        """Position in the stream."""
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Jump to a saved position."""
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
