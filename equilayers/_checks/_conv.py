"""Windows, blurs, polyphase pools and convolutions: the argument rules of the layers that
slide a filter (:mod:`equilayers._checks`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from .._host import fake_mode_active, host_constants, readable
from ._base import (
    BLUR_PADDING_MODES,
    MAX_BLUR_SIZE,
    _prefix,
    check_choice,
    check_flag,
    check_int,
    check_pair,
    check_tensor,
    check_triple,
    is_int,
)

__all__ = [
    "check_size",
    "check_window",
    "check_blur_size",
    "check_stride",
    "check_square_stride",
    "square_int",
    "check_padding_mode",
    "check_blur_padding",
    "check_blur_pool_args",
    "check_max_blur_args",
    "check_blur_upsample_args",
    "POLYPHASE_CRITERIA",
    "check_polyphase_args",
    "values_readable",
    "check_component_index",
    "check_bias",
    "check_pool_args",
    "conv_padding",
    "check_same_padding",
    "CONV_FIXES",
    "FIELD_CONV_FIXES",
    "check_conv_channels",
    "check_weight_groups",
    "check_conv_weight",
    "check_channels",
    "check_pad_fits",
]


def check_size(x: torch.Tensor, dim: int, size: int, name: str, what: str, means: str,
               fix: str = "") -> None:
    """``x.shape[dim] == size`` (``ValueError`` naming the shape otherwise)."""
    if x.shape[dim] != size:
        raise ValueError(f"{_prefix(what)}{name} must have {means}={size} in dim {dim}; got "
                         f"shape {tuple(x.shape)}" + (f"; {fix}" if fix else ""))


def check_window(x: torch.Tensor, extent: tuple[int, int], pad: tuple[int, int, int, int],
                 what: str, name: str = "x", *,
                 ceil_stride: tuple[int, int] | None = None) -> None:
    """The padded input ``(H + top + bottom, W + left + right)`` holds at least one window of
    ``extent = (dilation * (k - 1) + 1)`` per dim (``pad`` is ``(left, right, top, bottom)``),
    where ``nn.Conv2d`` / ``nn.MaxPool2d`` would raise a ``RuntimeError``. ``ceil_stride``: a
    ``ceil_mode=True`` pool's ``(stride_h, stride_w)``; torch's ``ceil_mode`` also takes a
    padded size short of the window by less than the stride (one window overhanging the end:
    ``ceil((n + 2p - extent) / stride) + 1 >= 1``), and refuses the rest as floor mode
    does."""
    h, w = x.shape[-2:]
    left, right, top, bottom = pad
    short = (extent[0] - h - top - bottom, extent[1] - w - left - right)
    if ceil_stride is None:
        bad = short[0] > 0 or short[1] > 0
    else:
        bad = 0 in (h, w) or short[0] >= ceil_stride[0] or short[1] >= ceil_stride[1]
    if bad:
        ceil = ("" if ceil_stride is None else
                f" by the stride {ceil_stride[0]}x{ceil_stride[1]} or more (ceil_mode=True "
                "takes a window that overhangs the end by less than the stride)")
        raise ValueError(f"{_prefix(what)}{name} of spatial size {h}x{w} (shape "
                         f"{tuple(x.shape)}) padded by {pad} (left, right, top, bottom) is "
                         f"smaller than the kernel's window {extent[0]}x{extent[1]}{ceil}; "
                         "use a larger input or more padding")


# --- the binomial blurs' arguments ---------------------------------------------------------------
#: What a binomial filter of size 1 means for each kind of op (its error says so).
_BLUR_ONE = {"pool": "plain subsampling", "upsample": "zero insertion, no blur",
             "polyphase": "no blur", "max": "no blur: the strided max pool",
             "conv": "no blur: the strided conv", "filter": "the filter [1.]",
             "antialias": "no blur"}


def check_blur_size(value: Any, name: str = "kernel_size", what: str = "",
                    one: str = "pool") -> int:
    """A binomial filter size, ``1..7``; ``one`` (a key of ``_BLUR_ONE``) says what size 1
    means for the op: plain subsampling for a blur pool, zero insertion for a blur
    upsampling, no blur for the polyphase ops."""
    return check_int(value, name, what, minimum=1, maximum=MAX_BLUR_SIZE,
                     fix=f"the binomial filter size (1 = {_BLUR_ONE[one]})")


def check_stride(value: Any, name: str = "stride", what: str = "", minimum: int = 1) -> int:
    return check_int(value, name, what, minimum=minimum)


def check_square_stride(value: Any, name: str = "stride", what: str = "") -> int:
    """A stride applied alike to both dims (a blur pool's): an int or a pair of equal ints
    (``nn.Conv2d`` stores ``(s, s)``), as an int."""
    a, b = check_pair(value, name, what, minimum=1)
    if a != b:
        raise ValueError(f"{_prefix(what)}{name}={value!r} must be an integer or a pair of equal "
                         "integers: the blur pool subsamples both dims by the same stride; use "
                         "a square stride (or nn.Conv2d for unequal ones)")
    return a


#: How each rank's pools take one size for every dim (torch's 1-D pools take ``(k,)``).
_EQUAL = {1: "a 1-tuple", 2: "an equal pair", 3: "an equal triple"}


def square_int(value: Any, name: str, what: str, keep: str, nd: int = 2) -> Any:
    """An ``nd``-tuple of equal ints ``(n, ..., n)`` as ``n`` (torch's pools take either,
    kornia's blur pools pairs); an unequal one is a ``ValueError`` naming ``keep``, the layer
    for rectangular windows; ints of another count a ``TypeError``; anything else is returned
    for the caller's own check."""
    if isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        equal = _EQUAL[nd]
        if len(value) != nd:
            dims = "1 spatial dim" if nd == 1 else f"{nd} spatial dims, one size for all"
            raise TypeError(f"{_prefix(what)}{name}={tuple(value)!r} must be one int or "
                            f"{equal} ({what or 'this op'} has {dims}); got {len(value)} "
                            "values")
        if len(set(value)) != 1:
            shape = "square" if nd == 2 else "cubic"
            raise ValueError(f"{_prefix(what)}{name}={tuple(value)!r} must be one int or "
                             f"{equal} (the windows and the blur are {shape} here); pass "
                             f"an int, or keep {keep} for unequal sizes")
        return int(value[0])
    return value


#: The padding names of the peers that mean one of torch's: antialiased-cnns' ``pad_type``
#: and NumPy's ``np.pad`` modes (kornia's and escnn's are torch's).
_PEER_PADDING = {"zero": ("zeros", "antialiased-cnns'"), "refl": ("reflect", "antialiased-cnns'"),
                 "repl": ("replicate", "antialiased-cnns'"), "constant": ("zeros", "NumPy's"),
                 "wrap": ("circular", "NumPy's"), "edge": ("replicate", "NumPy's")}


def check_padding_mode(value: Any, name: str = "padding_mode", what: str = "",
                       modes: Sequence[str] = BLUR_PADDING_MODES) -> str:
    try:
        return check_choice(value, name, modes, what)
    except ValueError as e:
        peer = _PEER_PADDING.get(value) if isinstance(value, str) else None
        if peer is None or peer[0] not in modes:
            raise
        raise ValueError(f"{e}; {value!r} is {peer[1]} name for torch's {peer[0]!r}: use "
                         f"{name}={peer[0]!r}") from None


def check_blur_padding(spatial: Sequence[int], k: int, padding_mode: str, what: str,
                       shape: Sequence[int], name: str = "kernel_size") -> None:
    """The sizes a binomial blur of size ``k`` can pad with ``padding_mode``: ``"circular"``
    needs every size >= the right pad (``F.pad`` raises otherwise). ``"reflect"`` takes any
    size: an axis too short to reflect is padded with ``"replicate"``
    (``kernels._tables.axis_mode``)."""
    right = (k - 1) - (k - 1) // 2
    if k > 1 and padding_mode == "circular" and min(spatial) < right:
        raise ValueError(f"{_prefix(what)}padding_mode='circular' with {name}={k} needs every "
                         f"spatial size >= {right}; got spatial shape {tuple(spatial)} (input "
                         f"shape {tuple(shape)})")


# --- the arguments of the ops with a Triton kernel: one check for every path -----------------
def check_blur_pool_args(kernel_size: Any, stride: Any, padding_mode: Any,
                         what: str = "blur_pool2d") -> None:
    check_blur_size(kernel_size, "kernel_size", what)
    check_stride(stride, "stride", what)
    check_padding_mode(padding_mode, "padding_mode", what)


def check_max_blur_args(kernel_size: Any, stride: Any, blur_size: Any, padding_mode: Any,
                        padding: Any, what: str = "max_blur_pool2d") -> None:
    k = check_int(kernel_size, "kernel_size", what, minimum=1, fix="the max-pool window")
    check_stride(stride, "stride", what)
    check_blur_size(blur_size, "blur_size", what, "max")
    check_padding_mode(padding_mode, "padding_mode", what)
    check_int(padding, "padding", what, minimum=0, maximum=k // 2,
              fix="0..kernel_size//2, as nn.MaxPool2d")


def check_blur_upsample_args(scale_factor: Any, blur_size: Any, padding_mode: Any,
                             transposed: Any, what: str) -> tuple[int, int, str, bool]:
    """A blur upsampling's arguments: ``transposed=True`` is the transpose of a blur pool
    padded with zeros or circularly (the other padding modes have no transpose)."""
    s = check_stride(scale_factor, "scale_factor", what)
    k = check_blur_size(blur_size, "blur_size", what, "upsample")
    mode = check_padding_mode(padding_mode, "padding_mode", what)
    transposed = check_flag(transposed, "transposed", what)
    if transposed and mode not in ("zeros", "circular"):
        raise ValueError(f"{_prefix(what)}transposed=True is the transpose of a blur pool "
                         f"padded with zeros or circularly; padding_mode={mode!r} has no such "
                         "transpose. Use padding_mode='zeros' or 'circular'")
    return s, k, mode, transposed


POLYPHASE_CRITERIA = ("l2", "l1", "linf")


def check_polyphase_args(stride: Any, criterion: Any, blur_size: Any, padding_mode: Any,
                         what: str = "polyphase_pool2d") -> None:
    check_stride(stride, "stride", what, minimum=2)
    check_choice(criterion, "criterion", POLYPHASE_CRITERIA, what)
    check_blur_size(blur_size, "blur_size", what, "polyphase")
    check_padding_mode(padding_mode, "padding_mode", what)


def values_readable(t: torch.Tensor) -> bool:
    """Whether a check may read ``t``'s values (``bool(...)``, ``.tolist()``): not while
    compiling or tracing, not on meta or a fake tensor (torch's ``FakeTensorMode``: no
    values), and not where a ``torch.func`` transform wraps ``t`` (``vmap``, ``grad``,
    ``jvp``, at any depth: under ``vmap`` reading a value is data-dependent control flow).
    A real ``t`` under an active ``FakeTensorMode`` is readable: the check reads it inside
    :func:`equilayers._host.host_constants`."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or not readable(t)
                or torch._C._functorch.is_functorch_wrapped_tensor(t))


def check_component_index(index: torch.Tensor, count: int, what: str, nd: int = 2) -> None:
    """Polyphase component indices in ``0..count-1``, where :func:`values_readable` allows."""
    if not (index.numel() and values_readable(index)):
        return
    # (a real index under a FakeTensorMode: read as it is, with the mode suspended)
    with host_constants() if fake_mode_active() else contextlib.nullcontext():
        got = index.tolist() if bool(((index < 0) | (index >= count)).any()) else None
    if got is not None:
        flat = "i*stride+j" if nd == 2 else "a*stride**2+b*stride+c"
        raise ValueError(f"{_prefix(what)}index values must lie in 0..stride**{nd}-1 = "
                         f"0..{count - 1} (component {flat}); got {got}")


# --- convolutions ---------------------------------------------------------------------------------
def check_bias(bias: Any, sizes: Sequence[int], what: str, name: str = "bias",
               per: str = "output channel") -> None:
    """``None`` or a 1-D floating tensor of one of ``sizes`` elements (one per ``per``: a
    group conv's bias is one value per output *field*, added to every slot)."""
    if bias is None:
        return
    check_tensor(bias, name, what, ndim=1)
    if bias.shape[0] not in sizes:
        want = " or ".join(f"({n},)" for n in sizes)
        raise ValueError(f"{_prefix(what)}{name} must have shape {want} (one value per {per})"
                         f"; got shape {tuple(bias.shape)}")


def check_pool_args(kernel_size: Any, stride: Any, padding: Any, dilation: Any, what: str, *,
                    max_pool: bool, dims: int = 2) -> tuple[tuple[int, ...], ...]:
    """``nn.MaxPool2d`` / ``nn.AvgPool2d``'s arguments (``dims=3``: the 3-D pools') as pairs
    (triples) ``(k, s, p, d)``: ``stride`` ``None`` means ``kernel_size``; ``padding`` at most
    ``kernel_size // 2``, as torch requires (for a max pool too, whatever the dilation:
    ``F.max_pool2d(x, 3, 1, 2, 2)`` raises)."""
    def read(value, name, minimum, fix=""):
        if dims == 2:
            return check_pair(value, name, what, minimum=minimum, fix=fix)
        return check_triple(value, name, what, minimum=minimum)
    k = read(kernel_size, "kernel_size", 1)
    s = k if stride is None else read(stride, "stride", 1, "None means kernel_size")
    p = read(padding, "padding", 0)
    d = read(dilation, "dilation", 1)
    limit = tuple(ki // 2 for ki in k)
    if any(pi > li for pi, li in zip(p, limit, strict=True)):
        raise ValueError(f"{_prefix(what)}padding={padding!r} must be at most half the "
                         f"kernel_size, {limit} here (as nn.{'Max' if max_pool else 'Avg'}"
                         f"Pool{dims}d{'; the dilation does not count' if max_pool else ''})")
    return k, s, p, d


def conv_padding(padding: Any, kernel_size: int | Sequence[int], dilation: Any, what: str,
                 dims: int = 2) -> tuple[int, ...]:
    """A conv's ``padding`` (an int, ``dims`` ints, ``"same"`` or ``"valid"``) as ``F.pad``'s
    tuple, last dim first (``(left, right, top, bottom[, front, back])``); ``"same"`` pads
    ``dilation * (k - 1)`` in total per dim (``kernel_size`` one int, or one per dim), the odd
    pixel on the high side, as torch's convs."""
    read = check_pair if dims == 2 else check_triple
    dil = read(dilation, "dilation", what, minimum=1)
    forms = f"an int, {'a pair' if dims == 2 else 'three ints'}, 'same' or 'valid'"
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{_prefix(what)}padding={padding!r} must be {forms}")
        ks = ((kernel_size,) * dims if isinstance(kernel_size, int) else tuple(kernel_size))
        totals = [d * (k - 1) if padding == "same" else 0 for d, k in zip(dil, ks, strict=True)]
    else:
        totals = [2 * p for p in read(padding, "padding", what, minimum=0, fix=forms)]
    return tuple(v for t in reversed(totals) for v in (t // 2, t - t // 2))


def check_same_padding(padding: Any, stride: Sequence[int], what: str, like: str) -> None:
    """``padding="same"`` only with stride 1 in every dim, as torch's convs (``like``, named in
    the message), which raise a ``RuntimeError`` for strided ones."""
    if isinstance(padding, str) and padding == "same" and any(s != 1 for s in stride):
        raise ValueError(f"{_prefix(what)}padding='same' needs stride=1 (as {like}); got "
                         f"stride={tuple(stride)!r}: give the padding as numbers")


#: What a conv's ``in_channels``, ``out_channels`` and ``groups`` mean, for their errors.
CONV_FIXES = ("the number of input channels", "the number of output channels",
              "1 for a dense conv, as in torch.nn's convs")
#: The same for a conv of group or steerable fields.
FIELD_CONV_FIXES = ("the number of input fields", "the number of output fields",
                    CONV_FIXES[2])


def check_conv_channels(in_channels: Any, out_channels: Any, groups: Any, what: str,
                        fixes: tuple[str, str, str] = ("", "", "")) -> tuple[int, int, int]:
    """A conv module's ``in_channels``, ``out_channels`` and ``groups``: integers >= 1 (numpy's
    too, as ``nn.Conv2d``: a size read off an array), ``groups`` dividing both channel counts.
    ``fixes``: what each argument means, named in its error."""
    names = ("in_channels", "out_channels", "groups")
    c_in, c_out, g = (check_int(v, n, what, minimum=1, fix=f) for v, n, f in zip(
        (in_channels, out_channels, groups), names, fixes, strict=True))
    if c_in % g or c_out % g:
        raise ValueError(f"{_prefix(what)}groups={g} must divide in_channels={c_in} and "
                         f"out_channels={c_out}; use a groups that divides both (1 for a "
                         "dense conv)")
    return c_in, c_out, g


def check_weight_groups(weight: torch.Tensor, groups: int, what: str, c_out: int | None = None,
                        note: str = "") -> None:
    """A conv weight's output count ``c_out`` (default ``weight.shape[0]``; a group conv's
    output *fields*) divisible by ``groups``, so that each conv group holds whole outputs;
    ``note`` says how ``c_out`` is read off the weight."""
    check_int(groups, "groups", what, minimum=1)
    c = int(weight.shape[0]) if c_out is None else c_out
    if c % groups:
        raise ValueError(f"{_prefix(what)}groups={groups} must divide C_out={c} (weight shape "
                         f"{tuple(weight.shape)}{note}); use a groups that divides the output "
                         "count")


def check_conv_weight(weight: Any, groups: int, what: str, ndim: int = 4,
                      layout: str = "(C_out, C_in // groups, kH, kW)") -> torch.Tensor:
    check_tensor(weight, "weight", what, ndim=ndim, layout=layout)
    check_weight_groups(weight, groups, what)
    return weight


def check_channels(x: torch.Tensor, channels: int, what: str, dim: int = 1,
                   hint: str = "", unit: str = "channels", arg: str = "in_channels") -> None:
    """``x`` has ``channels`` channels (``unit``: a group conv's ``"fields"``) in ``dim``
    (``ValueError`` naming the shape; ``arg``: the constructor's argument for the count)."""
    if x.shape[dim] != channels:
        if dim == 1 and x.dim() == 4 and x.shape[-1] == channels and not hint:
            fix = (": a channels-last image (B, H, W, C)? pass x.permute(0, 3, 1, 2) (a "
                   "channels_last tensor keeps the logical (B, C, H, W) order)")
        elif x.shape[dim] == 0:  # no layer has 0 inputs: the tensor is what went wrong
            fix = f"; x has no {unit} (an empty dim {dim}): pass {channels} {unit}"
        else:
            fix = (f"; pass {channels} {unit}, or build the layer with {arg}="
                   f"{x.shape[dim]} (the {unit} of the layer before it)")
        raise ValueError(f"{_prefix(what)}x must have C_in={channels} {unit} in dim {dim}"
                         f"{hint}; got shape {tuple(x.shape)}{fix}")


def check_pad_fits(x: torch.Tensor, pad: tuple[int, int, int, int], padding_mode: str,
                   what: str) -> None:
    """``F.pad``'s limits: reflect padding must be smaller than the size it pads, circular
    padding at most that size (``pad`` is ``(left, right, top, bottom)``)."""
    h, w = x.shape[-2:]
    left, right, top, bottom = pad
    if padding_mode == "reflect":
        ok = max(left, right) < w and max(top, bottom) < h
    elif padding_mode == "circular":
        ok = max(left, right) <= w and max(top, bottom) <= h
    else:
        return
    if not ok:
        raise ValueError(f"{_prefix(what)}padding_mode={padding_mode!r} with padding {pad} "
                         f"(left, right, top, bottom) needs a larger input than {h}x{w} (shape "
                         f"{tuple(x.shape)}); use padding_mode='zeros' or 'replicate', or "
                         f"less padding")
