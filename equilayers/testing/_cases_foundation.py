"""Foundation cases: harness controls and the layout convention (BatchNorm3d, activations)."""

from __future__ import annotations

from torch import nn

from ._case import Case
from ._case import seeded as _seeded
from .controls import symmetrized_conv2d

CASES = [
    Case("harness/identity-p4m", lambda: nn.Identity(), (2, 3, 9, 9), "p4m"),
    Case("harness/identity-regular-d4", lambda: nn.Identity(), (2, 3, 8, 9, 9), "d4",
         in_rep="regular", out_rep="regular"),
    Case("harness/d4-symmetrized-conv", _seeded(lambda: symmetrized_conv2d(3, 4, 5, "d4")),
         (2, 3, 11, 11), "p4m"),
    Case("harness/random-conv-p4-fails",
         _seeded(lambda: nn.Conv2d(3, 4, 3, padding=1).double()), (2, 3, 9, 9), "p4",
         expect="fail"),
    Case("convention/relu-regular-d4", lambda: nn.ReLU(), (2, 3, 8, 7, 7), "d4"),
    Case("convention/batchnorm3d-regular-d4", _seeded(lambda: nn.BatchNorm3d(3).double()),
         (4, 3, 8, 7, 7), "d4"),
    Case("convention/batchnorm3d-harmonic-fails", _seeded(lambda: nn.BatchNorm3d(3).double()),
         (4, 3, 5, 7, 7), "c4", in_rep="harmonic", out_rep="harmonic", expect="fail"),
    Case("convention/shift-roll-conv", _seeded(
        lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular").double()),
        (2, 2, 10, 10), kind="shift"),
    Case("convention/shift-zero-padded-conv-fails", _seeded(
        lambda: nn.Conv2d(2, 3, 3, padding=1).double()), (2, 2, 10, 10), kind="shift",
        expect="fail"),
]
