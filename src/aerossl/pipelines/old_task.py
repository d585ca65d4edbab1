"""The old task after a transfer run (Learning without Forgetting, fine-tuning, a frozen
backbone): its network and its accuracy on the source run's test split."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from aerossl.algorithms import get_algorithm
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.engine.data import load_data
from aerossl.engine.evaluate import evaluate_model
from aerossl.errors import CheckpointError, ConfigError
from aerossl.runs.loader import load_run_config, load_run_network, load_source_network


def old_task_network(run_dir: str | Path, checkpoint: str = "last",
                     device: str | torch.device = "cpu") -> tuple[nn.Module, list[str]]:
    """The network of the OLD task after a transfer run (eval mode) and the old classes.

    The run's evaluated backbone with, for a method that keeps the old head (LwF,
    :meth:`~aerossl.algorithms.base.Algorithm.kept_old_task`), that head; for any other run
    from ``model.init`` (plain fine-tuning or a frozen backbone), the source's original head
    (what fine-tuning leaves of the old task). Normalisation is the run's own, as in training.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    network, _ = load_run_network(run_dir, checkpoint, device)
    algorithm = get_algorithm(cfg.algorithm.name)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", device)["algorithm"]
    kept = algorithm.kept_old_task(algorithm.Params(**cfg.algorithm_params()), state)
    if kept is not None:
        source, source_checkpoint, head = kept
    elif cfg.model.init:
        source, source_checkpoint, head = cfg.model.init, "last", None
    else:
        raise CheckpointError(f"{run_dir}: not a transfer run (no model.init), so it has no "
                              "old task")
    original, info = load_source_network(str(source), source_checkpoint, device)
    old_head = copy.deepcopy(original.head)
    if head is not None:
        old_head.load_state_dict(head)
    network.backbone.head = old_head.to(device)
    return network.eval(), info["classes"]


def old_task_accuracy(run_dir: str | Path, source_run: str | Path, checkpoint: str = "last",
                      device: str = "cpu") -> float:
    """Accuracy of :func:`old_task_network` on the test split of ``source_run`` (the run that
    trained the old task; its data must still be where it was)."""
    network, classes = old_task_network(run_dir, checkpoint, device)
    source_run = Path(source_run)
    cfg = load_run_config(source_run)
    data = load_data(cfg.data, cfg.seed, split_dir=source_run / "split")
    if data.classes != classes:
        raise ConfigError(f"{source_run}: its classes are not the old task's of {run_dir}")
    result = evaluate_model(network, data.images, data.labels, data.split.test,
                            cfg.train.eval_batch_size, torch.device(device), len(classes),
                            task=data.task)
    return float(result.accuracy)
