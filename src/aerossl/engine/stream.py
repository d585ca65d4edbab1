"""The batch stream both training batch sources share: which images a step draws, in what
order, and the random draws of their views.

Labelled and unlabelled indices come from two seeded :class:`~aerossl.data.sampler.IndexStream`
s (each rank its own slice under ``torchrun``); one generator per rank draws the views'
randomness. A source says how an index batch becomes views: :class:`~aerossl.engine.data.
BatchBuilder` augments cached images, :class:`~aerossl.engine.bank.BankBatchBuilder` picks
banked feature maps. Positions and generator state are checkpointed, so a resumed run draws the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import torch

from aerossl.augment import Compose
from aerossl.batch import Batch, ViewSpec
from aerossl.data.sampler import IndexStream
from aerossl.engine.data import DataBundle


def view_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The generator of a rank's view randomness (rank 0 is also the single process)."""
    return torch.Generator().manual_seed(seed + 7919 + 104_729 * rank)


class BatchStream:
    """Index streams, labels and metadata of a run's batches; subclasses make the views."""

    def __init__(self, data: DataBundle, views: ViewSpec, batch_size: int,
                 unlabeled_batch_size: int, seed: int, device: torch.device, rank: int = 0,
                 world_size: int = 1) -> None:
        self.views = views
        self.device = device
        self.labels = data.labels.to(device)
        self.meta = None if data.meta is None else data.meta.to(device)
        self.labeled = IndexStream(data.split.labeled, batch_size, seed, 0, rank, world_size)
        self.unlabeled = (
            IndexStream(data.split.unlabeled, unlabeled_batch_size, seed, 1, rank, world_size)
            if views.unlabeled else None)
        self.generator = view_generator(seed, rank)

    def _views(self, idx: torch.Tensor, spec: dict[str, str]) -> dict[str, torch.Tensor]:
        """The views ``spec`` names (view -> pipeline) of the images ``idx``."""
        raise NotImplementedError

    def next(self) -> Batch:
        """The next training batch with every view the algorithm asked for."""
        idx = self.labeled.next()
        batch = Batch(labeled=self._views(idx, self.views.labeled),
                      labels=self.labels[idx.to(self.labels.device)])
        if self.meta is not None:
            batch.labeled_meta = self.meta[idx.to(self.device)]
        if self.unlabeled is not None:
            uidx = self.unlabeled.next()
            batch.unlabeled = self._views(uidx, self.views.unlabeled)
            batch.unlabeled_index = uidx.to(self.device)
            if self.meta is not None:
                batch.unlabeled_meta = self.meta[uidx.to(self.device)]
        return batch

    def state_dict(self) -> dict:
        """Stream positions and the views' RNG state."""
        return {"labeled": self.labeled.state_dict(),
                "unlabeled": self.unlabeled.state_dict() if self.unlabeled else None,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore stream positions and the views' RNG state."""
        self.labeled.load_state_dict(state["labeled"])
        if self.unlabeled is not None and state.get("unlabeled") is not None:
            self.unlabeled.load_state_dict(state["unlabeled"])
        self.generator.set_state(state["generator"])


class BatchBuilder(BatchStream):
    """Draws index batches, gathers cached uint8 images, moves them and augments on device.

    The images are moved to the device once when it is an accelerator and they fit; otherwise
    each batch is gathered on the CPU, pinned and copied without blocking.
    """

    def __init__(
        self,
        data: DataBundle,
        views: ViewSpec,
        pipelines: dict[str, Compose],
        batch_size: int,
        unlabeled_batch_size: int,
        seed: int,
        device: torch.device,
        channels_last: bool,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(data, views, batch_size, unlabeled_batch_size, seed, device, rank,
                         world_size)
        self.pipelines = pipelines
        self.channels_last = channels_last
        self.images = data.images
        if device.type == "cuda" and data.images.nbytes < 0.25 * _free_cuda_bytes(device):
            self.images = data.images.to(device)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if self.images.device.type != "cpu":  # moved to the accelerator once, in __init__
            return self.images[idx.to(self.images.device)]
        x = self.images[idx]
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True)

    def _views(self, idx: torch.Tensor, spec: dict[str, str]) -> dict[str, torch.Tensor]:
        x = self._gather(idx).float().div_(255.0)
        out = {}
        for view, pipeline in spec.items():
            v = self.pipelines[pipeline](x, self.generator)
            if self.channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            out[view] = v
        return out


def _free_cuda_bytes(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)
