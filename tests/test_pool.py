"""Global average pooling: same values as adaptive_avg_pool2d, gradient in the input's layout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from aerossl.models import create_model
from aerossl.models.pool import global_avg_pool


def _grad_into_pool(pool: Callable[[torch.Tensor], torch.Tensor], fmt: torch.memory_format
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled output and the gradient the pooling hands to the layer below it."""
    torch.manual_seed(0)
    x = torch.randn(6, 16, 7, 5).contiguous(memory_format=fmt).requires_grad_()
    h = x * 1.5  # an intermediate activation, laid out like x
    seen: list[torch.Tensor] = []
    h.register_hook(seen.append)
    y = pool(h)
    y.backward(torch.randn_like(y))
    return y, seen[0]


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_same_values_and_gradient_as_adaptive_pool(fmt: torch.memory_format) -> None:
    y, grad = _grad_into_pool(global_avg_pool, fmt)
    y_ref, grad_ref = _grad_into_pool(lambda h: F.adaptive_avg_pool2d(h, 1).flatten(1), fmt)
    assert torch.equal(y, y_ref)
    assert torch.equal(grad, grad_ref)  # bit for bit (the layers below may round differently)


def test_gradient_keeps_channels_last() -> None:
    _, grad = _grad_into_pool(global_avg_pool, torch.channels_last)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    _, grad = _grad_into_pool(global_avg_pool, torch.contiguous_format)
    assert grad.is_contiguous()


def test_without_autograd_is_plain_pooling() -> None:
    h = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.no_grad():
        assert torch.equal(global_avg_pool(h), F.adaptive_avg_pool2d(h, 1).flatten(1))
    # with autograd, its own backward (the layout-keeping one) is recorded
    assert "_GlobalAvgPool" in type(global_avg_pool(h).grad_fn).__name__


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "wrn", "cnn"])
def test_models_backward_stays_channels_last(name: str) -> None:
    """In every model, each batch norm's output gets its gradient in channels-last layout."""
    net = create_model(name, num_classes=3).to(memory_format=torch.channels_last).train()
    grads: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        out.register_hook(grads.append)

    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(keep)
    x = torch.randn(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)  # >1 px at the end
    net(x).sum().backward()
    assert grads
    assert all(g.is_contiguous(memory_format=torch.channels_last) for g in grads)
