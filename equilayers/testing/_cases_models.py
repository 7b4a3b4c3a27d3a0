"""Model cases: :class:`~equilayers.models.UNet` end to end (per-pixel logits, the input's
spatial action) for every ``down`` (``"learned"`` in evaluation mode), rotations/flips and
circular shifts, float64 and float32; negative controls: a plain U-Net (rotations), a strided
U-Net (rotations), a blur U-Net under shifts that are not multiples of ``2**depth``. Steerable
U-Nets (SO(2)/O(2) harmonic fields) on the grid's rotations and flips; controls: an SO(2)
U-Net under flips, one whose Fourier nonlinearities are replaced by an ELU of the
coefficients."""

from __future__ import annotations

import torch

from .._rng import global_rng_from
from ..models import UNet
from ..nn import FourierNonlinearity, GroupConv2d
from ._case import Case

_SIZE = 16  # depth 2: a multiple of 2**2, the sizes check_grid accepts
_ALL_SHIFTS = ((1, 0), (0, 1), (1, 1), (3, 5), (-2, 7))
_GRID_SHIFTS = ((4, 0), (0, 4), (4, 12), (-8, 4))  # multiples of 2**depth


def _coefficient_elu(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with every Fourier nonlinearity replaced by an ELU of the harmonic coefficients
    (not equivariant: the orders' slots mix under rotations)."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, FourierNonlinearity):
                setattr(module, name, torch.nn.ELU())
    return net


def _unet(group, down="blur", dtype=torch.float64, strided=False, broken=False, **kw):
    """A seeded 2-level UNet with running statistics off their init (one train-mode forward on
    a fixed batch), in eval mode."""
    def build():
        with global_rng_from(torch.Generator().manual_seed(0)):
            net = UNet(2, 3, group=group, depth=2, width=2, down=down, **kw)
            if strided:  # stride-2 group convs instead of the pools: even sizes break rot90
                for i in range(len(net.down)):
                    c = net.encoder[i][-2].num_features
                    net.down[i] = GroupConv2d(c, c, 3, stride=2, padding=1,
                                              padding_mode="circular", group=group)
            net = (_coefficient_elu(net) if broken else net).to(dtype)
            with torch.no_grad():  # (inside the seeded RNG: the learned pools' Gumbel noise)
                net.train()(torch.randn(4, 2, _SIZE, _SIZE, generator=torch.Generator()
                                        .manual_seed(1), dtype=dtype))
        return net.eval()
    return build


def _cases_for(group: str, name: str) -> list[Case]:
    p, img = f"models/{name}", (2, 2, _SIZE, _SIZE)
    out = []
    for down in ("blur", "polyphase", "max", "learned"):
        out += [
            Case(f"{p}/unet-{down}", _unet(group, down), img, group),
            Case(f"{p}/unet-{down}-zeros", _unet(group, down, padding_mode="zeros"), img,
                 group),
            Case(f"{p}/unet-{down}-float32", _unet(group, down, torch.float32), img, group,
                 dtype=torch.float32),
            Case(f"{p}/unet-{down}-grid-shifts", _unet(group, down), img, kind="shift",
                 shifts=_GRID_SHIFTS),
        ]
    out += [
        Case(f"{p}/unet-polyphase-every-shift", _unet(group, "polyphase"), img, kind="shift",
             shifts=_ALL_SHIFTS),
        Case(f"{p}/unet-polyphase-every-shift-float32", _unet(group, "polyphase",
             torch.float32), img, kind="shift", shifts=_ALL_SHIFTS, dtype=torch.float32),
        Case(f"{p}/unet-learned-every-shift", _unet(group, "learned"), img, kind="shift",
             shifts=_ALL_SHIFTS),
        Case(f"{p}/unet-blur-reflect", _unet(group, padding_mode="reflect"), img, group),
        Case(f"{p}/unet-max-transposed-up", _unet(group, "max", up="transposed"), img, group),
        Case(f"{p}/unet-max-transposed-up-grid-shifts", _unet(group, "max", up="transposed"),
             img, kind="shift", shifts=_GRID_SHIFTS),
        Case(f"{p}/unet-blur-harmonic", _unet(group, basis="harmonic"), img, group),
        Case(f"{p}/unet-blur-harmonic-float32", _unet(group, dtype=torch.float32, basis="harmonic"),
             img, group, dtype=torch.float32),
    ]
    return out


def _steerable(group: str) -> list[Case]:
    """Harmonic-field U-Nets of a continuous group: its grid elements (quarter turns, and
    flips for O(2)), every ``down``, shifts."""
    p, img = f"models/{group}", (2, 2, _SIZE, _SIZE)
    return [Case(f"{p}/unet-{down}", _unet(group, down), img, group)
            for down in ("blur", "polyphase", "max", "learned")] + [
        Case(f"{p}/unet-blur-max-order-1-zeros", _unet(group, max_order=1,
                                                       padding_mode="zeros"), img, group),
        Case(f"{p}/unet-polyphase-float32", _unet(group, "polyphase", torch.float32), img,
             group, dtype=torch.float32),
        Case(f"{p}/unet-blur-grid-shifts", _unet(group), img, kind="shift",
             shifts=_GRID_SHIFTS),
        Case(f"{p}/unet-polyphase-every-shift", _unet(group, "polyphase"), img, kind="shift",
             shifts=_ALL_SHIFTS),
        Case(f"{p}/unet-blur-gated", _unet(group, nonlinearity="gated"), img, group),
        Case(f"{p}/unet-max-norm", _unet(group, "max", nonlinearity="norm"), img, group),
        # the 2 x 2 up-conv: the steerable basis on an even grid
        Case(f"{p}/unet-max-transposed-up", _unet(group, "max", up="transposed"), img, group),
        Case(f"{p}/unet-blur-transposed-up-grid-shifts", _unet(group, up="transposed"), img,
             kind="shift", shifts=_GRID_SHIFTS),
    ]


CASES = _cases_for("d4", "p4m") + _cases_for("c4", "p4") + _steerable("so2") + _steerable(
    "o2") + [
    Case("models/d1/unet-blur", _unet("d1"), (2, 2, _SIZE, 8), "d1"),
    Case("models/c8/unet-max-transposed-up", _unet("c8", "max", up="transposed"),
         (2, 2, _SIZE, _SIZE), "c8", elements=(0.0, 90.0, 180.0, 270.0)),
    Case("models/p4m/unet-blur-elu", _unet("d4", nonlinearity="elu"), (2, 2, _SIZE, _SIZE),
         "d4"),
    Case("models/plain/unet-polyphase-every-shift", _unet(None, "polyphase"),
         (2, 2, _SIZE, _SIZE), kind="shift", shifts=_ALL_SHIFTS),
    # Negative controls: each must fail the harness.
    Case("models/p4m/plain-unet-fails", _unet(None), (2, 2, _SIZE, _SIZE), "d4",
         expect="fail"),
    Case("models/p4m/strided-unet-fails", _unet("d4", strided=True), (2, 2, _SIZE, _SIZE),
         "d4", expect="fail"),
    Case("models/p4m/unet-blur-1px-shift-fails", _unet("d4"), (2, 2, _SIZE, _SIZE),
         kind="shift", shifts=((1, 0),), expect="fail"),
    Case("models/so2/unet-flips-fail", _unet("so2"), (2, 2, _SIZE, _SIZE), "o2",
         in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("models/so2/unet-transposed-up-flips-fail", _unet("so2", "max", up="transposed"),
         (2, 2, _SIZE, _SIZE), "o2", in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("models/so2/unet-coefficient-elu-fails", _unet("so2", broken=True),
         (2, 2, _SIZE, _SIZE), "so2", expect="fail"),
]
