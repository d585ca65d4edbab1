"""Spatiotemporal SSL: a metadata-aware teacher and an image-only student (Bernhard et al.,
"Context Matters: Leveraging Spatiotemporal Metadata for Semi-Supervised Learning on Remote
Sensing Images", ECAI 2024).

The teacher sees image and metadata ``m`` (latitude, longitude, date; encoded by the data
layer): its features are ``f_T(x, m) = g_T(x) + MLP(m)`` before its head ``h_T``. The student
sees the image only: ``f_S(x) = g_S(x)``, head ``h_S``. Pseudo-labels come from the teacher on
weak views (FixMatch: kept where ``max p_T(u_weak, m) >= tau``) and train both networks on
strong views; both are supervised on the labelled images; the student is distilled towards the
teacher's representation at the injection point:

    loss = CE(h_T f_T(x, m), y) + CE(h_S f_S(x), y)
         + lambda_u * mean(mask * [CE(h_T f_T(u_s, m), y_hat) + CE(h_S f_S(u_s), y_hat)])
         + lambda_d * MSE(f_S(z), stopgrad f_T(z, m)),   z = labelled and strong views

Only the student is evaluated and exported (``eval_model``): prediction needs no metadata.

Pseudo-label selection is a module of :mod:`~aerossl.algorithms.selectors` (``Params.selector``),
called with the teacher's probabilities and the images' dataset indices and returning a
per-image weight in [0, 1]: ``fixed`` is FixMatch's threshold ``tau``; ``flexmatch``
FlexMatch's class-wise thresholds (upper threshold ``tau``, ``threshold_warmup``);
``freematch`` FreeMatch's self-adaptive thresholds (EMA momentum ``ema_momentum``). The modules
are the ones those algorithms use; their running state lives in buffers under ``selector.``,
so it is checkpointed with the algorithm.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from aerossl.algorithms.base import (
    Algorithm,
    AlgorithmParams,
    Batch,
    SSLParams,
    StepContext,
    StepOutput,
    ViewSpec,
    register_algorithm,
)
from aerossl.algorithms.selectors import SELECTORS
from aerossl.algorithms.targets import masked_cross_entropy, soft_cross_entropy
from aerossl.errors import ConfigError


class MetadataMLP(nn.Module):
    """``Linear(D, hidden) - ReLU - Linear(hidden, F)``: metadata into the feature space."""

    def __init__(self, meta_dim: int, hidden: int, features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(meta_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, features))

    def forward(self, meta: Tensor) -> Tensor:
        """Feature offsets (B x F) of encoded metadata (B x D)."""
        return self.net(meta)


@register_algorithm("spatiotemporal")
class Spatiotemporal(Algorithm):
    """Metadata teacher and image-only student, trained together on shared pseudo-labels."""

    class Params(SSLParams):
        threshold: float = Field(0.95, ge=0, le=1, description="confidence threshold tau")
        temperature: float = Field(1.0, gt=0, description="softmax temperature of the guesses")
        lambda_u: float = Field(1.0, ge=0, description="weight of the unlabelled losses")
        lambda_d: float = Field(1.0, ge=0, description="weight of the distillation loss")
        distill: Literal["mse", "cosine"] = Field(
            "mse", description="distillation loss at the injection point: mse or 1 - cosine"
        )
        meta_hidden: int = Field(64, ge=1, description="hidden width of the metadata MLP")
        selector: Literal["fixed", "flexmatch", "freematch"] = Field(
            "fixed", description="pseudo-label selection: fixed (FixMatch), flexmatch, freematch"
        )
        threshold_warmup: bool = Field(
            True, description="count unused images in the normaliser (FlexMatch's warm-up; "
            "selector flexmatch)"
        )
        ema_momentum: float = Field(
            0.999, ge=0, lt=1, description="momentum m of the threshold EMAs (selector freematch)"
        )

    def __init__(self, model: nn.Module, params: AlgorithmParams, num_classes: int,
                 **data: Any) -> None:
        super().__init__(model, params, num_classes, **data)
        if self.meta_dim <= 0:
            raise ConfigError("algorithm 'spatiotemporal' needs metadata: set data.metadata "
                              "(csv, bigearthnet or geotiff)")
        self.teacher = copy.deepcopy(model)
        self.meta_mlp = MetadataMLP(self.meta_dim, params.meta_hidden, model.num_features)
        self.selector = SELECTORS[params.selector](params, num_classes, self.num_images)

    @classmethod
    def views(cls, params: AlgorithmParams) -> ViewSpec:
        return ViewSpec(labeled={"weak": "weak"}, unlabeled={"weak": "weak", "strong": "strong"})

    def teacher_features(self, x: Tensor, meta: Tensor) -> Tensor:
        """``g_T(x) + MLP(m)``: the teacher's features with the metadata injected."""
        return self.teacher.forward_features(x) + self.meta_mlp(meta.to(x.dtype))

    def training_step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        if batch.labeled_meta is None or batch.unlabeled_meta is None:
            raise ConfigError("algorithm 'spatiotemporal' got a batch without metadata")
        # labelled images and their metadata are mixed alike (labeled_mix)
        x, targets, meta_x = self.mix_labeled(batch.labeled["weak"], batch.labels,
                                              batch.labeled_meta)
        u_weak, u_strong = batch.unlabeled["weak"], batch.unlabeled["strong"]
        meta = torch.cat([meta_x, batch.unlabeled_meta])
        n = len(x)
        with torch.no_grad():
            logits_weak = self.teacher.head(self.teacher_features(u_weak, batch.unlabeled_meta))
        probs = self.align(torch.softmax(logits_weak.float() / self.p.temperature, dim=1))
        pseudo = probs.argmax(dim=1)
        mask = self.selector(probs, batch.unlabeled_index)

        inputs = torch.cat([x, u_strong])
        feat_t = self.teacher_features(inputs, meta)
        feat_s = self.model.forward_features(inputs)
        logits_t = self.teacher.head(feat_t)
        logits_s = self.model.head(feat_s)
        loss_sup = soft_cross_entropy(logits_t[:n], targets) + soft_cross_entropy(logits_s[:n],
                                                                                  targets)
        loss_unsup = (masked_cross_entropy(logits_t[n:], pseudo, mask)
                      + masked_cross_entropy(logits_s[n:], pseudo, mask))
        target = feat_t.detach().float()
        if self.p.distill == "mse":
            loss_distill = F.mse_loss(feat_s.float(), target)
        else:
            loss_distill = (1 - F.cosine_similarity(feat_s.float(), target, dim=1)).mean()

        loss = (loss_sup + self.p.lambda_u * loss_unsup + self.p.lambda_d * loss_distill
                + self.entropy_loss(logits_s[n:]))
        log = {"loss/sup": loss_sup.detach(), "loss/unsup": loss_unsup.detach(),
               "loss/distill": loss_distill.detach()}
        # the engine scores the student's strong-view predictions as student_acc_strong
        student = logits_s[n:].detach().argmax(1)
        return StepOutput(loss, log, pseudo_labels=pseudo, mask=mask,
                          predictions={"student_acc_strong": student})

    def eval_model(self) -> nn.Module:
        """The image-only student."""
        return self.model
