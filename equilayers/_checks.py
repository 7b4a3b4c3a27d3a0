"""Argument and input checks shared by every layer: one definition and one message format,
``"<what>: <arg>=<value> must be ...; <fix>"``.

Wrong types (``None``, a float or a bool where an int goes, a string where a number goes)
raise ``TypeError``; wrong values raise ``ValueError``. Tensors that are not floating point
raise ``TypeError`` naming the dtype and the fix. This module imports only torch, so every
layer of the package (``groups``, ``functional``, ``kernels``, ``nn``, ``metrics``) can use it.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import torch

from ._proxy import proxy_fix

__all__: list[str] = []

#: ``nn.Conv2d``'s padding modes (``"zeros"`` pads with 0): the one list of padding modes.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
#: The binomial blurs' padding modes: the same four, from their default ``"reflect"`` on.
BLUR_PADDING_MODES = tuple(PADDING_MODES[i] for i in (1, 2, 0, 3))
#: The largest binomial filter.
MAX_BLUR_SIZE = 7


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def _err(cls: type, what: str, name: str, value: Any, must: str, fix: str = "") -> Exception:
    return cls(f"{_prefix(what)}{name}={value!r} must be {must}" + (f"; {fix}" if fix else ""))


def is_int(value: Any) -> bool:
    """An integer (Python's or numpy's) that is not a bool (``True`` is not a size)."""
    if type(value) is int:  # the common case, without the abstract-class check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def check_int(value: Any, name: str, what: str = "", *, minimum: int | None = None,
              maximum: int | None = None, fix: str = "") -> int:
    """``value`` as an int, or ``TypeError`` (not an int) / ``ValueError`` (out of range)."""
    must = "an integer" + _bounds(minimum, maximum)
    if not is_int(value):
        raise _err(TypeError, what, name, value, must, fix)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _err(ValueError, what, name, value, must, fix)
    return int(value)


def check_optional_int(value: Any, name: str, what: str = "", *, minimum: int | None = None,
                       maximum: int | None = None, fix: str = "") -> int | None:
    """:func:`check_int`, with ``None`` passed through."""
    if value is None:
        return None
    must = f"None or an integer{_bounds(minimum, maximum)}"
    if not is_int(value):
        raise _err(TypeError, what, name, value, must, fix)
    return check_int(value, name, what, minimum=minimum, maximum=maximum, fix=fix)


def check_pair(value: Any, name: str, what: str = "", *, minimum: int | None = None,
               fix: str = "") -> tuple[int, int]:
    """An int or a pair of ints (``nn.Conv2d``'s ``stride``, ``dilation``...) as a pair."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is type(value[1]) is int:
        # the common case (a module's stored pair), checked per forward: no message built
        if minimum is None or min(value) >= minimum:
            return value
    must = "an integer or a pair of integers" + _bounds(minimum, None)
    if is_int(value):
        pair = (value, value)
    elif (isinstance(value, (tuple, list, torch.Size)) and len(value) == 2
          and all(is_int(v) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise _err(TypeError, what, name, value, must, fix)
    if minimum is not None and min(pair) < minimum:
        raise _err(ValueError, what, name, value, must, fix)
    return pair


def check_strided_padding(value: Any, name: str = "padding", what: str = "") -> tuple[int, int]:
    """A strided conv's ``padding`` (an int, a pair, ``"valid"``) as a pair; ``"same"`` is
    refused as ``nn.Conv2d`` does (``ValueError`` naming the int padding to use instead)."""
    if isinstance(value, str):
        if value == "valid":
            return (0, 0)
        fix = ("as nn.Conv2d, a strided conv has no 'same' padding; pass an int, e.g. "
               "padding=dilation * (kernel_size - 1) // 2" if value == "same" else
               "pass an int, a pair or 'valid'")
        raise _err(ValueError, what, name, value, "an integer or a pair of integers >= 0, or "
                   "'valid'", fix)
    return check_pair(value, name, what, minimum=0, fix="pass an int, a pair or 'valid'")


def check_shift_list(value: Any, name: str = "shifts", what: str = "", *,
                     form: str = "integer pairs (dy, dx)") -> list[Any]:
    """A list of shifts, each a sequence of ints that the caller checks (:func:`check_pair`).
    ``ValueError`` when it is empty; ``TypeError`` for a string or a non-iterable, and for a
    bare integer among the entries: ``shifts=(1, 2)`` reads as one shift by ``(1, 2)``, but
    :func:`check_pair` would take each integer ``n`` as the shift ``(n, n)``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _err(TypeError, what, name, value, f"a list of {form}",
                   f"e.g. {name}=[(1, 2)] for one shift")
    items = list(value)
    if any(is_int(v) for v in items):
        one = (f"{name}=[{tuple(int(v) for v in items)!r}]"
               if items and all(is_int(v) for v in items) else f"{name}=[(1, 2)]")
        raise _err(TypeError, what, name, value, f"a list of {form}, one per shift, not a "
                   "flat sequence of integers (each integer n would be read as a shift by n "
                   "along every axis)", f"for one shift pass a list holding it: {one}")
    if not items:
        raise ValueError(f"{_prefix(what)}{name} is empty: pass at least one shift, e.g. "
                         f"{name}=[(1, 2)]")
    return items


def check_number(value: Any, name: str, what: str = "", *, minimum: float | None = None,
                 maximum: float | None = None, positive: bool = False, finite: bool = True,
                 fix: str = "") -> float:
    """A real number (not a bool, not NaN; finite unless ``finite=False``) in range;
    ``positive``: ``> 0``."""
    if positive:
        must = "a real number > 0" + (f" and <= {maximum}" if maximum is not None else "")
    elif minimum is not None and maximum is not None:
        must = f"a real number in [{minimum}, {maximum}]"
    elif minimum is not None:
        must = f"a real number >= {minimum}"
    elif maximum is not None:
        must = f"a real number <= {maximum}"
    else:
        must = "a real number"
    if not finite:
        must += " (inf allowed)"
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not (
            value.dtype == torch.bool or value.is_complex()):
        value = value.item()  # a 0-d tensor holding a number
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _err(TypeError, what, name, value, must, fix)
    v = float(value)
    if (v != v or (finite and abs(v) == math.inf) or (positive and not v > 0)  # SymFloat-safe
            or (minimum is not None and v < minimum) or (maximum is not None and v > maximum)):
        raise _err(ValueError, what, name, value, must, fix)
    return v


def check_choice(value: Any, name: str, choices: Sequence[Any], what: str = "",
                 fix: str = "") -> Any:
    """One of ``choices`` (``ValueError`` listing them otherwise)."""
    try:
        ok = value in choices
    except TypeError:  # an unhashable value tested against a dict
        ok = False
    if not ok:
        must = "one of " + ", ".join(map(repr, choices))
        raise _err(ValueError if isinstance(value, str) else TypeError, what, name, value, must,
                   fix)
    return value


@overload
def check_bool(value: Any, name: str, what: str = "", *, optional: Literal[False] = False,
               fix: str = "") -> bool: ...


@overload
def check_bool(value: Any, name: str, what: str = "", *, optional: bool,
               fix: str = "") -> bool | None: ...


def check_bool(value: Any, name: str, what: str = "", *, optional: bool = False,
               fix: str = "") -> bool | None:
    """``True`` or ``False`` (or ``None`` when ``optional``); ``TypeError`` otherwise (``0``
    and ``1`` are not flags)."""
    if (value is None and optional) or isinstance(value, bool):
        return value
    must = "True or False" + (" (or None)" if optional else "")
    raise _err(TypeError, what, name, value, must, fix)


def check_flag(value: Any, name: str, what: str = "", fix: str = "") -> bool:
    """``True`` or ``False`` (``TypeError`` otherwise: ``0``, ``None`` or ``"True"`` would be
    read by their truth value, which is rarely what was meant)."""
    return check_bool(value, name, what, fix=fix)


def check_callable(value: Any, name: str, what: str = "", fix: str = "") -> Callable:
    if not callable(value):
        raise _err(TypeError, what, name, value, "callable (a function or a module)", fix)
    return value


def check_module(value: Any, name: str = "model", what: str = "") -> torch.nn.Module:
    """An ``nn.Module`` whose submodules can be hooked and replaced (not a TorchScript one)."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{what or 'this'} expects an nn.Module as {name}; got "
                        f"{name}={value!r} ({type(value).__name__})"[:300])
    if isinstance(value, torch.jit.ScriptModule):
        raise TypeError(f"{_prefix(what)}{name} is a TorchScript module "
                        f"({type(value).__name__}, from torch.jit.script or torch.jit.trace), "
                        "whose submodules cannot be hooked or replaced; pass the nn.Module it "
                        "was made from (and script or trace the result)")
    return value


def check_float_dtype(value: Any, name: str = "dtype", what: str = "", *,
                      optional: bool = True) -> torch.dtype | None:
    """A floating-point ``torch.dtype`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise _err(TypeError, what, name, value, "a floating-point torch.dtype such as "
                   "torch.float32 or torch.float64" + (" (or None)" if optional else ""))
    return value


#: Whether this torch's ``nn.BatchNorm*d`` take ``bias=`` (torch 2.12 and later; before, an
#: affine batch norm always has a bias). The one feature test of it: torch releases are named
#: in pyproject.toml's ``torch>=`` floor, not sniffed here.
BATCH_NORM_TAKES_BIAS = "bias" in inspect.signature(torch.nn.BatchNorm3d.__init__).parameters


def batch_norm_bias(bias: bool, affine: bool, what: str) -> dict[str, bool]:
    """The keyword arguments that make an ``nn.BatchNorm*d`` (or a subclass) have a bias iff
    ``affine and bias``: none where torch's default already does (``bias=True``, or no affine
    parameters at all), ``{"bias": False}`` where torch takes it, else ``TypeError``."""
    if bias or not affine:
        return {}
    if not BATCH_NORM_TAKES_BIAS:
        raise _err(TypeError, what, "bias", False,
                   f"True with affine=True on torch {torch.__version__} (nn.BatchNorm3d takes "
                   "bias= from torch 2.12 on)", "upgrade torch to 2.12 or later, or keep "
                   "bias=True (or affine=False, which has neither weight nor bias)")
    return {"bias": False}


_CONVERT = {torch.float32: "float", torch.float64: "double", torch.float16: "half",
            torch.bfloat16: "bfloat16"}


def autocast_on(device_type: str) -> bool:
    """Whether ``torch.autocast`` is on for ``device_type`` (``False`` for a device type it does
    not know, such as ``"meta"``)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def check_dtype_match(x: Any, param: torch.Tensor | None, what: str, *,
                      low_precision_input: bool = False, owner: str = "module",
                      x_name: str = "x") -> None:
    """A floating tensor ``x`` of the dtype of a module's parameters ``param`` (``TypeError``
    naming both dtypes and the two conversions otherwise, where torch would raise its own
    mixed-type error). Allowed mismatches: under ``torch.autocast`` for ``x``'s device type
    when neither dtype is float64 (autocast casts float32/16 tensors, never float64 ones), and
    with ``low_precision_input`` a float16/bfloat16 ``x`` with float32 parameters (batch norm's
    mixed precision, as ``nn.BatchNorm3d``). ``owner``: what holds ``param``, as the message
    names it (``"module"``: its parameters; a functional's ``"weight"``); ``x_name``: ``x``'s."""
    if (param is None or not isinstance(x, torch.Tensor) or not x.is_floating_point()
            or x.dtype == param.dtype):
        return
    if low_precision_input and param.dtype == torch.float32 and x.dtype in (torch.float16,
                                                                            torch.bfloat16):
        return
    no_double = torch.float64 not in (x.dtype, param.dtype)
    kind = x.device.type
    if no_double and autocast_on(kind):
        return

    def to(dtype: torch.dtype) -> str:
        return f".{_CONVERT[dtype]}()" if dtype in _CONVERT else f".to({dtype})"
    amp = ", or run it under torch.autocast" if no_double else ""
    held = "the module's parameters are" if owner == "module" else f"{owner} is"
    first = "the input" if x_name == "x" else x_name
    raise TypeError(f"{what}: {x_name} has dtype {x.dtype}, but {held} {param.dtype}; convert "
                    f"{first} ({x_name}{to(param.dtype)}) or the {owner} "
                    f"({owner}{to(x.dtype)}){amp}")


def check_tensors_match(x: Any, what: str, tensors: Sequence[tuple[str, Any]], *,
                        low_precision_input: bool = False, x_name: str = "x",
                        dtypes: bool = True) -> None:
    """Each ``(name, tensor)`` (``None`` skipped) on ``x``'s device (``ValueError``: a meta
    weight with a real ``x`` ran on uninitialized memory) and, when floating, in its dtype
    (:func:`check_dtype_match`); ``dtypes=False``: devices only (an op that casts them)."""
    if not isinstance(x, torch.Tensor):
        return
    for name, t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        if t.device != x.device:
            raise ValueError(f"{_prefix(what)}{name} is on {t.device} but {x_name} is on "
                             f"{x.device}; move them to one device ({name}.to({x_name}.device))"
                             f"; a meta {name} must be materialized first")
        if dtypes and t.is_floating_point():
            check_dtype_match(x, t, what, low_precision_input=low_precision_input, owner=name,
                              x_name=x_name)


#: The floating dtypes the ops compute in (float8 and other storage-only types are refused).
_COMPUTE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensor(x: Any, name: str = "x", what: str = "", *, floating: bool = True,
                 ndim: int | Sequence[int] | None = None, min_ndim: int | None = None,
                 layout: str = "") -> torch.Tensor:
    """A tensor (``TypeError`` otherwise), floating point when ``floating`` (``TypeError``
    naming the dtype and the fix), with ``ndim`` dims (an int or the allowed ranks) or at
    least ``min_ndim`` (``ValueError`` naming the shape; ``layout`` describes it)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{_prefix(what)}{name} must be a tensor; got {type(x).__name__}"
                        + proxy_fix(x))
    if floating and x.dtype not in _COMPUTE_DTYPES:
        raise TypeError(f"{_prefix(what)}{name} has dtype {x.dtype}, but it must be a "
                        f"floating-point tensor (float32, float64, float16 or bfloat16); "
                        f"convert it with {name}.float()")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    bad = (ranks is not None and x.dim() not in ranks) or (min_ndim is not None
                                                           and x.dim() < min_ndim)
    if bad:
        if ranks is not None:
            want = " or ".join(f"{n}-D" for n in ranks)
        else:
            want = f"at least {min_ndim}-D"
        raise ValueError(f"{_prefix(what)}{name} must be {want}{' ' + layout if layout else ''};"
                         f" got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
    return x


def check_size(x: torch.Tensor, dim: int, size: int, name: str, what: str, means: str,
               fix: str = "") -> None:
    """``x.shape[dim] == size`` (``ValueError`` naming the shape otherwise)."""
    if x.shape[dim] != size:
        raise ValueError(f"{_prefix(what)}{name} must have {means}={size} in dim {dim}; got "
                         f"shape {tuple(x.shape)}" + (f"; {fix}" if fix else ""))


def check_window(x: torch.Tensor, extent: tuple[int, int], pad: tuple[int, int, int, int],
                 what: str, name: str = "x") -> None:
    """The padded input ``(H + top + bottom, W + left + right)`` holds at least one window of
    ``extent = (dilation * (k - 1) + 1)`` per dim (``pad`` is ``(left, right, top, bottom)``),
    where ``nn.Conv2d`` / ``nn.MaxPool2d`` would raise a ``RuntimeError``."""
    h, w = x.shape[-2:]
    left, right, top, bottom = pad
    if h + top + bottom < extent[0] or w + left + right < extent[1]:
        raise ValueError(f"{_prefix(what)}{name} of spatial size {h}x{w} (shape "
                         f"{tuple(x.shape)}) padded by {pad} (left, right, top, bottom) is "
                         f"smaller than the kernel's window {extent[0]}x{extent[1]}; use a "
                         f"larger input or more padding")


# --- the binomial blurs' arguments ---------------------------------------------------------------
def check_blur_size(value: Any, name: str = "kernel_size", what: str = "") -> int:
    """A binomial filter size, ``1..7`` (1 = plain subsampling)."""
    return check_int(value, name, what, minimum=1, maximum=MAX_BLUR_SIZE,
                     fix="the binomial filter size (1 = plain subsampling)")


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


def check_padding_mode(value: Any, name: str = "padding_mode", what: str = "",
                       modes: Sequence[str] = BLUR_PADDING_MODES) -> str:
    return check_choice(value, name, modes, what)


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
    check_blur_size(blur_size, "blur_size", what)
    check_padding_mode(padding_mode, "padding_mode", what)
    check_int(padding, "padding", what, minimum=0, maximum=k // 2,
              fix="0..kernel_size//2, as nn.MaxPool2d")


POLYPHASE_CRITERIA = ("l2", "l1", "linf")


def check_polyphase_args(stride: Any, criterion: Any, blur_size: Any, padding_mode: Any,
                         what: str = "polyphase_pool2d") -> None:
    check_stride(stride, "stride", what, minimum=2)
    check_choice(criterion, "criterion", POLYPHASE_CRITERIA, what)
    check_blur_size(blur_size, "blur_size", what)
    check_padding_mode(padding_mode, "padding_mode", what)


def values_readable(t: torch.Tensor) -> bool:
    """Whether a check may read ``t``'s values (``bool(...)``, ``.tolist()``): not while
    compiling or tracing, not on meta (no values), and not where a ``torch.func`` transform
    wraps ``t`` (``vmap``, ``grad``, ``jvp``, at any depth: under ``vmap`` reading a value is
    data-dependent control flow)."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or t.is_meta
                or torch._C._functorch.is_functorch_wrapped_tensor(t))


def check_component_index(index: torch.Tensor, count: int, what: str) -> None:
    """Integer polyphase component indices in ``0..count-1`` (``count = stride**d``;
    ``ValueError`` otherwise), checked where :func:`values_readable` allows."""
    if index.numel() and values_readable(index) and bool(((index < 0) | (index >= count)).any()):
        raise ValueError(f"{_prefix(what)}index values must lie in 0..{count - 1} (flat "
                         f"polyphase component indices); got {index.tolist()}")


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


def check_conv_weight(weight: Any, groups: int, what: str, ndim: int = 4,
                      layout: str = "(C_out, C_in // groups, kH, kW)") -> torch.Tensor:
    check_tensor(weight, "weight", what, ndim=ndim, layout=layout)
    if weight.shape[0] % groups:
        raise ValueError(f"{_prefix(what)}groups={groups} must divide C_out="
                         f"{weight.shape[0]} (weight shape {tuple(weight.shape)})")
    return weight


def check_channels(x: torch.Tensor, channels: int, what: str, dim: int = 1,
                   hint: str = "") -> None:
    """``x`` has ``channels`` channels in ``dim`` (``ValueError`` naming the shape)."""
    if x.shape[dim] != channels:
        raise ValueError(f"{_prefix(what)}x must have C_in={channels} channels in dim {dim}"
                         f"{hint}; got shape {tuple(x.shape)}")


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
