"""The bad-input table, part 2: the top-level functions, ``equilayers.groups``,
``equilayers.metrics``, ``equilayers.testing`` and ``equilayers.kernels`` (see
``tests/_bad_input.py`` for what a case checks)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from _bad_input import CALLABLE, CHOICE, DTYPE, FLAG, FLOAT, GROUP, INT, OK, PAIR, Case, T
from torch import nn

import equilayers
import equilayers.groups as G
import equilayers.metrics as M
import equilayers.models as EM
import equilayers.nn as enn
import equilayers.testing as ET
from equilayers import kernels as K


def _traced() -> torch.jit.ScriptModule:
    """A TorchScript model: its submodules take no hooks and are not replaced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation of TorchScript, tracer warnings
        return torch.jit.trace(nn.Sequential(nn.Conv2d(3, 3, 3, 2, 1), nn.BatchNorm2d(3)),
                               torch.randn(1, 3, 6, 6))


MODEL = {"None": None, "0": 0, "str": "net", "traced": _traced()}
_R90 = G.get("p4").elements()[1]
_CYCLE = G.get("o").element([[0, 0, 1], [1, 0, 0], [0, 1, 0]])  # (z, x, y): moves all 3 dims
ELEMENT = {"None": None, "0": 0, "str": "rot90", "other-group": G.get("d4").elements()[1]}
ELEMENTS = {"0": 0, "empty": [], "bogus": ["a"], "out-of-range": [9]}
#: A rotation matrix argument: not a matrix, not 3 x 3, not orthogonal.
MATRIX = {"None": None, "0": 0, "str": "R", "2x2": [[1.0, 0.0], [0.0, 1.0]],
          "scaled": [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]}
_ROT3 = G.get("so3").matrix(G.get("so3").from_axis_angle([1.0, 2.0, 3.0], 0.4))
SHIFTS = {"None": None, "0": 0, "1.5": (1.5, 0), "triple": (1, 1, 1), "str": "ab"}


def _invariant(t: torch.Tensor) -> torch.Tensor:
    return t.amax(dim=(-2, -1))


def _double(t: torch.Tensor) -> torch.Tensor:
    return 2 * t


def _loss(t: torch.Tensor) -> torch.Tensor:
    """A model returning a scalar (a loss), not one output per sample."""
    return t.square().mean()


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A model flattening the batch away: its dim 0 is not the batch."""
    return t.flatten()


def _integer(t: torch.Tensor) -> torch.Tensor:
    return t.amax(dim=(-2, -1)).long()


#: Models whose outputs a per-sample metric cannot read (geed, lie_derivative and
#: deformation_stability raised IndexError/RuntimeError on a scalar, and geed measured
#: B*C*H*W one-value "samples" of a flattened output).
OUTPUTS = {**CALLABLE, "loss": _loss, "flat": _flat}


def _cyclic(n: str) -> G.Group:
    return G.get(f"c{n}")


def _conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.ReLU())


def _img(*shape, **kw) -> T:
    kw.setdefault("ranks", (1,))
    return T(shape, **kw)


_REPORT_ARGS = {"f": CALLABLE, "group": GROUP, "in_rep": CHOICE, "elements": ELEMENTS}
_REPORT_OK = {"in_rep": {"None": OK}}
_KW = dict(kernel_size=3, stride=2, padding_mode="reflect")

TOP: list[Case] = [
    Case(equilayers.symbolic_trace, dict(root=nn.Sequential(nn.Conv2d(3, 4, 3))),
         {"root": MODEL}),
    Case(equilayers.antialias, dict(model=nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1),
                                                         nn.MaxPool2d(2))),
         {"model": MODEL, "blur_size": INT, "mode": CHOICE,
          "skip": {"0": 0, "str": "0", "unknown": ["zz"]}, "inplace": FLAG,
          "return_report": FLAG}),
    Case(equilayers.check_grid, dict(model=nn.Conv2d(3, 4, 3, 2, 1, padding_mode="circular"),
                                     input_shape=(1, 3, 9, 9), search=4),
         {"model": MODEL, "group": GROUP, "search": INT, "shifts": FLAG,
          "input_shape": {"None": None, "0": 0, "short": (8, 8), "neg": (1, 3, -1, 8),
                          "float": (1, 3, 8.5, 8), "numpy": (np.int64(1), 3, 9, 9)}},
         accept={"search": {"0": OK}, "input_shape": {"numpy": (1, 3, 9, 9)}}),
    Case(equilayers.export, dict(model=nn.Sequential(enn.LiftingConv2d(1, 2, 3),
                                                      enn.GroupPool())),
         {"model": MODEL}),
    Case(equilayers.recalibrate_batch_norm,
         dict(model=nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), batch_size=4),
         {"model": MODEL, "batch_size": INT, "max_samples": INT},
         # x goes to the user's model as it is (an embedding model takes int64): no dtype check
         {"x": _img(8, 3, 6, 6, dtypes=False)}, accept={"max_samples": {"None": OK}},
         empty="error"),
    Case(equilayers.update_bn,
         dict(loader=[torch.randn(4, 2, 3, 4, 4)],
              model=nn.Sequential(enn.HarmonicBatchNorm(2, 1))),
         {"model": MODEL,
          "loader": {"None": None, "0": 0, "tensor": torch.randn(4, 2, 3, 4, 4), "str": "data",
                     "empty": [], "dicts": [{"x": torch.randn(4, 2, 3, 4, 4)}]},
          "device": {"0.5": 0.5, "bogus": "gpu9", "empty": ""}}),
]

GROUPS: list[Case] = [
    Case(G.get, dict(group="p4"), {"group": GROUP}),
    Case(G.Group, dict(n=4, reflections=False), {"n": INT}, accept={"n": {"None": OK}}),
    Case(G.PlanarGroup, dict(n=4, reflections=False), {"n": INT},
         accept={"n": {"None": OK}}),
    # registers a name for the rest of the test; conftest's fixture unregisters it
    Case(G.register_group, dict(pattern=r"badinput(\d+)", factory=_cyclic,
                                form="'badinputN'"),
         {"pattern": {"None": None, "0": 0, "empty": "", "unbalanced": "(",
                      "registered": r"(c|d)(\d+)"},
          "factory": CALLABLE, "form": {"None": None, "0": 0, "empty": " "}}),
    Case(G.FieldType, dict(group="so2", rep="harmonic", max_order=2),
         {"group": GROUP, "rep": CHOICE, "max_order": INT, "spatial_dims": INT},
         accept={"group": {"None": OK}, "max_order": {"0": OK, "None": OK},
                 "spatial_dims": {"None": OK, "0": OK}}),  # 0: a fiber alone (B, C, F)
    Case(G.act, dict(g=_R90, rep="regular"), {"g": ELEMENT, "rep": CHOICE, "mode": CHOICE},
         {"x": T((2, 3, 4, 5, 5), ranks=(4, 6), fiber=2, dtype_ok=True)}),
    Case(G.act, dict(g=_CYCLE, rep="regular"), {"g": ELEMENT, "rep": CHOICE},
         {"x": T((2, 3, 24, 3, 3, 3), ranks=(5, 7), fiber=2, dtype_ok=True)},
         variant="[o]"),
    Case(G.CubicGroup, dict(name="oh"), {"name": CHOICE}),
    Case(G.SO3Group, dict(reflections=True), {"reflections": FLAG}),
    Case(G.IcosahedralGroup, dict(inversion=True), {"inversion": FLAG}),
    Case(G.rotate3d, dict(matrix=_ROT3), {"matrix": MATRIX, "mode": CHOICE},
         {"x": _img(2, 3, 5, 5, 5, ranks=(2,))}),
    Case(G.spherical_harmonics, dict(max_order=2), {"max_order": INT},
         {"points": T((5, 3), ranks=(0,))}, accept={"max_order": {"0": OK}}),
    Case(G.wigner_d, dict(order=2, rotation=_ROT3), {"order": INT, "rotation": MATRIX},
         accept={"order": {"0": OK}}),
    Case(G.wigner_blocks, dict(max_order=2, rotation=_ROT3), {"max_order": INT,
                                                               "rotation": MATRIX},
         accept={"max_order": {"0": OK}}),
    Case(G.clebsch_gordan, dict(l_out=1, order=1, l_in=1),
         {"l_out": INT, "order": INT, "l_in": INT},
         accept={"l_out": {"0": OK}, "order": {"0": OK}, "l_in": {"0": OK}}),
    Case(G.act_spatial, dict(g=_R90), {"g": ELEMENT, "mode": CHOICE},
         {"x": _img(2, 3, 5, 5, dtype_ok=True)},
         accept={"g": {"other-group": OK}}),  # any element moves an image
    Case(G.act_fiber, dict(g=_R90, rep="regular"), {"g": ELEMENT, "rep": CHOICE, "dim": INT},
         {"x": T((2, 3, 4, 5, 5), fiber=2, dtype_ok=True)}),
    Case(G.fiber_size, dict(group="p4", rep="harmonic", max_order=2),
         {"group": GROUP, "rep": CHOICE, "max_order": INT}, accept={"max_order": {"0": OK}}),
    Case(G.harmonic_matrix, dict(g=G.get("c8").elements()[1], max_order=2),
         {"g": ELEMENT, "max_order": INT, "dtype": DTYPE},
         accept={"max_order": {"0": OK}, "g": {"other-group": OK}}),
    Case(G.group_fourier_basis, dict(group="d4"), {"group": GROUP, "dtype": DTYPE}),
    Case(G.rot90, dict(k=1), {"k": INT}, {"x": _img(2, 3, 5, 5, dtype_ok=True)},
         accept={"k": {"0": OK, "-1": 3}}),
    Case(G.flip, {}, {}, {"x": _img(2, 3, 5, 5, dtype_ok=True)}),
    Case(G.rotate, dict(angle=0.3), {"angle": FLOAT, "mode": CHOICE, "padding_mode": CHOICE},
         {"x": _img(2, 3, 5, 5)}, accept={"angle": {"0": OK, "-1": OK}}),
    Case(G.circular_shift, dict(shifts=(1, 2)), {"shifts": SHIFTS},
         {"x": _img(2, 3, 5, 5, dtype_ok=True)}),
    Case(G.shift, dict(shifts=(1, 2)), {"shifts": SHIFTS, "fill": {"None": None, "str": "a"}},
         {"x": _img(2, 3, 5, 5, dtype_ok=True)}),
    Case(G.fractional_shift, dict(shifts=(0.5, 1.0)),
         {"shifts": {**SHIFTS, "nan": (math.nan, 0.0), "1.5": (1.5, 0.5)}},
         {"x": _img(2, 3, 5, 5)}, accept={"shifts": {"1.5": OK}}),
    Case(G.gaussian_smooth, dict(sigma=1.0), {"sigma": FLOAT},
         {"x": _img(2, 3, 6, 6, small=(2, 3, 1, 1), small_ok=True)},
         accept={"sigma": {"0": OK}}),
    Case(G.disk_mask, dict(h=5, w=5, margin=1.0), {"h": INT, "w": INT, "margin": FLOAT},
         accept={"h": {"0": OK}, "w": {"0": OK}, "margin": {"0": OK}}),
]

METRICS: list[Case] = [
    Case(M.consistency, dict(model=_invariant, transform="circular_shift", pairs=2),
         {"model": CALLABLE, "transform": CHOICE, "pairs": INT, "max_shift": FLOAT,
          "max_angle": FLOAT},
         {"x": _img(4, 3, 6, 6, ranks=(3,))},
         accept={"max_shift": {"0": OK, "None": OK}, "max_angle": {"0": OK}}, empty="error"),
    Case(M.geed, dict(model=_invariant, group="p4", out_rep="invariant"),
         {"model": OUTPUTS, "group": GROUP, "distance": CHOICE, "normalized": FLAG,
          "in_rep": CHOICE, "out_rep": CHOICE, "elements": ELEMENTS},
         {"x": _img(2, 3, 5, 5, ranks=(2,))},
         accept={"in_rep": {"None": OK}, "out_rep": {"None": OK}}, empty="error"),
    Case(M.lie_derivative, dict(model=_invariant, out_rep="invariant"),
         {"model": {**OUTPUTS, "int": _integer}, "generator": CHOICE, "out_rep": CHOICE,
          "reduction": CHOICE},
         {"x": _img(2, 3, 5, 5, ranks=(3,))}, accept={"out_rep": {"None": OK}},
         empty="error"),
    Case(M.deformation_stability, dict(model=_double, samples=2),
         {"model": OUTPUTS, "temperature": FLOAT, "cutoff": INT, "samples": INT},
         {"x": _img(2, 3, 6, 6, ranks=(3,))}, empty="error"),
    Case(M.random_deformation, dict(h=6, w=6, temperature=0.01, cutoff=2,
                                    generator=torch.Generator().manual_seed(0)),
         {"h": INT, "w": INT, "temperature": FLOAT, "cutoff": INT,
          "generator": {"None": None, "0": 0}, "dtype": DTYPE},
         accept={"generator": {"None": OK}}),
    Case(M.layerwise_equivariance, dict(model=_conv_net(), group="p4"),
         {"model": MODEL, "group": GROUP, "elements": ELEMENTS, "in_rep": CHOICE,
          "tol": FLOAT},
         {"x": _img(2, 3, 5, 5, ranks=(2,))},
         accept={"in_rep": {"None": OK}, "tol": {"None": OK, "0": OK, "inf": OK}},
         empty="error"),
    Case(M.layerwise_shift_equivariance, dict(model=_conv_net()),
         {"model": MODEL, "shifts": {"0": 0, "str": "ab", "1.5": [(1.5, 0)],
                                     "triple": [(1, 1, 1)], "flat": (1, 2), "empty": []},
          "tol": FLOAT},
         {"x": _img(2, 3, 6, 6, ranks=(3,))},
         accept={"tol": {"None": OK, "0": OK, "inf": OK}}, empty="error"),
    Case(M.capture_outputs, dict(model=_conv_net()), {"model": MODEL},
         {"x": _img(2, 3, 5, 5, ranks=(2,))}, empty="error"),
]

_DENSE_SHIFTS = {"0": 0, "1": 1, "str": "ab", "1.5": [(1.5, 0)], "triple": [(1, 1, 1)],
                 "empty": [], "flat": (2, 2)}
_DENSE_OK = {"shifts": {"None": OK}, "in_rep": {"None": OK}}
METRICS += [
    Case(M.pixel_consistency, dict(model=_double, shifts=2),
         {"model": CALLABLE, "transforms": CHOICE, "shifts": _DENSE_SHIFTS, "in_rep": CHOICE},
         {"x": _img(2, 3, 6, 6, ranks=(3,))}, accept=_DENSE_OK, empty="error"),
    Case(M.pixel_consistency, dict(model=_double, transforms="p4"),
         {"in_rep": CHOICE, "elements": ELEMENTS, "shifts": {"2": 2}},
         {"x": _img(2, 3, 5, 5, ranks=(3,))}, accept={"in_rep": {"None": OK}},
         empty="error", variant="[group]"),
    Case(M.pixel_equivariance_error, dict(model=_double, shifts=2),
         {"model": CALLABLE, "transforms": CHOICE, "shifts": _DENSE_SHIFTS, "in_rep": CHOICE,
          "out_rep": CHOICE, "reduction": CHOICE},
         {"x": _img(2, 3, 6, 6, ranks=(3,))}, accept={**_DENSE_OK, "out_rep": {"None": OK}},
         empty="error"),
    Case(M.pixel_equivariance_error, dict(model=_double, transforms="p4m"),
         {"in_rep": CHOICE, "out_rep": CHOICE, "elements": ELEMENTS},
         {"x": _img(2, 3, 5, 5, ranks=(3,))},
         accept={"in_rep": {"None": OK}, "out_rep": {"None": OK}},
         empty="error", variant="[group]"),
]

TESTING: list[Case] = [
    Case(ET.equivariance_report, dict(f=_double, group="p4", in_rep="trivial",
                                      out_rep="trivial"),
         {**_REPORT_ARGS, "out_rep": CHOICE, "smooth": FLOAT, "margin": FLOAT},
         {"x": _img(2, 3, 5, 5)}, accept={**_REPORT_OK, "out_rep": {"None": OK},
                                           "smooth": {"0": OK}, "margin": {"0": OK}},
         empty="error"),
    Case(ET.equivariance_error, dict(f=_double, group="p4", in_rep="trivial"),
         {**_REPORT_ARGS, "out_rep": CHOICE}, {"x": _img(2, 3, 5, 5)},
         accept={**_REPORT_OK, "out_rep": {"None": OK}}, empty="error"),
    Case(ET.invariance_error, dict(f=_invariant, group="p4", in_rep="trivial"), _REPORT_ARGS,
         {"x": _img(2, 3, 5, 5)}, accept=_REPORT_OK, empty="error"),
    Case(ET.assert_equivariant, dict(f=_double, group="p4", in_rep="trivial"),
         {**_REPORT_ARGS, "out_rep": CHOICE, "tol": FLOAT}, {"x": _img(2, 3, 5, 5)},
         accept={**_REPORT_OK, "out_rep": {"None": OK}, "tol": {"None": OK, "0": OK,
                                                                 "inf": OK}},
         empty="error"),
    Case(ET.assert_invariant, dict(f=_invariant, group="p4", in_rep="trivial"),
         {**_REPORT_ARGS, "tol": FLOAT}, {"x": _img(2, 3, 5, 5)},
         accept={**_REPORT_OK, "tol": {"None": OK, "0": OK, "inf": OK}}, empty="error"),
    Case(ET.shift_equivariance_error, dict(f=_double, shifts=[(2, 2)], stride=2),
         {"f": CALLABLE, "shifts": {"0": 0, "str": "ab", "1.5": [(1.5, 0)],
                                    "triple": [(1, 1, 1)], "flat": (2, 2), "empty": []},
          "stride": PAIR, "invariant": FLAG},
         {"x": _img(2, 3, 6, 6)}, accept={"stride": {"True": OK}}, empty="error"),
    Case(ET.default_tolerance, dict(dtype=torch.float32), {"dtype": DTYPE}),
    Case(ET.infer_rep, dict(declared=None), {"declared": CHOICE},
         {"t": T((2, 3, 5, 5), dtypes=False)}, accept={"declared": {"None": OK}},
         empty="skip"),
    Case(ET.symmetrized_conv2d, dict(in_channels=2, out_channels=3, kernel_size=3),
         {"in_channels": INT, "out_channels": INT, "kernel_size": INT, "group": GROUP,
          "dtype": DTYPE}),
]

_OPS = {"None": None, "0": 0}
KERNELS: list[Case] = [
    Case(K.dispatch, dict(op_name="blur_pool2d"), {"op_name": {**_OPS, "unknown": "blur"}},
         {"x": _img(2, 3, 8, 8, ranks=(2,))}),
    Case(K.explain, dict(op_name="blur_pool2d", **_KW), {"op_name": _OPS},
         {"x": T((2, 3, 8, 8), dtypes=False)}, empty="skip"),
    Case(K.select, dict(op_name="blur_pool2d", **_KW), {"op_name": _OPS},
         {"x": T((2, 3, 8, 8), dtypes=False)}, empty="skip"),
    Case(K.choose, dict(op_name="blur_pool2d", **_KW), {"op_name": _OPS},
         {"x": T((2, 3, 8, 8), dtypes=False)}, empty="skip"),
    Case(K.kernel_support, dict(op_name="blur_pool2d", **_KW), {"op_name": _OPS},
         {"x": T((2, 3, 8, 8), dtypes=False)}, extra={"x:list": lambda d: {**d, "x": [1.0]}},
         empty="skip"),
    Case(K.max_pool2d_stride1, dict(kernel_size=2), {"kernel_size": INT},
         {"x": _img(2, 3, 6, 6, small=(2, 3, 1, 1))}),
    Case(K.triton_blur_pool2d, _KW, {"kernel_size": INT, "stride": INT, "padding_mode": CHOICE},
         {"x": _img(2, 3, 8, 8, ranks=(2,), small=(2, 3, 1, 1), small_ok=True)},
         needs_kernel=True),
    Case(K.triton_max_blur_pool2d, dict(kernel_size=2, stride=2),
         {"kernel_size": INT, "stride": INT, "blur_size": INT, "padding_mode": CHOICE,
          "padding": INT},
         {"x": _img(2, 3, 8, 8, ranks=(2,), small=(2, 3, 1, 1))},
         accept={"padding": {"0": OK}}, needs_kernel=True),
    Case(K.triton_polyphase_pool2d, dict(stride=2),
         {"stride": INT, "criterion": CHOICE, "blur_size": INT, "padding_mode": CHOICE,
          "return_index": FLAG},
         {"x": _img(2, 3, 8, 8, ranks=(2,), small=(2, 3, 1, 1))}, needs_kernel=True),
]


MODELS: list[Case] = [
    Case(EM.UNet, dict(in_channels=2, out_channels=3, depth=2, width=2),
         {"in_channels": INT, "out_channels": INT, "group": GROUP, "depth": INT, "width": INT,
          "padding_mode": CHOICE, "down": CHOICE, "up": CHOICE, "nonlinearity": CHOICE,
          "dtype": DTYPE},
         {"x": T((2, 2, 8, 8), ranks=(3, 5), channel=1, small=(2, 2, 2, 2))},
         accept={"group": {"None": OK}, "nonlinearity": {"None": OK}},
         extra={"x:size": lambda d: {**d, "x": torch.randn(2, 2, 8, 10)}}),
    Case(EM.UNet3d, dict(in_channels=2, out_channels=3, depth=1, width=1),
         {"in_channels": INT, "out_channels": INT, "group": GROUP, "depth": INT, "width": INT,
          "padding_mode": CHOICE, "down": CHOICE, "up": CHOICE, "dtype": DTYPE},
         {"x": T((2, 2, 4, 4, 4), ranks=(3, 4, 6), channel=1, small=(2, 2, 1, 1, 1))},
         accept={"group": {"None": OK}},
         extra={"x:size": lambda d: {**d, "x": torch.randn(2, 2, 4, 4, 5)}}),
    Case(EM.UNet, dict(in_channels=2, out_channels=3, group="so2", depth=1, width=1),
         {"max_order": INT, "basis": CHOICE, "down": CHOICE, "nonlinearity": CHOICE},
         {"x": T((2, 2, 4, 4), ranks=(3, 5), channel=1, small=(2, 2, 1, 1))},
         accept={"max_order": {"0": OK, "None": OK}, "basis": {"None": OK},
                 "nonlinearity": {"None": OK}}),
    Case(EM.UNet3d, dict(in_channels=2, out_channels=3, group="so3", depth=1, width=1),
         {"max_order": INT, "basis": CHOICE, "down": CHOICE, "nonlinearity": CHOICE},
         {"x": T((2, 2, 4, 4, 4), ranks=(3, 4, 6), channel=1, small=(2, 2, 1, 1, 1))},
         accept={"max_order": {"0": OK, "None": OK}, "basis": {"None": OK},
                 "nonlinearity": {"None": OK}}),
]
