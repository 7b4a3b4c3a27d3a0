"""Model cases on volumes: :class:`~equilayers.models.UNet3d` end to end (per-voxel logits,
the input's spatial action) for every ``down`` (``"learned"`` in evaluation mode), the cube
groups' elements and circular shifts, float64 and float32, cubes and boxes; negative
controls: a plain 3-D U-Net (rotations), a strided one (rotations), a blur U-Net under a
1-voxel shift. Steerable U-Nets (SO(3)/O(3) harmonic fields; SO(2) about the depth axis) on
the cube's elements (the depth axis's quarter turns for SO(2)); controls: an SO(3) U-Net under
O_h (inversions), one whose Fourier nonlinearities are replaced by an ELU of the
coefficients."""

from __future__ import annotations

import torch

from .._rng import global_rng_from
from ..models import UNet3d
from ..nn import GroupConv3d
from ._case import Case
from ._cases_models import _coefficient_elu

_SIZE = 8  # depth 2: a multiple of 2**2, the sizes check_grid accepts
_ALL_SHIFTS = ((1, 0, 0), (0, 1, 1), (1, 2, 3), (-3, 5, 7))
_GRID_SHIFTS = ((4, 0, 0), (0, 4, 4), (4, 8, -4))  # multiples of 2**depth


def _unet3d(group, down="blur", dtype=torch.float64, strided=False, size=_SIZE, broken=False,
            **kw):
    """A seeded 2-level UNet3d (width 1) with running statistics off their init (one
    train-mode forward on a fixed batch), in eval mode."""
    def build():
        with global_rng_from(torch.Generator().manual_seed(0)):
            net = UNet3d(2, 3, group=group, depth=2, width=1, down=down, **kw)
            if strided:  # stride-2 group convs instead of the pools: even sizes break rotations
                for i in range(len(net.down)):
                    c = net.encoder[i][-2].num_features
                    net.down[i] = GroupConv3d(c, c, 3, stride=2, padding=1,
                                              padding_mode="circular", group=group)
            net = (_coefficient_elu(net) if broken else net).to(dtype)
            with torch.no_grad():
                net.train()(torch.randn(4, 2, size, size, size, dtype=dtype,
                                        generator=torch.Generator().manual_seed(1)))
        return net.eval()
    return build


def _cases_for(group: str) -> list[Case]:
    p, vol = f"models3d/{group}", (2, 2, _SIZE, _SIZE, _SIZE)
    out = []
    for down in ("blur", "polyphase", "max", "learned"):
        out += [
            Case(f"{p}/unet3d-{down}", _unet3d(group, down), vol, group),
            Case(f"{p}/unet3d-{down}-grid-shifts", _unet3d(group, down), vol, kind="shift",
                 shifts=_GRID_SHIFTS),
        ]
    return out + [
        Case(f"{p}/unet3d-blur-zeros", _unet3d(group, padding_mode="zeros"), vol, group),
        Case(f"{p}/unet3d-max-transposed-up", _unet3d(group, "max", up="transposed"), vol,
             group),
        Case(f"{p}/unet3d-polyphase-float32", _unet3d(group, "polyphase", torch.float32), vol,
             group, dtype=torch.float32),
        Case(f"{p}/unet3d-polyphase-every-shift", _unet3d(group, "polyphase"), vol,
             kind="shift", shifts=_ALL_SHIFTS),
        Case(f"{p}/unet3d-learned-every-shift", _unet3d(group, "learned"), vol,
             kind="shift", shifts=_ALL_SHIFTS),
    ]


CASES = _cases_for("o") + [
    # O_h: its 48 elements at 4^3 (1^3 at the deepest level; 8^3 costs 4 minutes here)
    Case("models3d/oh/unet3d-blur", _unet3d("oh", size=4), (2, 2, 4, 4, 4), "oh"),
    Case("models3d/oh/unet3d-polyphase", _unet3d("oh", "polyphase", size=4), (2, 2, 4, 4, 4),
         "oh"),
    Case("models3d/c4z/unet3d-blur-box", _unet3d("c4z", size=4), (2, 2, 4, 8, 8), "c4z"),
    Case("models3d/o/unet3d-max-box", _unet3d("o", "max", size=4), (2, 2, 4, 8, 12), "o"),
    Case("models3d/d4z/unet3d-polyphase-harmonic-reflect",
         _unet3d("d4z", "polyphase", basis="harmonic", padding_mode="reflect"),
         (2, 2, _SIZE, _SIZE, _SIZE), "d4z"),
    Case("models3d/plain/unet3d-polyphase-every-shift", _unet3d(None, "polyphase"),
         (2, 2, _SIZE, _SIZE, _SIZE), kind="shift", shifts=_ALL_SHIFTS),
    # Negative controls: each must fail the harness.
    Case("models3d/oh/plain-unet3d-fails", _unet3d(None), (2, 2, _SIZE, _SIZE, _SIZE), "oh",
         expect="fail"),
    Case("models3d/o/strided-unet3d-fails", _unet3d("o", strided=True),
         (2, 2, _SIZE, _SIZE, _SIZE), "o", expect="fail"),
    Case("models3d/o/unet3d-blur-1px-shift-fails", _unet3d("o"), (2, 2, _SIZE, _SIZE, _SIZE),
         kind="shift", shifts=((1, 0, 0),), expect="fail"),
] + [Case(f"models3d/so3/unet3d-{down}", _unet3d("so3", down), (2, 2, _SIZE, _SIZE, _SIZE),
          "so3") for down in ("blur", "polyphase", "max", "learned")] + [
    Case("models3d/so3/unet3d-max-grid-shifts", _unet3d("so3", "max"),
         (2, 2, _SIZE, _SIZE, _SIZE), kind="shift", shifts=_GRID_SHIFTS),
    Case("models3d/so3/unet3d-polyphase-float32-L2", _unet3d("so3", "polyphase",
         torch.float32, max_order=2), (2, 2, _SIZE, _SIZE, _SIZE), "so3",
         dtype=torch.float32),
    Case("models3d/so3/unet3d-polyphase-every-shift", _unet3d("so3", "polyphase"),
         (2, 2, _SIZE, _SIZE, _SIZE), kind="shift", shifts=_ALL_SHIFTS),
    Case("models3d/o3/unet3d-blur", _unet3d("o3", size=4), (2, 2, 4, 4, 4), "o3"),
    Case("models3d/so3/unet3d-max-gated", _unet3d("so3", "max", nonlinearity="gated"),
         (2, 2, _SIZE, _SIZE, _SIZE), "so3"),
    Case("models3d/o3/unet3d-blur-norm", _unet3d("o3", size=4, nonlinearity="norm"),
         (2, 2, 4, 4, 4), "o3"),
    Case("models3d/so2/unet3d-blur-box", _unet3d("so2", size=4), (2, 2, 4, 8, 8), "so2"),
    Case("models3d/o2/unet3d-max-box", _unet3d("o2", "max", size=4), (2, 2, 4, 8, 8), "o2"),
    Case("models3d/o2/unet3d-polyphase-zeros", _unet3d("o2", "polyphase", size=4,
         padding_mode="zeros"), (2, 2, 4, 8, 8), "o2"),
    # the 2 x 2 x 2 up-conv on harmonic fields: shells about the point between eight voxels
    Case("models3d/so3/unet3d-max-transposed-up", _unet3d("so3", "max", up="transposed"),
         (2, 2, _SIZE, _SIZE, _SIZE), "so3"),
    Case("models3d/so3/unet3d-max-transposed-up-grid-shifts",
         _unet3d("so3", "max", up="transposed"), (2, 2, _SIZE, _SIZE, _SIZE), kind="shift",
         shifts=_GRID_SHIFTS),
    Case("models3d/o3/unet3d-blur-transposed-up", _unet3d("o3", size=4, up="transposed"),
         (2, 2, 4, 4, 4), "o3"),
    Case("models3d/o2/unet3d-max-transposed-up-box", _unet3d("o2", "max", size=4,
                                                           up="transposed"), (2, 2, 4, 8, 8),
         "o2"),
    # Negative controls: each must fail the harness.
    Case("models3d/so3/unet3d-inversions-fail", _unet3d("so3"), (2, 2, _SIZE, _SIZE, _SIZE),
         "o3", in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("models3d/so3/unet3d-transposed-up-inversions-fail",
         _unet3d("so3", "max", up="transposed"), (2, 2, _SIZE, _SIZE, _SIZE), "o3",
         in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("models3d/so3/unet3d-coefficient-elu-fails", _unet3d("so3", size=4, broken=True),
         (2, 2, 4, 4, 4), "so3", expect="fail"),
]
