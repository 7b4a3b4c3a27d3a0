"""Group convolutions on voxels: lifting (volume -> group fields) and group (fields -> fields)
correlations for the cube's groups O, O_h, C4z and D4z (:mod:`equilayers.groups._cubic`),
with full ``k x k x k`` voxel filters.

Math (cross-correlation, as ``F.conv3d``), the 3-D analogue of :mod:`._gconv`'s pixel basis.
A lifting filter ``psi[o, c]`` is a ``k x k x k`` volume; a group filter is a regular field
``(|G|, k, k, k)`` per (out field, in field). The expanded filter stacks, for every group
element ``g`` (the output slot), the filter transformed by ``g``:

    W[o, g, c] = g . psi[o, c]        (``act(psi, g, "trivial")`` or ``act(psi, g, "regular")``)

so ``out[o, g] = sum_c in[c] (*) W[o, g, c]`` and ``conv(u . in) = u . conv(in)`` exactly
whenever the sampling grid maps onto itself (:func:`exactness_problems3d`). Every element is
a signed permutation of the voxels, so ``g . psi`` is a permutation of ``psi``'s entries.

Layout: the expanded filter is ``(C_out * |G|, C_in * F_in // groups, k, k, k)``, fields
major and slots minor on both sides, so ``F.conv3d`` on ``x.reshape(B, C_in * F_in, D, H,
W)`` followed by ``reshape(B, C_out, |G|, D', H', W')`` is the group convolution. It is built
by one ``index_select`` through a table ``(|G|, F_in * k^3)`` (the group action applied to
``arange``, computed once per group and size and cached on the CPU): the table is the same for
every pair of fields, so it is ``C_out * C_in`` times smaller than a flat index. The functions
here take a weight's group axis one slot per element; the modules store it in the group's
Fourier basis (as the planar ones do), and ``GroupConv3d.voxel_filter()`` gives what these
functions take.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._cpu_cache import cpu_cache
from .._host import traced_ints
from ..groups import CubicGroup, Group, GroupLike, IcosahedralGroup, get
from ..groups._actions import grid_moves
from ..groups._cubic import CUBIC_GROUPS
from ..groups._group import inverse_cayley_table
from ..groups._transforms import axis_signs, element_rows, grid_ops
from ._fibers import one_pixel
from ._gconv import check_conv_input, check_weight_fiber, select
from ._grid_law import dim_breaks

__all__ = ["lifting_conv3d", "group_conv3d", "exactness_problems3d"]

PADDING_MODES = C.PADDING_MODES
_NAMES = ", ".join(repr(n) for n in CUBIC_GROUPS)


def check_cubic_group(group: GroupLike, what: str, *, ico: bool = False) -> CubicGroup:
    """The group, or an error naming ``group`` and the cube groups the 3-D convs take
    (``ico``: the modules' message, which names ``"ico"`` too, :func:`check_conv3d_group`)."""
    names = _NAMES + (" and the icosahedral 'ico', 'ih'" if ico else "")
    try:
        grp = get(group)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: group={group!r} is not a group ({e}); the 3-D convs take the "
                      f"cube's groups {names}") from None
    if isinstance(grp, IcosahedralGroup):
        raise ValueError(f"{what}: group={grp.name!r} turns filters off the voxel grid, so "
                         "they are continuous functions, not voxel arrays: use LiftingConv3d / "
                         f"GroupConv3d(..., group={grp.name!r}) (basis='harmonic'), whose "
                         "expanded_filter() F.conv3d takes")
    if not grp.is_finite:
        raise ValueError(f"{what}: group={grp.name!r} is continuous: its fields are harmonic, "
                         "not regular; use SteerableConv3d / steerable_conv3d "
                         "(SteerableConvTranspose3d for a transposed conv); the 3-D group "
                         f"convs take the cube's groups {names}")
    if not isinstance(grp, CubicGroup):
        hint = ("(use LiftingConv2d/GroupConv2d for images)" if grp.spatial_dim == 2 else
                "(a registered group of 3-D matrices is not one of them: its voxel filters "
                "are not built; Restrict, CosetPool, the pools and the harness take it)")
        raise ValueError(f"{what}: group={grp.name!r} acts on {grp.spatial_dim} spatial dims; "
                         f"the 3-D convs take the cube's groups {names} {hint}")
    return grp


def check_conv3d_group(group: GroupLike, what: str) -> Group:
    """A group the 3-D conv modules take: a cube group, or ``"ico"``/``"ih"`` (filters turned as
    continuous functions, :mod:`._ico_conv`); otherwise :func:`check_cubic_group`'s error."""
    try:
        grp = get(group)
    except (TypeError, ValueError):
        grp = None
    if isinstance(grp, IcosahedralGroup):
        return grp
    return check_cubic_group(group, what, ico=True)


def resolve_padding3d(padding, kernel_size: int | tuple[int, int, int], dilation, stride,
                      what: str = ""
                      ) -> tuple[int, int, int, int, int, int]:
    """``padding`` (int, three ints, ``"same"``, ``"valid"``) -> ``F.pad``'s 6-tuple
    ``(w_lo, w_hi, h_lo, h_hi, d_lo, d_hi)`` (:func:`equilayers._checks.conv_padding`:
    ``"same"`` puts the odd voxel on the high side, as ``nn.Conv3d``, and needs ``stride``
    1)."""
    C.check_same_padding(padding, C.check_triple(stride, "stride", what, minimum=1), what,
                         "nn.Conv3d")
    wl, wh, hl, hh, dl, dh = C.conv_padding(padding, kernel_size, dilation, what, dims=3)
    return (wl, wh, hl, hh, dl, dh)


def _spatial_block(group: CubicGroup, k: int) -> torch.Tensor:
    """``(|G|, k^3)``: ``act(arange(k^3).view(k, k, k), g, "trivial")`` for every element at
    once, read off the matrices (a Python loop over the elements cost a cold construction
    ~2 ms; tests/test_cubic.py compares the two). The moved filter is ``out[p] = in[A^T p]``
    at centred voxel coordinates ``p`` (doubled, to stay integers), ``A = D M D`` the
    element's matrix in index coordinates (:func:`~equilayers.groups._transforms.grid_ops`;
    coordinate ``i`` runs along tensor dim ``-(i + 1)``)."""
    mats = torch.tensor([g.rows for g in group.elements()], dtype=torch.long, device="cpu")
    signs = torch.tensor(axis_signs(3), dtype=torch.long, device="cpu")
    a_t = (signs[:, None] * mats * signs[None, :]).transpose(1, 2)
    r = torch.arange(k, dtype=torch.long, device="cpu")
    # every position, row-major over (D, H, W), as coordinates (x, y, z) = (W, H, D) indices
    idx = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).flip(-1)
    src = ((a_t[:, None] * (2 * idx - (k - 1))[None, :, None, :]).sum(-1) + (k - 1)) // 2
    return (src[..., 2] * k + src[..., 1]) * k + src[..., 0]


@cpu_cache(maxsize=256)
def _block_cpu(group: CubicGroup, fiber_in: int, k: int) -> torch.Tensor:
    """``(|G|, F_in * k^3)``: row ``g`` lists, for each entry of ``g . psi``, the entry of
    ``psi`` (a ``(F_in, k, k, k)`` filter, flattened) it comes from."""
    if fiber_in == 1:
        return _spatial_block(group, k)
    # (the lifting table's rows: a group conv's init reads that table too, white_map)
    spatial = _block_cpu(group, 1, k)
    # the regular action permutes the fiber (row g of the inverse Cayley table: slot f of
    # g . psi comes from slot g^-1 f) and moves every slot alike: entry (f, p) comes from
    # (perm_g[f], spatial_g[p])
    perm = inverse_cayley_table(group)  # (|G|, |G|)
    return (perm[:, :, None] * k ** 3 + spatial[:, None, :]).reshape(len(perm), -1)


def expansion_table(group: GroupLike, kernel_size: int, *, lifting: bool,
                    in_channels: int = 1, device: torch.device | str | None = None
                    ) -> torch.Tensor:
    """The gather table ``(|G|, C_in, F_in * k^3)`` of :func:`expand_filter3d` for a weight
    with ``in_channels`` input fields per output field (``C_in // groups``; ``F_in`` is 1 for
    a lifting filter, ``|G|`` for a group filter), on ``device``: entry ``[g, c, p]`` is the
    position, in one output field's flattened weight ``(C_in, F_in, k, k, k)``, of the value
    that lands at entry ``p`` of input field ``c``'s block of ``g . psi``."""
    grp = check_cubic_group(group, "expansion_table")
    block = _block_cpu(grp, 1 if lifting else int(grp.order), int(kernel_size))
    c = C.check_int(in_channels, "in_channels", "expansion_table", minimum=1)
    per = block.shape[1]
    table = (torch.arange(c, dtype=torch.long, device="cpu")[None, :, None] * per
             + block[:, None, :])
    return table.to(device) if device is not None else table


def expand_filter3d(weight: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in, [F_in,] k, k, k)`` -> ``(C_out * |G|, C_in * F_in, k, k, k)`` with
    block ``[o, g, c] = g . weight[o, c]``: one ``index_select`` along each output field's
    flattened weight through ``table`` (:func:`expansion_table`, already in the expanded
    filter's ``(g, c, entry)`` order, so no transpose copy follows). Its backward is one
    ``index_add`` into the weight's shape. (A ``torch.gather`` on the broadcast weight, an
    earlier form, has a backward through a zero tensor of the expanded size; the form before
    this one selected per field pair and then moved the group axis, one copy more: C4z 4 -> 4
    k3 at 8^3, forward+backward of the conv 1.26 -> ~1.1x the dense ``nn.Conv3d``, in one-off
    interleaved timings.)"""
    c_out, k = weight.shape[0], weight.shape[-1]
    n, c_in, per = table.shape
    if isinstance(k, torch.Tensor):  # sizes traced as tensors (the legacy ONNX exporter): the
        c_out, k, n, c_in, per = traced_ints(c_out, k, n, c_in, per)  # filter's shape a constant
    y = select(weight.reshape(c_out, c_in * per), 1, table.reshape(-1))
    return y.reshape(c_out * n, c_in * (per // k ** 3), k, k, k)


def exactness_problems3d(group: GroupLike, size: tuple[int, int, int],
                         kernel_size: int | tuple[int, int, int],
                         stride, pad: tuple[int, ...], dilation, output_padding=None,
                         padding_mode: str | None = None,
                         taps: Sequence[int] | None = None) -> list[str]:
    """Why a 3-D conv window grid with these options is *not* exactly equivariant on a volume
    of spatial ``size`` ``(D, H, W)`` (empty list: exact). A dim that some element flips or
    moves needs symmetric padding and windows that tile the padded length from both ends,
    ``(n + pad_lo + pad_hi - (d*(k-1)+1)) % stride == 0``; dims that elements trade (H and W
    for c4z/d4z, all three for o/oh) need equal options, not equal sizes (a rotation permutes
    the sizes with the dims, as on the plane: see :func:`equilayers.functional.
    exactness_problems`). A transposed conv (``output_padding`` given, an int or three, as
    ``F.conv_transpose3d``'s; ``pad`` its cropping) is exact at every size with
    ``output_padding == 0`` on the moved dims, and not (but by coincidence) with more: it adds
    voxels at the high end only. ``padding_mode``: a dim whose windows a ``"reflect"``,
    ``"replicate"`` or ``"circular"`` padding maps onto their mirrors is exact whatever its
    padded grid (:func:`~equilayers.functional._grid_law.windows_coincide`; ``taps``: a blur's
    fixed weights). ``kernel_size``: an int, or three (a pool's box window ``(k_d, k_h, k_w)``:
    each dim is judged on its own, and dims the group trades need equal sizes)."""
    what = "exactness_problems3d"
    grp = check_cubic_group(group, what)
    sizes = C.check_triple(size, "size", what, minimum=1)
    ks = C.check_triple(kernel_size, "kernel_size", what, minimum=1)
    strides = C.check_triple(stride, "stride", what, minimum=1)
    dils = C.check_triple(dilation, "dilation", what, minimum=1)
    transposed = output_padding is not None
    ops = (C.check_triple(output_padding, "output_padding", what, minimum=0) if transposed
           else (0,) * 3)
    if padding_mode is not None:
        C.check_padding_mode(padding_mode, "padding_mode", what, C.PADDING_MODES)
    if not (isinstance(pad, (tuple, list)) and len(pad) == 6
            and all(C.is_int(p) and p >= 0 for p in pad)):
        raise TypeError(f"{what}: pad={pad!r} must be six integers >= 0 (F.pad's w_lo, w_hi, "
                        "h_lo, h_hi, d_lo, d_hi)")
    names = ("depth", "height", "width")
    moved, _ = grid_moves(grp)
    out: list[str] = []
    padded: list[str] = []  # a transposed conv's output padding on a moved dim
    opts = {}
    for i, name in enumerate(names):  # dim -(3 - i)
        lo, hi = pad[2 * (2 - i)], pad[2 * (2 - i) + 1]
        n, s, d = sizes[i], strides[i], dils[i]
        opts[i] = (s, d, lo, hi, ops[i])
        if -(3 - i) not in moved:
            continue
        extent = d * (ks[i] - 1) + 1
        for brk in dim_breaks(n, extent, s, lo, hi, padding_mode=padding_mode, taps=taps,
                              output_padding=ops[i] if transposed else None):
            if brk.problem == "asymmetric-padding":
                out.append(f"asymmetric {name} padding ({lo}, {hi}): use an odd kernel or "
                           "symmetric padding")
            elif brk.problem == "output-padding":
                padded.append(f"{name} {ops[i]}")
            else:
                rem = brk.remainder
                out.append(f"stride {s} does not tile the padded {name} {n}+{lo}+{hi} from "
                           f"both ends (remainder {rem}): use a {name} of {n + s - rem} (n + "
                           f"{lo} + {hi} - {extent} divisible by {s})")
    if padded:
        out.append(f"output_padding ({', '.join(padded)}) adds voxels at the high end only, so "
                   "the output grid is not centred on the input's: use output_padding=0 (k=3, "
                   "stride 2, padding 1 maps n -> 2n-1; k=4, stride 2, padding 1 doubles)")
    uneven = [f"{names[a]}/{names[b]}" for a, b in _traded(grp) if ks[a] != ks[b]]
    if uneven:
        out.append(f"{grp.name} trades {', '.join(uneven)}, but the window is "
                   f"{'x'.join(map(str, ks))} (D x H x W): use equal window sizes on those dims")
    for a, b in _traded(grp):
        if opts[a] != opts[b]:
            out.append(f"{grp.name} trades the {names[a]} and {names[b]} dims, but their "
                       f"stride/dilation/padding{'/output_padding' if transposed else ''} "
                       f"differ ({opts[a][:5 if transposed else 4]} vs "
                       f"{opts[b][:5 if transposed else 4]}): use equal ones")
    return out


def _traded(grp: CubicGroup) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of dims (0 depth, 1 height, 2 width) that some element exchanges."""
    pairs: set[tuple[int, int]] = set()
    for g in grp.elements():
        _, source = grid_ops(element_rows(grp, g))
        for k, j in enumerate(source):  # coordinate k (dim -(k+1)) from coordinate j
            if j != k:
                pairs.add((min(2 - k, 2 - j), max(2 - k, 2 - j)))
    return sorted(pairs)


def check_fits(x: torch.Tensor, k: int | tuple[int, int, int], pad, dils: tuple[int, int, int],
               padding_mode: str, what: str) -> None:
    sizes = x.shape[-3:]
    ks = (k,) * 3 if isinstance(k, int) else k
    for i in range(3):
        lo, hi = pad[4 - 2 * i], pad[5 - 2 * i]
        n = sizes[i]
        if n + lo + hi < dils[i] * (ks[i] - 1) + 1 or (padding_mode != "zeros" and (
                (padding_mode == "reflect" and max(lo, hi) >= n)
                or (padding_mode == "circular" and max(lo, hi) > n))):
            _raise_fit(x, i, ks[i], lo, hi, dils[i], padding_mode, what)


def _raise_fit(x: torch.Tensor, i: int, k: int, lo: int, hi: int, dil: int, padding_mode: str,
               what: str) -> None:
    name, n, extent = ("depth", "height", "width")[i], x.shape[-3 + i], dil * (k - 1) + 1
    if n + lo + hi < extent:
        raise ValueError(f"{what}: the input's {name} {n} (+ padding {lo} + {hi}) "
                         f"is smaller than the dilated kernel ({extent}); got x of shape "
                         f"{tuple(x.shape)}")
    bound = "<" if padding_mode == "reflect" else "<="
    raise ValueError(f"{what}: padding_mode={padding_mode!r} needs padding {bound} the input's "
                     f"{name} {n}; got padding ({lo}, {hi}) for x of shape {tuple(x.shape)}")


def conv3d_expanded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    fiber_out: int, stride=1, pad: tuple[int, ...] = (0,) * 6, dilation=1,
                    groups: int = 1, padding_mode: str = "zeros", *,
                    what: str = "conv3d", checked: bool = False) -> torch.Tensor:
    """One ``F.conv3d`` with an expanded filter: ``(B, C_in, [F_in,] D, H, W)`` ->
    ``(B, C_out, F_out, D', H', W')``. ``bias`` is one value per output field ``(C_out,)``
    (added to every slot) or per output slot ``(C_out * F_out,)``. ``checked``: the caller has
    run :func:`check_fits` on an input of ``x``'s shape with these options (and passes
    ``stride``/``dilation`` as triples)."""
    if not checked:
        stride = C.check_triple(stride, "stride", what)
        dilation = C.check_triple(dilation, "dilation", what)
        check_fits(x, (weight.shape[-3], weight.shape[-2], weight.shape[-1]), pad, dilation,
                   padding_mode, what)
    # a group map's fields and slots are the conv's channels (one view; a volume as it is)
    x5 = x if x.dim() == 5 else x.flatten(1, 2)
    if padding_mode == "zeros" and pad[0] == pad[1] and pad[2] == pad[3] and pad[4] == pad[5]:
        conv_pad = (pad[4], pad[2], pad[0])
    else:
        mode = "constant" if padding_mode == "zeros" else padding_mode
        x5 = F.pad(x5, pad, mode=mode)
        conv_pad = (0, 0, 0)
    if bias is not None and bias.shape[0] != weight.shape[0]:
        bias = bias.repeat_interleave(fiber_out)
    y = one_pixel(x5, weight, bias) if groups == 1 and conv_pad == (0, 0, 0) else None
    if y is None:
        y = F.conv3d(x5, weight, bias, stride, conv_pad, dilation, groups)
    return y.unflatten(1, (weight.shape[0] // fiber_out, fiber_out))


def check_input3d(x: torch.Tensor, lifting: bool, channels: int, fiber: int, what: str) -> None:
    """``x`` is a floating ``(B, C_in, D, H, W)`` volume (lifting) or a ``(B, C_in, |G|, D,
    H, W)`` regular field, with ``channels`` channels (and ``fiber`` slots): the group convs'
    one input rule (:func:`._gconv.check_conv_input`) on volumes."""
    check_conv_input(x, 5 if lifting else 6, channels, fiber, what, spatial=3)


def check_conv3d_args(what: str, weight, bias, stride, dilation, groups, padding_mode,
                      lifting: bool, grp: CubicGroup) -> None:
    """The arguments of :func:`lifting_conv3d` / :func:`group_conv3d`."""
    C.check_triple(stride, "stride", what, minimum=1)
    C.check_triple(dilation, "dilation", what, minimum=1)
    C.check_int(groups, "groups", what, minimum=1)
    C.check_padding_mode(padding_mode, "padding_mode", what, PADDING_MODES)
    C.check_tensor(weight, "weight", what)
    ndim = 5 if lifting else 6
    layout = ("(C_out, C_in // groups, k, k, k)" if lifting
              else "(C_out, C_in // groups, |G|, k, k, k)")
    if weight.dim() != ndim:
        raise ValueError(f"{what}: weight must be {ndim}-D {layout}; got shape "
                         f"{tuple(weight.shape)}")
    if len(set(weight.shape[-3:])) != 1:
        raise ValueError(f"{what}: weight must have a cubic kernel k x k x k (the group "
                         f"permutes its axes); got shape {tuple(weight.shape)}")
    if not lifting:
        check_weight_fiber(weight, grp, what)
    C.check_weight_groups(weight, groups, what)
    C.check_bias(bias, (weight.shape[0],), what, per="output field")


def checked_filter3d(x, weight, bias, stride, dilation, groups, padding_mode, group,
                     lifting: bool, what: str) -> tuple[torch.Tensor, int]:
    """Check the arguments of a functional 3-D group conv (forward or transposed) and expand
    its filter: ``(expanded filter (C_out * |G|, C_in * F_in // groups, k, k, k), |G|)``."""
    grp = check_cubic_group(group, what)
    check_conv3d_args(what, weight, bias, stride, dilation, groups, padding_mode, lifting, grp)
    n = int(grp.order)
    check_input3d(x, lifting, weight.shape[1] * groups, n, what)
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    return expand_filter3d(weight, expansion_table(grp, weight.shape[-1], lifting=lifting,
                                                   in_channels=weight.shape[1],
                                                   device=weight.device)), n


def _conv(x, weight, bias, stride, padding, dilation, groups, padding_mode, group,
          lifting: bool, what: str) -> torch.Tensor:
    filt, n = checked_filter3d(x, weight, bias, stride, dilation, groups, padding_mode, group,
                               lifting, what)
    pad = resolve_padding3d(padding, weight.shape[-1], dilation, stride, what)
    return conv3d_expanded(x, filt, bias, n, stride, pad, dilation, groups, padding_mode,
                           what=what)


def lifting_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   stride=1, padding=0, dilation=1, groups: int = 1,
                   padding_mode: str = "zeros", *, group: GroupLike = "o") -> torch.Tensor:
    """Lifting correlation of volumes ``(B, C_in, D, H, W) -> (B, C_out, |G|, D', H', W')``
    for a cube group (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``).

    ``weight`` ``(C_out, C_in // groups, k, k, k)``, ``bias`` ``(C_out,)`` (one value per
    field); the other arguments as ``F.conv3d`` (``padding`` also ``"same"``/``"valid"``,
    ``padding_mode`` as ``nn.Conv3d``). Slot ``g`` of the output correlates with the filter
    moved by ``g``; see :class:`~equilayers.nn.LiftingConv3d`.

    A ``LiftingConv3d(..., basis="harmonic")`` stores coefficients ``(C_out, C_in // groups,
    n)``; its forward is this function of the voxel filters ``torch.tensordot(weight,
    harmonic_voxel_basis(k, sigma=..., frequencies_cutoff=..., rings=...), 1)`` (the layer's
    settings, :func:`~equilayers.functional.harmonic_voxel_basis`).

    Example:
        >>> import torch
        >>> lifting_conv3d(torch.randn(1, 2, 5, 5, 5), torch.randn(3, 2, 3, 3, 3),
        ...                padding=1, group="c4z").shape
        torch.Size([1, 3, 4, 5, 5, 5])
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, padding_mode, group, True,
                 "lifting_conv3d")


def group_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride=1, padding=0, dilation=1, groups: int = 1,
                 padding_mode: str = "zeros", *, group: GroupLike = "o") -> torch.Tensor:
    """Group correlation of regular fields of a cube group
    ``(B, C_in, |G|, D, H, W) -> (B, C_out, |G|, D', H', W')``.

    ``weight`` ``(C_out, C_in // groups, |G|, k, k, k)`` (one slot per element, in
    ``group.elements()`` order), ``bias`` ``(C_out,)``; the rest as :func:`lifting_conv3d`.
    Slot ``g`` correlates with the filter moved by ``g`` as a regular field,
    ``(g . psi)[h] = g . psi[g^-1 h]``; see :class:`~equilayers.nn.GroupConv3d`, whose weight
    holds the group axis in the group's Fourier basis (and, with ``basis="harmonic"``, basis
    coefficients): its forward is this function of ``layer.voxel_filter()``, not of
    ``layer.weight``.

    Example:
        >>> import torch
        >>> group_conv3d(torch.randn(1, 2, 4, 5, 5, 5), torch.randn(3, 2, 4, 3, 3, 3),
        ...              padding=1, group="c4z").shape
        torch.Size([1, 3, 4, 5, 5, 5])
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, padding_mode, group,
                 False, "group_conv3d")
