"""Model surgery: make the strided layers of any ``nn.Module`` anti-aliased."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple, cast, overload

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy

from . import _checks as C
from ._grid_runs import ceil_fix
from ._hooks import carry_hooks, copied, own_forward, without_hooks
from ._surgery_kept import ANTIALIASED, already_antialiased, other_strided, strided
from .functional._ceil_mode import ceil_extra, ceil_mode_pad
from .nn import BlurConv2d, BlurPool2d, MaxBlurPool2d, PolyphasePool2d
from .nn._exactness import warn_at_user

__all__ = ["antialias", "Replacement"]

_MODES = ("blur", "folded", "polyphase")


class Replacement(NamedTuple):
    """One layer replaced by :func:`antialias`: its qualified name, the old and the new
    module (with ``inplace=False``, ``old`` is the layer of the copy that was converted, not
    the user's own module: compare by ``name``)."""

    name: str
    old: nn.Module
    new: nn.Module


class _CircularPad(nn.Module):
    """Pad ``(k-1)//2`` before and the rest after, circularly, so a stride-1 window op of size
    ``k`` keeps the size (the polyphase path needs that)."""

    padding_mode = "circular"  # (with ``padding``: check_grid reads it as a pad module)

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)``, as ``nn.CircularPad2d``'s (derived, so a model
        pickled before it existed has it too)."""
        (kh, kw) = self.kernel_size
        th, tw = kh - 1, kw - 1
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.padding, mode="circular")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class _CeilModePad(nn.Module):
    """Kept only so that models pickled whole (``torch.save(model)``) after an earlier
    ``antialias()`` of a ``MaxPool2d(ceil_mode=True)`` still load and run: it converted that
    pool to ``Sequential(_CeilModePad, MaxBlurPool2d)``, and now builds
    ``MaxBlurPool2d(ceil_mode=True)`` (the same outputs). Pads the bottom and right with
    ``value`` by what the ``ceil_mode`` pool's extra window reaches past the input."""

    def __init__(self, kernel_size: int, stride: int, padding: int, value: float) -> None:
        super().__init__()
        self.pool_window, self.value = (kernel_size, stride, padding), value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.pool_window
        eh, ew = (ceil_extra(n, k, s, p) for n in x.shape[-2:])
        return F.pad(x, (0, ew, 0, eh), value=self.value) if eh or ew else x

    def _grid_window(self, size: tuple[int, int]):
        """For ``check_grid``: a 1 x 1 window padded at the bottom and right at ``size``."""
        k, s, p = self.pool_window
        eh, ew = (ceil_extra(n, k, s, p) for n in size)
        return (1, 1), (1, 1), (0, eh, 0, ew), "constant", ceil_fix(k, s, p)


class _CeilModeAvgPool(nn.Module):
    """``nn.AvgPool2d(k, s, p, ceil_mode=True, count_include_pad)``'s averages at stride 1:
    each window's sum over the input (zero outside it) divided by torch's count for it (the
    window's pixels inside the padded input with ``count_include_pad``, inside the input
    without), over the windows up to the last one ``ceil_mode`` adds; a blur pool at stride
    ``s`` then gives torch's ``ceil_mode`` output size."""

    def __init__(self, kernel_size: int, stride: int, padding: int,
                 count_include_pad: bool) -> None:
        super().__init__()
        # (check_grid reads _grid_window: the pool's window at stride 1, the stride is the
        # blur pool's after it)
        self.kernel_size, self.padding = kernel_size, padding
        self.pool_stride, self.count_include_pad = stride, count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size, self.pool_stride, self.padding
        (h, w), (eh, ew) = x.shape[-2:], [ceil_extra(n, k, s, p) for n in x.shape[-2:]]
        sums = F.avg_pool2d(ceil_mode_pad(x, k, s, p, "zeros"), k, 1, p,
                            count_include_pad=True)

        def count(n: int, e: int) -> torch.Tensor:  # counted pixels per window, one dim
            lo, hi = (0, n + 2 * p) if self.count_include_pad else (p, n + p)
            mask = torch.zeros(n + e + 2 * p, dtype=x.dtype, device=x.device)
            mask[lo:hi] = 1
            return mask.unfold(0, k, 1).sum(-1)

        return sums * (k * k) / (count(h, eh)[:, None] * count(w, ew))

    def _grid_window(self, size: tuple[int, int]):
        """For ``check_grid``: the stride-1 window, padded by ``padding`` and at the bottom and
        right by the extra window's reach at input ``size``."""
        k, s, p = self.kernel_size, self.pool_stride, self.padding
        eh, ew = (ceil_extra(n, k, s, p) for n in size)
        return (k, k), (1, 1), (p, p + eh, p, p + ew), "pool", ceil_fix(k, s, p)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.pool_stride}, "
                f"padding={self.padding}, count_include_pad={self.count_include_pad}")


def _not_size_over_stride(m: nn.Module, k: int, s: int, p: int | None) -> str | None:
    """Why ``mode="polyphase"`` leaves pool ``m`` alone (``None``: it converts): its
    polyphase stand-in gives ``size / s`` at every size ``s`` divides, so ``m`` must too
    (torch's output size, ``ceil_mode`` included, at two such sizes; e.g. ``MaxPool2d(3, 2)``
    gives 7 at 16)."""
    for n in (8 * s, 9 * s):
        if p is None:
            return f"{type(m).__name__} with unequal padding"
        ceil = bool(m.ceil_mode)
        out = (n + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
        if ceil and (out - 1) * s >= n + p:  # torch drops a last window that starts past it
            out -= 1
        if out != n // s:
            return (f"{type(m).__name__} whose output is not size / stride ({n} -> {out} at "
                    f"stride {s}: 2 * padding must lie in kernel_size - stride .. kernel_size "
                    "- 1); polyphase pooling gives size / stride")
    return None


def _uniform(v, name: str) -> int | None:
    a, b = C.check_pair(v, name, "antialias")
    return a if a == b else None


def _own_pool_forward(m: nn.Module, new: str) -> str | None:
    """Why a pool subclass with a forward of its own (timm's ``MaxPool2dSame``: TF "same"
    padding computed per call) is left alone: the replacement would not compute it (its
    output shape changed and the next layer failed)."""
    own = own_forward(m, "torch.")
    if own is None:
        return None
    base = "MaxPool2d" if isinstance(m, nn.MaxPool2d) else "AvgPool2d"
    where = "" if own == type(m).__name__ else f" (in {own})"
    return (f"{type(m).__name__}, a subclass of {base} with a forward of its own{where}, which "
            f"a {new} would not compute; put a BlurPool2d after a stride-1 copy of it by hand")


def _convert(m: nn.Module, mode: str, blur_size: int, place: dict) -> nn.Module | str | None:
    """The replacement of ``m``, ``None`` when ``m`` is not a strided layer, or a string saying
    why a strided layer is left alone. ``place`` (``device``, ``dtype``) places the new
    modules' filters; a converted conv keeps ``m``'s own ``weight`` and ``bias`` objects."""
    if isinstance(m, ANTIALIASED):
        return already_antialiased(m, mode, blur_size)
    if isinstance(m, (nn.Conv1d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool3d, nn.AvgPool1d,
                      nn.AvgPool3d)):
        if strided(m):
            dim = "1-D" if isinstance(m, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)) else "3-D"
            return (f"a strided {dim} {type(m).__name__}: antialias() rewrites 2-D layers; put "
                    f"a BlurPool{dim[0]}d after a stride-1 copy of it by hand")
        return None
    if isinstance(m, nn.MaxPool2d):
        stride = C.check_pair(m.kernel_size if m.stride is None else m.stride, "stride",
                              "antialias")
        if stride == (1, 1):
            return None
        if (why := _own_pool_forward(m, "MaxBlurPool2d")) is not None:
            return why
        s, k, p = (_uniform(stride, "stride"), _uniform(m.kernel_size, "kernel_size"),
                   _uniform(m.padding, "padding"))
        dilated = C.check_pair(m.dilation, "dilation", "antialias") != (1, 1)
        if s is None or k is None or p is None:
            return ("MaxPool2d with unequal sizes (kernel_size, stride or padding differ "
                    "between height and width): put a BlurPool2d after a stride-1 copy by hand")
        if dilated:
            return ("a dilated MaxPool2d: MaxBlurPool2d has no dilation; put a BlurPool2d "
                    "after a stride-1 copy by hand")
        if m.return_indices:
            return ("MaxPool2d(return_indices=True): the indices of a blurred pool would not "
                    "point at the maxima an unpooling expects; keep it, or drop the indices")
        if mode != "polyphase":
            return MaxBlurPool2d(k, s, p, ceil_mode=bool(m.ceil_mode), blur_size=blur_size,
                                 **place)
        if (why := _not_size_over_stride(m, k, s, p)) is not None:
            return why
        return nn.Sequential(_CircularPad((k, k)), nn.MaxPool2d(k, 1),
                             PolyphasePool2d(s, blur_size=blur_size))
    if isinstance(m, nn.AvgPool2d):
        stride = C.check_pair(m.kernel_size if m.stride is None else m.stride, "stride",
                              "antialias")
        if stride == (1, 1):
            return None
        if (why := _own_pool_forward(m, "blurred AvgPool2d")) is not None:
            return why
        s, k = _uniform(stride, "stride"), _uniform(m.kernel_size, "kernel_size")
        p = _uniform(m.padding, "padding")
        if s is None or k is None or (m.ceil_mode and p is None):
            return ("AvgPool2d with unequal sizes (kernel_size, stride or padding differ "
                    "between height and width): put a BlurPool2d after a stride-1 copy by hand")
        if m.divisor_override is not None:
            return ("AvgPool2d(divisor_override=...): put a BlurPool2d after a stride-1 copy "
                    "of it by hand")
        if mode != "polyphase":
            avg = (_CeilModeAvgPool(k, s, cast(int, p), m.count_include_pad) if m.ceil_mode
                   else nn.AvgPool2d(k, 1, m.padding, count_include_pad=m.count_include_pad))
            return nn.Sequential(avg, BlurPool2d(None, blur_size, s, **place))
        if (why := _not_size_over_stride(m, k, s, cast(int, p))) is not None:
            return why
        return nn.Sequential(_CircularPad((k, k)), nn.AvgPool2d(k, 1),
                             PolyphasePool2d(s, blur_size=blur_size))
    if isinstance(m, nn.Conv2d):
        if C.check_pair(m.stride, "stride", "antialias") == (1, 1):
            return None
        if type(m) is not nn.Conv2d:
            # (torch's parametrize.is_parametrized: a parametrized module holds the table)
            if isinstance(getattr(m, "parametrizations", None), nn.ModuleDict):
                return (f"a parametrized Conv2d ({type(m).__name__}: weight_norm, spectral_norm "
                        "or register_parametrization): antialias the model before "
                        "parametrizing it, or put a BlurPool2d after a stride-1 copy by hand")
            if is_lazy(m.weight):  # an nn.LazyConv2d before its first forward
                return (f"an uninitialized {type(m).__name__}: run one forward pass first "
                        "(it becomes a Conv2d), then antialias the model")
            return (f"a subclass of Conv2d ({type(m).__name__}): its forward may differ from "
                    "Conv2d's; put a BlurPool2d after a stride-1 copy by hand")
        if not isinstance(m.weight, nn.Parameter):
            return ("Conv2d whose weight a forward pre-hook recomputes (torch.nn.utils.prune or "
                    "the legacy weight_norm / spectral_norm): antialias before, or make it a "
                    "parameter again first (prune.remove(conv, 'weight'), "
                    "remove_weight_norm(conv) or remove_spectral_norm(conv))")
        s = _uniform(m.stride, "stride")
        if s is None:
            return "Conv2d with unequal strides"
        # torch refuses padding='same' for strided convs, so a string here is 'valid'
        padding = C.check_strided_padding(m.padding, "padding", "antialias")
        if mode != "polyphase":
            # nn.Conv2d's kernel_size and dilation are pairs, typed tuple[int, ...] by torch's
            # stubs: read as pairs
            kernel, dil = (C.check_pair(v, n, "antialias") for v, n in (
                (m.kernel_size, "kernel_size"), (m.dilation, "dilation")))
            # built on the meta device (nothing allocated or initialised), then given m's own
            # parameters: their values, device, dtype, requires_grad and any tying are kept
            new = BlurConv2d(m.in_channels, m.out_channels, kernel, s, padding, dil,
                             m.groups, m.bias is not None, m.padding_mode, device="meta",
                             dtype=m.weight.dtype, blur_size=blur_size,
                             fold=True if mode == "folded" else None)
            # nn.Conv2d's weight and bias are Parameters (torch's stubs type them Tensor)
            new.weight = cast(nn.Parameter, m.weight)
            new.bias = cast("nn.Parameter | None", m.bias)
            return new
        (kh, kw), (dh, dw), (ph, pw) = m.kernel_size, m.dilation, padding
        if (2 * ph, 2 * pw) != (dh * (kh - 1), dw * (kw - 1)):
            return ("Conv2d whose stride-1 output does not keep the size "
                    "(2 * padding != dilation * (kernel_size - 1)): polyphase needs it")
        # a copy that keeps m's own parameters (values, requires_grad, tying)
        conv = without_hooks(copy.deepcopy(m, memo={id(t): t for t in m.parameters()}))
        conv.stride = (1, 1)
        return nn.Sequential(conv, PolyphasePool2d(s, blur_size=blur_size))
    return other_strided(m)


@overload
def antialias(
    model: nn.Module,
    *,
    blur_size: int = ...,
    mode: str = ...,
    skip: Iterable[str] | Callable[[str, nn.Module], bool] | None = ...,
    inplace: bool = ...,
    return_report: Literal[False] = ...,
) -> nn.Module: ...


@overload
def antialias(
    model: nn.Module,
    *,
    blur_size: int = ...,
    mode: str = ...,
    skip: Iterable[str] | Callable[[str, nn.Module], bool] | None = ...,
    inplace: bool = ...,
    return_report: Literal[True],
) -> tuple[nn.Module, list[Replacement]]: ...


@overload
def antialias(
    model: nn.Module,
    *,
    blur_size: int = ...,
    mode: str = ...,
    skip: Iterable[str] | Callable[[str, nn.Module], bool] | None = ...,
    inplace: bool = ...,
    return_report: bool = ...,
) -> nn.Module | tuple[nn.Module, list[Replacement]]: ...


def antialias(
    model: nn.Module,
    *,
    blur_size: int = 3,
    mode: str = "blur",
    skip: Iterable[str] | Callable[[str, nn.Module], bool] | None = None,
    inplace: bool = False,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, list[Replacement]]:
    """Replace the strided downsampling layers of ``model`` with anti-aliased ones.

    ``mode="blur"`` (Zhang 2019):

    * ``nn.MaxPool2d(k, s, p, ceil_mode=c)``, ``s > 1`` -> :class:`~equilayers.nn.MaxBlurPool2d`
      ``(k, s, p, ceil_mode=c, blur_size=blur_size)``;
    * ``nn.Conv2d`` with stride ``s > 1`` -> :class:`~equilayers.nn.BlurConv2d` (same
      arguments and parameter names, holding the conv's own ``weight`` and ``bias``: the old
      ``state_dict`` loads into the new model);
    * ``nn.AvgPool2d(k, s, p)``, ``s > 1`` -> ``Sequential(AvgPool2d(k, 1, p),
      BlurPool2d(kernel_size=blur_size, stride=s))``;
    * pools with ``ceil_mode=True`` (GoogLeNet's and SqueezeNet's max pools, the average pool
      of ResNet-D shortcuts) keep it: the bottom and right are padded by what the extra
      ``ceil_mode`` window reaches past the input (``MaxBlurPool2d(ceil_mode=True)`` does it
      itself; an average keeps torch's divisor for that window), so the converted pool has
      torch's ``ceil_mode`` output size, and with ``blur_size=1`` equals the original pool.

    These keep every output shape of the original for every input size. The converted convs
    compute the blur their cheapest exact way (``BlurConv2d(fold=None)``: a ``1 x 1`` conv
    blur-pools its input first, a larger one blurs its input at stride 1 and keeps its stride,
    or folds the blur into its weight; the border ring through the composition), so a
    converted ResNet costs a fraction of the stride-1 convolutions the composition implies.

    ``mode="folded"``: the same replacements with ``BlurConv2d(fold=True)``: the convs always
    take an exact rewrite at output resolution, even where the multiply-add count favours the
    composition (small maps, where the border ring is most of the output). Same outputs as
    ``"blur"`` to float rounding.

    ``mode="polyphase"`` (Chaman & Dokmanic 2021): the same layers become the op at stride 1
    (pools padded circularly to keep the size) followed by
    ``PolyphasePool2d(s, blur_size=blur_size)``; convs keep their own padding and must keep the
    size at stride 1 (``2 padding == dilation (k - 1)``). Each converted conv becomes
    ``Sequential(conv at stride 1, PolyphasePool2d)``, so its parameters gain a ``.0`` in
    their names (``0.weight`` -> ``0.0.weight``): the weights are kept, but a plain model's
    ``state_dict`` loads only into ``"blur"`` and ``"folded"`` models (load it into the
    plain model before converting). Output shapes equal the original's
    when ``H, W`` are divisible by each stride and the layers pad "same"-style (3x3 pad 1,
    7x7 pad 3, 1x1 pad 0, 2x2 max-pool): the usual ResNet layout. A chain of circular convs
    and converted layers ending in a global pool is then exactly invariant to circular shifts
    (tested). Residual blocks with a strided shortcut are not: each branch picks its own
    polyphase component, so the branches can disagree after a shift (Chaman & Dokmanic pass the
    main branch's index to the shortcut, which needs the block's code, not surgery); they still
    measurably reduce the output change under 1-px shifts.

    Layers that cannot be converted exactly (unequal strides, dilated max pools, pools with
    ``return_indices`` or ``divisor_override``, subclasses of ``nn.Conv2d`` such as
    parametrized ones, convs whose weight ``torch.nn.utils.prune`` or the legacy
    ``weight_norm`` recompute, and in ``"polyphase"`` mode pools whose output is not ``size /
    stride``, such as ``MaxPool2d(3, 2)``) are left alone with a ``UserWarning`` naming why
    and the fix.

    Every use of a layer is converted: a module that appears under several names (one
    ``nn.MaxPool2d`` called twice, a shared strided conv) is replaced by one new module at
    every name, so it stays shared (and a shared conv's weight stays tied); the report lists
    each name. ``model`` itself, when it is a strided layer, is converted too (the new module
    is returned; its name in ``skip`` and the report is ``""``). A new module takes the
    training flag and the hooks (forward, pre-forward, backward) of the layer it replaces:
    with ``inplace=True`` the same tables, so the user's handles still remove them; the
    default copy carries copies of them (as ``copy.deepcopy`` does), which handles taken on
    the original model do not reach (remove them on the copy's layers, or register them
    after converting); a converted conv keeps the
    layer's own parameter objects (values, device, dtype and ``requires_grad``: frozen
    weights stay frozen); the blur filters of the new pools take the device and dtype of the
    first floating-point parameter or buffer of the replaced layer's nearest enclosing module
    that has one (its parent, then up to ``model``), or torch's defaults (CPU, the default
    dtype) if the model has none.

    Args:
        model: any module; not modified unless ``inplace=True``.
        blur_size: binomial filter size, 1..7.
        mode: ``"blur"``, ``"folded"`` or ``"polyphase"``.
        skip: qualified module names (as in ``named_modules()``) to leave alone, with
            everything inside them, or a predicate ``skip(name, module) -> bool`` (asked at
            every use of a module; ``""`` names ``model`` itself).
        inplace: modify ``model`` itself instead of a deep copy (the converted layers keep
            its parameter objects, so an optimizer built on them still holds them).
        return_report: also return the list of :class:`Replacement` records.

    Returns:
        The converted model, or ``(model, report)`` with ``return_report=True``.

    Example:
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.MaxPool2d(2))
        >>> new, report = antialias(m, return_report=True)
        >>> [(r.name, type(r.new).__name__) for r in report]
        [('0', 'BlurConv2d'), ('1', 'MaxBlurPool2d')]
    """
    C.check_module(model, "model", "antialias")
    C.check_choice(mode, "mode", _MODES, "antialias")
    C.check_blur_size(blur_size, "blur_size", "antialias", "antialias")
    C.check_flag(inplace, "inplace", "antialias")
    C.check_flag(return_report, "return_report", "antialias")
    names = {n for n, _ in model.named_modules(remove_duplicate=False)}
    if skip is None:
        def skipped(name: str, module: nn.Module, /) -> bool:
            return False
    elif callable(skip):
        skipped = skip
    else:
        if isinstance(skip, str):
            raise TypeError(f"skip must be a collection of names or a predicate; got the string "
                            f"{skip!r} (write skip=[{skip!r}])")
        if not C.is_collection(skip) or not all(isinstance(n, str) for n in skip):
            raise TypeError(f"antialias: skip={skip!r} must be a collection of module names "
                            "(strings), a predicate skip(name, module) -> bool, or None")
        skip_set = set(skip)
        unknown = sorted(skip_set - names)
        if unknown:
            raise ValueError(f"skip names {unknown} are not modules of the model; valid names "
                             "are those of model.named_modules()")

        def skipped(name: str, module: nn.Module, /) -> bool:  # a skipped name skips its subtree
            return any(name == s or not s or name.startswith(s + ".") for s in skip_set)

    if not inplace:
        model = copied(model, "antialias(inplace=False)", "antialias before pruning, "
                       "prune.remove / remove_weight_norm first, or pass inplace=True")
    report: list[Replacement] = []
    left: list[str] = []
    done: dict[int, nn.Module | str | None] = {}  # id(old) -> its conversion, made once
    root = model
    # every use of every module: a module used twice is converted at both names, into one
    # new module (shared stays shared)
    for name, module in list(root.named_modules(remove_duplicate=False)):
        if skipped(name, module):
            continue
        if id(module) not in done:
            new = _convert(module, mode, blur_size, _place(root, name))
            if isinstance(new, nn.Module):
                new.train(module.training)
                carry_hooks(module, new)
            done[id(module)] = new
        new = done[id(module)]
        if new is None:
            continue
        if isinstance(new, str):
            left.append(f"{name or '(the model itself)'} ({new})")
            continue
        if not name:  # the model itself is a strided layer
            model = new
        else:
            parent_name, _, attr = name.rpartition(".")
            setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)
        report.append(Replacement(name, module, new))
    if left:
        warn_at_user(f"antialias left these strided layers alone: {'; '.join(left)}")
    return (model, report) if return_report else model


def _place(root: nn.Module, name: str) -> dict:
    """``{"device": ..., "dtype": ...}`` for the filters of the module that replaces
    ``root.get_submodule(name)``: those of the first floating-point parameter or buffer of
    that module, else of its nearest enclosing module that has one (its parent, then the
    parent's parent, up to ``root``); ``{}`` (torch's defaults: CPU, the default dtype) when
    none has one."""
    parts = name.split(".") if name else []
    for depth in range(len(parts), -1, -1):
        module = root.get_submodule(".".join(parts[:depth]))
        for t in itertools.chain(module.parameters(), module.buffers()):
            if t.is_floating_point():
                return {"device": t.device, "dtype": t.dtype}
    return {}
