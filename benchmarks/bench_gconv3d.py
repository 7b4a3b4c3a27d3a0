"""3-D group convolutions against their floor, a dense ``nn.Conv3d`` with the same expanded
channel counts (``C_in*F_in -> C_out*F_out``), and against escnn's ``R3Conv`` when importable
(issue 16).

Rows, k3 unless named, 4 fields:

- ``LiftingConv3d`` / ``GroupConv3d`` for ``"o"`` (the cube's 24 rotations) and ``"c4z"``
  (the 4 quarter turns about z): training mode, batch 4, forward and forward+backward, at
  ``8^3`` and ``16^3``; batch-1 eval inference under ``torch.no_grad`` at ``16^3`` (our layers
  expand the filter in every forward, escnn's ``R3Conv`` caches it in eval mode; ``ours
  exported`` is the layer after ``equilayers.export``, a plain ``nn.Conv3d``; ``ours
  harmonic`` the same layer with ``basis="harmonic"``, training rows). escnn:
  ``R3Conv`` on ``octaOnR3()`` (``"o"``) and ``rot2dOnR3(4)`` (``"c4z"``) regular fields.
- ``SteerableConv3d`` (``"so3"``), 8 fields of orders ``0..L``: a lifting conv (volume ->
  ``L``) and a harmonic one (``L -> L``), ``L = 1`` at k3 and ``L = 2`` at k5, training mode,
  batch 4, ``16^3`` (quick: ``L = 1`` only). escnn: ``R3Conv`` on ``rot3dOnR3(L)`` with each
  field the direct sum of the irreps ``0..L`` (its default rings, widths and caps, which are
  ours).

- ``LiftingConvTranspose3d`` / ``GroupConvTranspose3d`` (``transposed`` rows) for ``"o"`` and
  ``"c4z"``: k3, stride 2, padding 1, training mode, batch 4, inputs ``4^3`` and ``8^3``
  (quick: ``4^3``), against a dense ``nn.ConvTranspose3d``; escnn: ``R3ConvTransposed``.

- ``SteerableConv3d`` (``"so2"``: SO(2) about the depth axis, its default ``basis="shells"``,
  escnn's space), 8 fields of orders ``0..2``, lifting and harmonic, k3 and k5 (quick: k3),
  training mode, batch 4, ``16^3``. escnn: ``R3Conv`` on ``rot2dOnR3()`` with each field the
  direct sum of the irreps ``0..2``.

- ``SteerableConvTranspose3d`` (``transposed`` rows of ``"so3"``, ``L = 1`` k3 and ``L = 2``
  k5, quick: ``L = 1``; ``"so2"``, ``L = 2`` k3), 8 fields, lifting and harmonic, stride 2,
  padding ``k // 2``, training mode, batch 4, input ``8^3``, against a dense
  ``nn.ConvTranspose3d``; escnn: ``R3ConvTransposed`` on the same fields.

- ``LiftingConv3d`` / ``GroupConv3d`` for ``"ico"`` (the icosahedral rotations, turned
  harmonic filters): 2 fields, training mode, batch 2, ``8^3`` and ``12^3`` (quick:
  ``8^3``); escnn: ``R3Conv`` on ``icoOnR3()`` regular fields.

Construction time per layer via ``construct`` (median of repeated builds in one process: both
libraries' basis caches are warm after the first).

Run: ``python -m benchmarks --family gconv3d [--quick]``.
"""

from __future__ import annotations

import importlib.util

from torch import nn

from benchmarks._core import BenchCase
from benchmarks._core import module_maker as _make
from benchmarks._core import peer_maker as _make_peer

FAMILY = "gconv3d"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn",)
_ORDER = {"o": 24, "c4z": 4}
C = 4  # fields of the regular rows
B = 4  # batch of the training rows


def _ours(kind: str, group: str, c: int, k: int, basis: str = "voxel"):
    from equilayers.nn import GroupConv3d, LiftingConv3d
    cls = LiftingConv3d if kind == "lifting" else GroupConv3d
    return lambda: cls(c, c, k, padding=k // 2, group=group, basis=basis)


def _exported(builder):
    import equilayers

    return lambda: equilayers.export(builder())


def _floor(c_in: int, c_out: int, k: int):
    return lambda: nn.Conv3d(c_in, c_out, k, padding=k // 2)


def escnn_sklearn_shim() -> None:
    """escnn 1.0.11 builds the octahedral group's Clebsch-Gordan coefficients with
    scikit-learn's ``randomized_svd`` on an ``np.matrix``, which recent scikit-learn (1.9.1 in
    the peers venv) rejects (``TypeError: np.matrix is not supported``); hand it an array
    instead (same values)."""
    import numpy as np
    from escnn.group import _numerical

    svd = getattr(_numerical, "randomized_svd", None)
    if svd is None or getattr(svd, "_array_shim", False):
        return

    def randomized_svd(a, *args, **kwargs):
        return svd(np.asarray(a), *args, **kwargs)
    randomized_svd._array_shim = True
    _numerical.randomized_svd = randomized_svd


def _escnn_regular(kind: str, group: str, c: int, k: int, transposed: bool = False):
    """``(build, wrap)`` of escnn's ``R3Conv`` with our layer's fields (``transposed``: its
    ``R3ConvTransposed`` at stride 2, padding 1)."""
    from escnn import gspaces
    from escnn import nn as esc

    escnn_sklearn_shim()

    gs = {"o": gspaces.octaOnR3, "ico": gspaces.icoOnR3,
          "c4z": lambda: gspaces.rot2dOnR3(n=4)}[group]()
    rin = gs.trivial_repr if kind == "lifting" else gs.regular_repr
    tin, tout = esc.FieldType(gs, c * [rin]), esc.FieldType(gs, c * [gs.regular_repr])

    def build():
        if transposed:
            return esc.R3ConvTransposed(tin, tout, k, padding=1, stride=2)
        return esc.R3Conv(tin, tout, k, padding=k // 2)

    def wrap(conv):
        return lambda x: conv(esc.GeometricTensor(x, tin)).tensor
    return build, wrap


def _escnn_harmonic(l_in: int | None, l_out: int, c: int, k: int, group: str = "so3",
                    transposed: bool = False):
    from escnn import gspaces
    from escnn import nn as esc
    from escnn.group import directsum

    gs = (gspaces.rot3dOnR3(maximum_frequency=max(l_out, l_in or 0)) if group == "so3"
          else gspaces.rot2dOnR3())

    def field(order):
        return directsum([gs.fibergroup.irrep(j) for j in range(order + 1)])
    tin = esc.FieldType(gs, c * [gs.trivial_repr if l_in is None else field(l_in)])
    tout = esc.FieldType(gs, c * [field(l_out)])

    def build():
        if transposed:
            return esc.R3ConvTransposed(tin, tout, k, padding=k // 2, stride=2)
        return esc.R3Conv(tin, tout, k, padding=k // 2)

    def wrap(conv):
        return lambda x: conv(esc.GeometricTensor(x, tin)).tensor
    return build, wrap


def regular_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """The cube groups' rows: train b4 at each size, infer b1 at the largest."""
    sizes = (8,) if quick else (8, 16)
    k, c = 3, C
    out: list[BenchCase] = []
    for kind in ("lifting", "group"):
        for group in ("o", "c4z"):
            n = _ORDER[group]
            c_in = c if kind == "lifting" else c * n
            modes = [("train", B, s) for s in sizes] + [("infer", 1, sizes[-1])]
            for mode, b, s in modes:
                tag = f"{kind} {group} k{k} {s}^3 {mode} b{b} c{c}"
                params = dict(kind=kind, group=group, k=k, size=s, mode=mode, batch=b,
                              fields=c)
                flat = (b, c_in, s, s, s)
                ours_shape = flat if kind == "lifting" else (b, c, n, s, s, s)
                floor = f"floor {tag}"
                train = mode == "train"
                out.append(BenchCase(floor, FAMILY, _make(_floor(c_in, c * n, k), flat, mode),
                                     backward=train, construct=_floor(c_in, c * n, k),
                                     params=params))
                out.append(BenchCase(f"ours {tag}", FAMILY,
                                     _make(_ours(kind, group, c, k), ours_shape, mode),
                                     floor=floor, backward=train,
                                     construct=_ours(kind, group, c, k), params=params))
                if train:  # the band-limited filters: one more matmul per forward
                    harmonic = _ours(kind, group, c, k, "harmonic")
                    out.append(BenchCase(f"ours harmonic {tag}", FAMILY,
                                         _make(harmonic, ours_shape, mode), floor=floor,
                                         backward=True, construct=harmonic, params=params))
                if not train:
                    out.append(BenchCase(f"ours exported {tag}", FAMILY,
                                         _make(_exported(_ours(kind, group, c, k)), ours_shape,
                                               mode),
                                         floor=floor, backward=False, params=params))
                if peer:
                    build, wrap = _escnn_regular(kind, group, c, k)
                    out.append(BenchCase(f"escnn {tag}", FAMILY,
                                         _make_peer(build, wrap, flat, mode), floor=floor,
                                         peer="escnn", backward=train, construct=build,
                                         params=params))
    return out


def steerable_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """``SteerableConv3d`` so3 rows (lifting and harmonic) beside their dense floor."""
    shapes = ((1, 3),) if quick else ((1, 3), (2, 5))
    return _steerable_rows("so3", shapes, 8 if quick else 16, peer)


def axial_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """``SteerableConv3d(group="so2")`` (about the depth axis) rows, lifting and harmonic,
    beside their dense floor and escnn's ``rot2dOnR3`` ``R3Conv``."""
    return _steerable_rows("so2", ((2, 3),) if quick else ((2, 3), (2, 5)), 16, peer)


def steerable_transposed_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """``SteerableConvTranspose3d`` rows (stride 2), so3 and so2, lifting and harmonic, beside
    a dense ``nn.ConvTranspose3d`` and escnn's ``R3ConvTransposed``."""
    shapes = ((1, 3),) if quick else ((1, 3), (2, 5))
    return (_steerable_rows("so3", shapes, 8, peer, transposed=True)
            + _steerable_rows("so2", ((2, 3),), 8, peer, transposed=True))


def _steerable_rows(group: str, shapes, s: int, peer: bool, transposed: bool = False
                    ) -> list[BenchCase]:
    """Per ``(order, k)`` of ``shapes``: a lifting and a harmonic ``SteerableConv3d`` of
    ``group`` (8 fields, ``s^3``, training mode), their dense floor and escnn's twin;
    ``transposed``: ``SteerableConvTranspose3d`` at stride 2, a dense ``nn.ConvTranspose3d``
    and escnn's ``R3ConvTransposed``."""
    from equilayers.groups import get
    from equilayers.nn import SteerableConv3d, SteerableConvTranspose3d

    cls = SteerableConvTranspose3d if transposed else SteerableConv3d
    dense_cls = nn.ConvTranspose3d if transposed else nn.Conv3d
    st = 2 if transposed else 1

    c = 8
    out: list[BenchCase] = []
    for order, k in shapes:
        f = get(group).harmonic_size(order)
        for l_in in (None, order):
            f_in = 1 if l_in is None else f
            kind = "lifting" if l_in is None else "harmonic"
            tag = (f"{'transposed ' if transposed else ''}{kind} {group} L{order} k{k} "
                   f"{'s2 ' if transposed else ''}{s}^3 train b{B} c{c}")
            params = dict(kind=f"{'transposed ' if transposed else ''}{kind}", group=group,
                          k=k, size=s, mode="train", batch=B, fields=c, max_order=order)
            flat = (B, c * f_in, s, s, s)
            ours_shape = flat if l_in is None else (B, c, f_in, s, s, s)
            floor = f"floor {tag}"

            def build(l_in=l_in, order=order, k=k):
                return cls(c, c, k, stride=st, padding=k // 2, group=group,
                           in_max_order=l_in, max_order=order)

            def dense(f_in=f_in, f=f, k=k):
                return dense_cls(c * f_in, c * f, k, stride=st, padding=k // 2)
            out.append(BenchCase(floor, FAMILY, _make(dense, flat, "train"), construct=dense,
                                 params=params))
            out.append(BenchCase(f"ours {tag}", FAMILY, _make(build, ours_shape, "train"),
                                 floor=floor, construct=build, params=params))
            if peer:
                pb, wrap = _escnn_harmonic(l_in, order, c, k, group, transposed)
                out.append(BenchCase(f"escnn {tag}", FAMILY,
                                     _make_peer(pb, wrap, flat, "train"), floor=floor,
                                     peer="escnn", construct=pb, params=params))
    return out


def _transposed(kind: str, group: str, c: int, k: int):
    from equilayers.nn import GroupConvTranspose3d, LiftingConvTranspose3d
    cls = LiftingConvTranspose3d if kind == "lifting" else GroupConvTranspose3d
    return lambda: cls(c, c, k, stride=2, padding=1, group=group)


def transposed_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """``LiftingConvTranspose3d`` / ``GroupConvTranspose3d`` k3 stride 2 padding 1 (``n -> 2n -
    1``, the decoder's upsampling) against a dense ``nn.ConvTranspose3d`` with the same
    expanded channels, training mode, batch 4, inputs ``4^3`` and ``8^3``."""
    k, c = 3, C
    out: list[BenchCase] = []
    for kind in ("lifting", "group"):
        for group in ("o", "c4z"):
            n = _ORDER[group]
            c_in = c if kind == "lifting" else c * n
            for s in (4,) if quick else (4, 8):
                tag = f"transposed {kind} {group} k{k} s2 {s}^3 train b{B} c{c}"
                params = dict(kind=f"transposed {kind}", group=group, k=k, size=s,
                              mode="train", batch=B, fields=c)
                flat = (B, c_in, s, s, s)
                ours_shape = flat if kind == "lifting" else (B, c, n, s, s, s)
                floor = f"floor {tag}"

                def dense(c_in=c_in, n=n):
                    return nn.ConvTranspose3d(c_in, c * n, k, stride=2, padding=1)
                out.append(BenchCase(floor, FAMILY, _make(dense, flat, "train"),
                                     construct=dense, params=params))
                ours = _transposed(kind, group, c, k)
                out.append(BenchCase(f"ours {tag}", FAMILY, _make(ours, ours_shape, "train"),
                                     floor=floor, construct=ours, params=params))
                if peer:
                    build, wrap = _escnn_regular(kind, group, c, k, transposed=True)
                    out.append(BenchCase(f"escnn {tag}", FAMILY,
                                         _make_peer(build, wrap, flat, "train"), floor=floor,
                                         peer="escnn", construct=build, params=params))
    return out


def ico_cases(quick: bool, peer: bool) -> list[BenchCase]:
    """``"ico"`` (60 slots, turned harmonic filters): lifting and group convs, 2 fields, k3,
    training mode, batch 2 at ``8^3`` (and ``12^3`` unless quick); escnn's ``R3Conv`` on
    ``icoOnR3()`` regular fields beside them (its construction, 5-40 s, is timed by the
    construction3d family, not here)."""
    k, c, b, n = 3, 2, 2, 60
    out: list[BenchCase] = []
    for kind in ("lifting", "group"):
        c_in = c if kind == "lifting" else c * n
        for s in (8,) if quick else (8, 12):
            tag = f"{kind} ico k{k} {s}^3 train b{b} c{c}"
            params = dict(kind=kind, group="ico", k=k, size=s, mode="train", batch=b, fields=c)
            flat = (b, c_in, s, s, s)
            shape = flat if kind == "lifting" else (b, c, n, s, s, s)
            floor = f"floor {tag}"
            ours = _ours(kind, "ico", c, k, "harmonic")
            out.append(BenchCase(floor, FAMILY, _make(_floor(c_in, c * n, k), flat, "train"),
                                 construct=_floor(c_in, c * n, k), params=params))
            out.append(BenchCase(f"ours {tag}", FAMILY, _make(ours, shape, "train"),
                                 floor=floor, construct=ours, params=params))
            if peer:
                build, wrap = _escnn_regular(kind, "ico", c, k)
                out.append(BenchCase(f"escnn {tag}", FAMILY,
                                     _make_peer(build, wrap, flat, "train"), floor=floor,
                                     peer="escnn", params=params))
    return out


def cases(quick: bool) -> list[BenchCase]:
    """Every row: the cube groups' (:func:`regular_cases`), their transposed convs
    (:func:`transposed_cases`), SO(3)'s (:func:`steerable_cases`), SO(2) about the depth
    axis (:func:`axial_cases`), the transposed steerable convs
    (:func:`steerable_transposed_cases`) and the icosahedral group's (:func:`ico_cases`);
    escnn's where it imports."""
    peer = importlib.util.find_spec("escnn") is not None
    return (regular_cases(quick, peer) + transposed_cases(quick, peer)
            + steerable_cases(quick, peer) + axial_cases(quick, peer)
            + steerable_transposed_cases(quick, peer) + ico_cases(quick, peer))
