"""Test-time augmentation over the symmetries of an overhead image.

A nadir aerial or satellite scene has no "up": its class does not change under a flip or a
quarter turn. At inference a network can be asked for each flipped or turned copy of the input
and its answers averaged. ``flips`` takes the four images of the horizontal and vertical flips
(identity, h, v, both = a half turn), ``dihedral`` all eight elements of the dihedral group D4
(the four quarter turns, each with and without a flip). The logits are averaged (a geometric
mean of the softmax probabilities, and a mean in logit space for multi-label sigmoid outputs),
so the wrapper's output is used wherever the network's logits were. It multiplies the
inference cost by 4 or 8 and leaves training untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from aerossl.errors import ConfigError

__all__ = ["TTA_MODES", "TestTimeAugment", "with_tta"]

#: ``none`` (the network as trained), ``flips`` (4 views), ``dihedral`` (8 views).
TTA_MODES = ("none", "flips", "dihedral")


def _transforms(mode: str) -> list[Callable[[Tensor], Tensor]]:
    flips: list[Callable[[Tensor], Tensor]] = [
        lambda x: x,
        lambda x: x.flip(-1),
        lambda x: x.flip(-2),
        lambda x: x.flip(-2, -1),
    ]
    if mode == "flips":
        return flips
    if mode == "dihedral":  # the flips, each after a quarter turn: all of D4
        return [*flips, *(lambda x, f=f: f(x.rot90(1, (-2, -1))) for f in flips)]
    raise ConfigError(f"unknown test-time augmentation {mode!r}: use one of "
                      f"{', '.join(TTA_MODES)}")


class TestTimeAugment(nn.Module):
    """``network``'s logits averaged over the flipped (and turned) copies of each input."""

    def __init__(self, network: nn.Module, mode: str = "dihedral") -> None:
        super().__init__()
        self.network = network
        self.mode = mode
        self._transforms = _transforms(mode)

    def forward(self, x: Tensor) -> Tensor:
        out = self.network(self._transforms[0](x)).float()
        for t in self._transforms[1:]:
            out = out + self.network(t(x)).float()
        return out / len(self._transforms)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, views={len(self._transforms)}"


def with_tta(network: nn.Module, mode: str = "none") -> nn.Module:
    """``network`` itself for ``none``, else wrapped in :class:`TestTimeAugment`; eval mode
    and device are kept."""
    if mode == "none":
        return network
    wrapped = TestTimeAugment(network, mode)
    wrapped.train(network.training)
    return wrapped

