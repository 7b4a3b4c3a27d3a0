"""Running a model to see its layers: which leaves take spatial maps, which slide windows over
volumes, the spatial size each leaf sees on a given input (:func:`_record_sizes`), and the
window each leaf slides at that size (:func:`_spatial_params`, :func:`_sized_params`,
:func:`_pad_params`), for :func:`equilayers.check_grid` (``_grid.py``, ``_grid3d.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from . import _checks as C
from ._grid_types import TypeFlow
from ._modes import kept_modes
from .groups import FieldType
from .nn import LearnablePolyphasePool2d, PolyphasePool3d, PolyphaseUpsample3d
from .nn._exactness import _WarnsInexact, quiet_exactness_warnings

__all__: list[str] = []


def _spatial(mod: nn.Module, x: torch.Tensor, nd: int = 2) -> bool:
    """Whether ``x``, the input of ``mod``, has ``nd`` spatial dims: by the module's
    ``in_type`` where it declares one, else by rank (``nd + 1`` dims and more)."""
    declared = getattr(mod, "in_type", None)
    if isinstance(declared, FieldType):
        return declared.rep != "invariant"
    return x.dim() >= nd + 1


def _spatial_out(mod: nn.Module, out: torch.Tensor, nd: int) -> bool:
    """Whether ``out``, the output of ``mod``, ends in ``nd`` spatial dims by the module's
    declared ``out_type`` though its rank is not the input's: a lifting layer's group map
    (``LiftingConvTranspose2d``: ``(B, C, H, W) -> (B, C', F, H', W')``; 3-D: 5-D -> 6-D),
    whose call's ``output_size`` was read from nothing before (``check_grid`` returned ``[]``
    at p4 error 1.07)."""
    declared = getattr(mod, "out_type", None)
    return (isinstance(declared, FieldType) and declared.spatial_dims == nd
            and out.dim() >= nd + 1)


def fibers_alone(model: nn.Module) -> FieldType | None:
    """The model's declared input type (its own, or its first module's in a
    ``Sequential``) where it is a fiber alone, ``(B, C, F)``; else ``None``."""
    first = model[0] if isinstance(model, nn.Sequential) and len(model) > 0 else model
    declared = getattr(model, "in_type", None) or getattr(first, "in_type", None)
    if isinstance(declared, FieldType) and declared.has_fiber and declared.spatial_dims == 0:
        return declared
    return None


#: torch's windowed pools on volumes (its 3-D convs say so by their 3-tuple ``kernel_size``;
#: an adaptive pool has no window grid, and on a planar group map is a global pool)
_TORCH_POOLS_3D = (nn.MaxPool3d, nn.AvgPool3d, nn.LPPool3d, nn.FractionalMaxPool3d,
                   nn.MaxUnpool3d)


def _moves_depth(mod: nn.Module) -> bool:
    """Whether a torch 3-D window reaches across dim -3: not a ``(1, k, k)`` window at stride
    ``(1, s, s)`` without depth padding, which slides over ``(H, W)`` only (a planar group
    map's spatial pool, its group axis as depth)."""
    def first(name: str, trivial: int) -> bool:
        v = getattr(mod, name, trivial)
        v = v if v is not None else getattr(mod, "kernel_size", trivial)
        if isinstance(v, (tuple, list)) and len(v) == 6:  # a *Pad3d: (.., front, back)
            return tuple(v[4:]) != (0, 0)
        return (v[0] if isinstance(v, (tuple, list)) and v else v) != trivial
    return any(first(n, t) for n, t in (("kernel_size", 1), ("stride", 1), ("padding", 0),
                                        ("dilation", 1)))


def _depthless(mod: nn.Module):
    """The ``(H, W)`` part of a torch 3-D window's argument where the window does not reach
    across depth (:func:`_moves_depth`), else the argument as it is."""
    kernel = getattr(mod, "kernel_size", None)
    torch_3d = isinstance(mod, _TORCH_POOLS_3D) or (isinstance(kernel, tuple)
                                                     and len(kernel) == 3)
    if not torch_3d or _moves_depth(mod):
        return lambda v: v
    return lambda v: tuple(v[1:]) if isinstance(v, (tuple, list)) and len(v) == 3 else v


def _volume_windows(model: nn.Module) -> list[str]:
    """The leaves of ``model`` that slide or pad a window over volumes ``(D, H, W)``, which
    the planar checks cannot read: a module declaring 3 spatial dims with a window (the 3-D
    group convs and pools), a 3-D blur or polyphase pool, and torch's 3-D convs, pools and
    ``*Pad3d`` where their window reaches across depth."""
    out = []
    for name, mod in model.named_modules():
        if any(True for _ in mod.children()):
            continue
        declared = getattr(mod, "in_type", None)
        kernel = getattr(mod, "kernel_size", None)
        ours = (isinstance(mod, (PolyphasePool3d, PolyphaseUpsample3d))
                or getattr(mod, "_nd", None) == 3
                or (kernel is not None and isinstance(declared, FieldType)
                    and declared.spatial_dims == 3))
        torch_3d = (isinstance(mod, _TORCH_POOLS_3D) or type(mod).__name__.endswith("Pad3d")
                    or (isinstance(kernel, tuple) and len(kernel) == 3))
        if ours or (torch_3d and _moves_depth(mod)):
            out.append(type(mod).__name__ + (f" {name!r}" if name else ""))
    return out


def _record_sizes(model: nn.Module, shape: Sequence[int], nd: int = 2) -> Sizes:
    """The spatial size (the last ``nd`` dims) of the input of every leaf module, in call
    order, on an input of ``shape``: first on the meta device (shapes only, no arithmetic and
    no memory: the parameters and buffers stand in as meta tensors through
    ``torch.func.functional_call``), and where a module cannot run there (an ``.item()``, a
    tensor of its own on another device), by a forward of zeros. (Zeros only, before: the
    size search of ``check_grid`` forwarded up to ``search`` ever larger inputs, minutes for
    a 3-D model that no size fixes: a 3-D U-Net with ``output_padding=1``, O_h, 8^3 -> 72^3,
    took 197 s.)"""
    try:
        return _run_sizes(model, shape, nd, meta=True)
    except Exception as e:  # noqa: BLE001 (a size error raises again below, on zeros)
        if "meta" not in str(e).lower():
            raise
    return _run_sizes(model, shape, nd, meta=False)


class Sizes(list):
    """:func:`_record_sizes`'s ``(name, module, input size)`` per leaf call, and in
    ``outputs`` the spatial size of each call's output (``None`` where it returned no tensor
    of the input's rank, nor one whose spatial dims the module declares: a lifting layer's,
    :func:`_spatial_out`): what a call decides beyond the module's attributes (a transposed
    conv's ``output_size``, an upsampling's size)."""

    outputs: list[tuple | None]
    feeds: list  # TypeFlow's: the typed tensors each typed layer was fed
    pointwise: list  # TypeFlow's: the typed tensors each of torch's activations was fed


def _run_sizes(model: nn.Module, shape: Sequence[int], nd: int, meta: bool) -> Sizes:
    seen = Sizes()
    seen.outputs = []
    handles = []
    pending: dict[int, list[int]] = {}  # id(module) -> indices of its calls still running

    def pre(name):
        def hook(mod, args):
            if args and isinstance(args[0], torch.Tensor) and _spatial(mod, args[0], nd):
                pending.setdefault(id(mod), []).append(len(seen))
                seen.append((name, mod, tuple(args[0].shape[-nd:])))
                seen.outputs.append(None)
        return hook

    def post(mod, args, out):
        calls = pending.get(id(mod))
        if calls:
            i = calls.pop()
            if isinstance(out, torch.Tensor) and (out.dim() == args[0].dim()
                                                  or _spatial_out(mod, out, nd)):
                seen.outputs[i] = tuple(out.shape[-nd:])

    flow = TypeFlow(model)  # (first: its hooks run before the size hooks, on every call)
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    for name, mod in leaves:  # a model without children is its own (only) leaf
        handles.append(mod.register_forward_pre_hook(pre(name or type(mod).__name__)))
        handles.append(mod.register_forward_hook(post))
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x = torch.zeros(tuple(shape), dtype=dtype,
                    device="meta" if meta else p.device if p is not None else None)
    stand_ins = {n: torch.empty_like(t, device="meta")
                 for n, t in [*model.named_parameters(), *model.named_buffers()]}
    try:
        # quiet: the layers neither warn nor record a warning, so the model's own forward
        # at a bad size still warns later; each module's mode comes back as it was
        with kept_modes(model), torch.no_grad(), quiet_exactness_warnings(), \
                warnings.catch_warnings():
            model.eval()
            warnings.simplefilter("ignore")
            if meta:
                torch.func.functional_call(model, stand_ins, (x,))
            else:
                model(x)
    finally:
        for h in handles:
            h.remove()
        flow.remove()
    seen.feeds, seen.pointwise = flow.feeds, flow.pointwise
    return seen


#: check_grid's fix of an asymmetric padding that a layer builds in (an even blur:
#: ``BlurPool2d``, ``BlurPool3d``, ``MaxBlurPool2d``), which has no padding argument to change;
#: its windows read only as much padding as they reach, which the input size decides (the size
#: search, ``_grid_sizes``, names one).
SIZED_PADDING_FIX = ("an input size at which its windows reach as far past both ends (the "
                     "layer pads itself, by its even blur), or an odd blur size")


_CEIL_FIX = "an input size at which ceil_mode adds no window"


def ceil_fix(k: int, s: int, p: int) -> str:
    """check_grid's fix for a ``ceil_mode`` pool's extra window (window ``k``, stride ``s``,
    padding ``p``): a converted pool's or ``MaxBlurPool2d(ceil_mode=True)``'s."""
    return (f"{_CEIL_FIX} ((size + 2*{p} - {k}) % {s} == 0), or ceil_mode=False and circular "
            "padding before it")


def sized_fix(fix: str) -> bool:
    """Whether ``fix`` is that of a padding the input size decides: an even blur's built-in
    one (:data:`SIZED_PADDING_FIX`) or a ``ceil_mode`` window's (:func:`ceil_fix`)."""
    return fix == SIZED_PADDING_FIX or fix.startswith(_CEIL_FIX)


def _shift_part(part: tuple, extra: tuple[int, int], ceil: str | None) -> dict:
    """One window of a layer made of windows in turn (``MaxBlurPool2d._shift_windows``: its
    max, then its blur) as the circular-shift checks read it (``_grid_shifts``); a
    ``ceil_mode`` window's reach at this size (``extra``: bottom, right) pads its first window,
    by copies of the last row and column, and its fix is then ``ceil``."""
    what, k, s, (top, bottom, left, right), mode = part
    first = what == "max"
    bottom, right = (bottom + extra[0], right + extra[1]) if first else (bottom, right)
    prm = {"k": (k, k), "s": (s, s), "sides": (top, bottom, left, right), "mode": mode,
           "padded_by": "layer", "label": what}
    if mode == "pool":  # the max pads with -inf (or not at all): circular padding comes first
        lo, hi = (k - 1) // 2, k - 1 - (k - 1) // 2
        spec = str(lo) if lo == hi else f"({lo}, {hi}, {lo}, {hi})"
        prm["bare_fix"] = prm["fix"] = (
            f"nn.CircularPad2d({spec}) before it and padding=0 (its max's windows then read "
            "circular padding; the max itself pads with -inf, never circularly)")
        if ceil is not None and any(extra):
            prm["fix"] = ceil
    return prm


def _spatial_params(mod: nn.Module, size: tuple[int, int]) -> dict | None:
    """Kernel, stride, padding (per side: top, bottom, left, right), dilation, padding mode of
    a conv- or pool-like module at input ``size``, by duck typing (``kernel_size`` and
    ``stride`` attributes)."""
    if isinstance(mod, _WarnsInexact) and type(mod)._sampling_window is not (
            _WarnsInexact._sampling_window):
        # a pool that states its window grid (the one its own warning checks): a blur's
        # padding, a max-then-blur pool's composite window, and a ceil_mode pool's extra
        # window's reach past it at this size (bottom and right)
        kernel, stride, sides, dilation = mod._sampling_window()
        try:
            k, s = C.check_pair(kernel, "kernel_size"), C.check_pair(stride, "stride")
            d = C.check_pair(dilation, "dilation")
        except (TypeError, ValueError):
            return None
        top, bottom, left, right = sides
        eh, ew = mod._ceil_extra(size)
        prm = {"k": (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1), "s": s,
               "sides": (top, bottom + eh, left, right + ew),
               "mode": getattr(mod, "padding_mode", "pool"), "padded_by": "layer",
               "transposed": False, "op": (0, 0), "sized": True,  # (its padding built in)
               "reads": None if eh or ew else mod._window_padding_mode(),
               "taps": None if eh or ew else mod._window_taps()}
        ceil_window = mod._ceil_window()
        ceil = ceil_fix(*ceil_window) if ceil_window is not None and (eh or ew) else None
        if ceil is not None:
            prm["fix"] = ceil
        parts = getattr(mod, "_shift_windows", None)
        if callable(parts):  # windows in turn (a max then a blur), read apart under shifts
            prm["parts"] = [_shift_part(part, (eh, ew), ceil) for part in parts()]
        return prm
    if not (hasattr(mod, "kernel_size") and hasattr(mod, "stride")):
        return None
    if isinstance(mod, LearnablePolyphasePool2d):  # (and its 3-D subclass, see _grid3d)
        # keeps a whole polyphase component (it takes only sizes its stride divides); its
        # kernel_size is the scoring filter's, a circular correlation, not a sampling window
        return None
    # a torch 3-D window that leaves depth alone, (1, k, k) on a planar group map (its group
    # axis as depth): its (H, W) part (it was skipped as "not a 2-D window")
    hw = _depthless(mod)
    try:
        k = C.check_pair(hw(mod.kernel_size), "kernel_size")
        s = C.check_pair(hw(mod.stride if mod.stride is not None else mod.kernel_size),
                         "stride")
        d = C.check_pair(hw(getattr(mod, "dilation", 1)), "dilation")
    except (TypeError, ValueError):  # not a 2-D window (a 1-D or 3-D layer): not checked
        return None
    ke = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    pad = hw(getattr(mod, "padding", 0))
    if pad == "valid":
        sides = (0, 0, 0, 0)
    elif pad == "same":  # torch pads the extra pixel at the end (bottom/right)
        sides = ((ke[0] - 1) // 2, ke[0] - 1 - (ke[0] - 1) // 2,
                 (ke[1] - 1) // 2, ke[1] - 1 - (ke[1] - 1) // 2)
    else:
        try:
            p = C.check_pair(pad, "padding")
        except (TypeError, ValueError):
            return None
        sides = (p[0], p[0], p[1], p[1])
    if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)) or "pool" in type(mod).__name__.lower():
        default_mode = "pool"
    else:
        default_mode = "zeros"
    mode = getattr(mod, "padding_mode", default_mode)
    transposed = getattr(mod, "transposed", False) is True  # nn.ConvTranspose2d, ours
    try:
        op = (C.check_pair(getattr(mod, "output_padding", 0), "output_padding") if transposed
              else (0, 0))
    except TypeError:
        return None
    return {"k": ke, "s": s, "sides": sides, "mode": mode, "padded_by": "layer",
            "transposed": transposed, "op": op,
            "reads": mode if default_mode == "zeros" and not transposed else None}


def _sized_params(mod: nn.Module, size: tuple[int, int]) -> dict | None:
    """The window of a module whose padding depends on its input's ``size`` and says so by a
    ``_grid_window(size)`` method (a converted ``ceil_mode`` pool's extra window):
    ``(kernel, stride, (top, bottom, left, right), padding mode, fix)``, ``fix`` what to do
    about its padding."""
    sized = getattr(mod, "_grid_window", None)
    window = sized(size) if callable(sized) else None
    if window is None:  # (a module may have no window in some modes)
        return None
    k, s, sides, mode, fix = window
    return {"k": k, "s": s, "sides": sides, "mode": mode, "padded_by": "layer",
            "transposed": False, "op": (0, 0), "fix": fix}


def _pad_params(mod: nn.Module) -> dict | None:
    """``nn.ZeroPad2d`` / ``ReflectionPad2d`` / ``CircularPad2d`` ... (left, right, top, bottom),
    or a pad module that says what it is by its attributes: ``padding`` as those four and a
    ``padding_mode``, without a ``stride`` (``antialias``'s ``_CircularPad``)."""
    name = type(mod).__name__
    pad = getattr(mod, "padding", None)
    mode = getattr(mod, "padding_mode", None)
    if not isinstance(pad, (tuple, list)) or len(pad) != 4:
        return None
    if name.endswith("Pad2d"):
        mode = "circular" if "Circular" in name else name.replace("Pad2d", "").lower()
    elif not isinstance(mode, str) or hasattr(mod, "stride"):
        return None
    left, right, top, bottom = (int(v) for v in pad)
    return {"k": (1, 1), "s": (1, 1), "sides": (top, bottom, left, right), "mode": mode,
            "padded_by": "module"}
