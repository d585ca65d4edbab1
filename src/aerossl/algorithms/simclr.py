"""SimCLR contrastive pre-training (Chen et al., ICML 2020; SimCLRv2, NeurIPS 2020).

Two strong views of every unlabelled image go through the encoder ``f`` and a projection head
``g``; with ``z = g(f(x)) / ||g(f(x))||`` for the 2N views of a batch, each view must pick out
its partner among the 2N - 1 others (NT-Xent):

    loss = -1/(2N) * sum_i log( exp(z_i . z_j(i) / tau) / sum_{k != i} exp(z_i . z_k / tau) )

Labels are not used. The classifier head of the network stays untrained; at each evaluation a
linear probe (multinomial logistic regression on the frozen, pooled features of the labelled
images) is fitted and its test accuracy logged as ``linear_probe_acc``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    RunData,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.contrastive import nt_xent
from aerossl.config import CONTRASTIVE
from aerossl.models.probe import fit_linear_head


def linear_probe(
    network: nn.Module, data: RunData, l2: float = 1e-2, steps: int = 100
) -> float:
    """Test accuracy of a logistic regression fitted (L-BFGS, L2 penalty ``l2``) on the
    standardised frozen features of the labelled images."""
    train_idx, test_idx = np.asarray(data.labeled), np.asarray(data.test)
    if len(train_idx) == 0 or len(test_idx) == 0:
        return float("nan")
    num_classes = len(data.classes) or int(data.labels.max()) + 1
    head = fit_linear_head(data.features(network, train_idx),
                           data.labels.cpu()[torch.as_tensor(train_idx)], num_classes, l2, steps)
    f_test = data.features(network, test_idx).double()
    y_test = data.labels.cpu()[torch.as_tensor(test_idx)]
    with torch.no_grad():
        return float((head(f_test).argmax(1) == y_test).double().mean())


@register_algorithm("simclr")
class SimCLR(Algorithm):
    """Contrastive pre-training of the encoder on unlabelled images (no labels used)."""

    class Params(AlgorithmParams):
        temperature: float = Field(0.2, gt=0, description="temperature tau of NT-Xent")
        projection_dim: int = Field(64, ge=1, description="output size of the projection head")
        projection_layers: int = Field(
            2, ge=1, description="linear layers of the projection head (hidden width = features)"
        )
        view: str = Field("contrastive", description="augment pipeline of the two views")
        probe: bool = Field(True, description="fit and log a linear probe at each evaluation")
        probe_l2: float = Field(1e-2, ge=0, description="L2 penalty of the linear probe")
        probe_steps: int = Field(100, ge=1, description="L-BFGS iterations of the linear probe")

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={}, unlabeled={"v1": params.view, "v2": params.view})

    @classmethod
    def default_pipelines(cls, params: dict[str, Any]) -> dict[str, Any]:
        """SimCLR's own crop-and-colour pipeline under its view's name."""
        return {params.get("view", "contrastive"): copy.deepcopy(CONTRASTIVE)}

    def __init__(self, model: nn.Module, params: Params, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        width = model.num_features
        layers: list[nn.Module] = []
        for _ in range(params.projection_layers - 1):
            layers += [nn.Linear(width, width, bias=False), nn.BatchNorm1d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Linear(width, params.projection_dim))
        self.projector = nn.Sequential(*layers)

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        v1, v2 = batch.unlabeled["v1"], batch.unlabeled["v2"]
        z = self.projector(self.model.forward_features(torch.cat([v1, v2])))
        loss, acc = nt_xent(*z.split([len(v1), len(v2)]), self.p.temperature)
        return StepOutput(loss, {"loss/contrastive": loss.detach(), "contrastive_acc": acc})

    def extra_metrics(self, network: nn.Module, data: RunData) -> dict[str, float]:
        if not self.p.probe:
            return {}
        return {"linear_probe_acc": linear_probe(network, data, self.p.probe_l2,
                                                 self.p.probe_steps)}
