"""Scalars, choices, tensors and dtypes: the argument checks every floor uses
(:mod:`equilayers._checks`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import torch

from .._proxy import proxy_fix

__all__ = [
    "proxy_fix",
    "PADDING_MODES",
    "BLUR_PADDING_MODES",
    "MAX_BLUR_SIZE",
    "is_int",
    "as_index",
    "check_int",
    "check_optional_int",
    "check_norm_args",
    "check_order",
    "check_pair",
    "check_triple",
    "check_cubic",
    "check_square_filters",
    "check_strided_padding",
    "is_collection",
    "check_shift_list",
    "check_number",
    "check_choice",
    "check_bool",
    "check_flag",
    "check_callable",
    "check_module",
    "check_float_dtype",
    "autocast_on",
    "check_dtype_match",
    "check_device_match",
    "check_tensors_match",
    "check_group_map",
    "check_order_bias",
    "check_tensor",
]

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


def as_index(value: Any) -> int | None:
    """An int from an integer or a 0-d integer tensor (``torch.arange(4)``'s items), else
    ``None``."""
    if is_int(value):
        return int(value)
    if (isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point()
            and not value.is_complex() and value.dtype != torch.bool):
        return int(value.item())
    return None


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def check_int(value: Any, name: str, what: str = "", *, minimum: int | None = None,
              maximum: int | None = None, fix: str = "", or_zero: bool = False) -> int:
    """``value`` as an int, or ``TypeError`` (not an int) / ``ValueError`` (out of range);
    ``or_zero``: 0 is allowed besides the range (``spatial_dims=0``, a fiber alone)."""
    must = ("0 or " if or_zero else "") + "an integer" + _bounds(minimum, maximum)
    if not is_int(value):
        raise _err(TypeError, what, name, value, must, fix)
    if or_zero and value == 0:
        return 0
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


def check_norm_args(eps: Any, momentum: Any, what: str, *, momentum_none: bool = False
                    ) -> tuple[float, float | None]:
    """A batch norm's ``eps > 0`` and ``momentum`` in ``[0, 1]`` (``None``, a cumulative
    average, where ``momentum_none``: the modules, as ``nn.BatchNorm``), as floats."""
    e = check_number(eps, "eps", what, positive=True,
                     fix="it keeps the division by the standard deviation finite, e.g. 1e-5")
    if momentum is None and momentum_none:
        return e, None
    m = check_number(momentum, "momentum", what, minimum=0, maximum=1,
                     fix="the weight of the newest batch in the running statistics"
                     + (" (None: a cumulative average)" if momentum_none else ""))
    return e, m


@overload
def check_order(value: Any, name: str, what: str = "", *, optional: Literal[False] = False,
                fix: str = "") -> int: ...


@overload
def check_order(value: Any, name: str, what: str = "", *, optional: bool,
                fix: str = "") -> int | None: ...


def check_order(value: Any, name: str, what: str = "", *, optional: bool = False,
                fix: str = "") -> int | None:
    """A rotation order (a harmonic fiber's ``max_order``, an irrep's ``l``): an integer
    >= 0 (numpy's too), or ``None`` where ``optional``; ``TypeError`` for a non-integer,
    ``ValueError`` below 0."""
    if value is None and optional:
        return None
    return check_int(value, name, what, minimum=0, fix=fix or (
        f"a harmonic fiber of orders 0..{name} has 2*{name}+1 slots (SO(3): ({name}+1)^2)"))


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


def check_triple(value: Any, name: str, what: str = "", *, minimum: int | None = None,
                 fix: str = "an int or three ints (D, H, W)") -> tuple[int, int, int]:
    """An int or three ints ``(D, H, W)`` (``nn.Conv3d``'s ``stride``, ``dilation``...) as a
    triple."""
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise _err(ValueError, what, name, value, "an int or three ints (D, H, W)")
        d, h, w = (check_int(v, f"{name}[{i}]", what, minimum=minimum, fix=fix)
                   for i, v in enumerate(value))
        return (d, h, w)
    v = check_int(value, name, what, minimum=minimum, fix=fix)
    return (v, v, v)


def check_cubic(value: Any, name: str, what: str = "", dims: int = 3, *,
                axial: bool = False) -> int:
    """A cubic kernel's size (``dims=2``: a square one's): an int >= 1 or ``dims`` equal ones
    (the rotations move the kernel's axes into each other), as an int. ``axial``: a group
    conv of ``c4z``/``d4z``, whose rotations keep the depth but whose bases are cubic."""
    ks = (check_triple if dims == 3 else check_pair)(value, name, what, minimum=1)
    if len(set(ks)) != 1:
        shape = "cubic (k, k, k)" if dims == 3 else "square (k, k)"
        if axial:
            raise _err(ValueError, what, name, value, f"{shape}: {what}'s voxel and harmonic "
                       "bases are built on cubes (c4z/d4z keep the depth, but the filters here "
                       "are cubic for every group)", "use one size for all 3 dims, or "
                       "SteerableConv3d(..., group='c4' / 'd4') for a (k_d, k, k) kernel about "
                       "the depth axis")
        raise _err(ValueError, what, name, value, f"{shape}: the rotations move the kernel's "
                   "axes into each other", f"use one size for all {dims} dims")
    return ks[0]


def check_square_filters(weight: torch.Tensor, what: str) -> None:
    """A 2-D group conv weight's filters are square, ``k x k`` (the rotations map them onto
    themselves)."""
    if weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"{_prefix(what)}weight must have square filters (rotations map k x k "
                         f"onto itself); got shape {tuple(weight.shape)}")


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


def is_collection(value: Any) -> bool:
    """Iterable as a list of items: not a string, not a scalar, not a 0-d tensor (which has
    ``__iter__`` but raises torch's bare "iteration over a 0-d tensor")."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return False
    return not (isinstance(value, torch.Tensor) and value.dim() == 0)


def check_shift_list(value: Any, name: str = "shifts", what: str = "", *,
                     form: str = "integer pairs (dy, dx)") -> list[Any]:
    """A list of shifts, each a sequence of ints that the caller checks (:func:`check_pair`).
    ``ValueError`` when it is empty; ``TypeError`` for a string or a non-iterable, and for a
    bare integer among the entries: ``shifts=(1, 2)`` reads as one shift by ``(1, 2)``, but
    :func:`check_pair` would take each integer ``n`` as the shift ``(n, n)``."""
    if not is_collection(value):
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
    """``True`` or ``False`` (or ``None`` when ``optional``), numpy's bools and 0-d bool
    tensors taken as Python's; ``TypeError`` otherwise (``0`` and ``1`` are not flags)."""
    if (value is None and optional) or isinstance(value, bool):
        return value
    if (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")) or (
            isinstance(value, torch.Tensor) and value.dim() == 0
            and value.dtype == torch.bool):
        return bool(value)
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


def check_device_match(x: Any, param: torch.Tensor | None, what: str) -> None:
    """A tensor ``x`` on the device of a module's parameters ``param`` (``ValueError`` naming
    both devices and the two moves, where torch would raise a device error from deep inside
    the op; a module on the meta device must be materialized first)."""
    if param is None or not isinstance(x, torch.Tensor) or x.device == param.device:
        return
    meta = ("; a module built on the meta device must be materialized first "
            "(module.to_empty(device=...), then load_state_dict or reset_parameters)"
            if param.is_meta else "")
    raise ValueError(f"{what}: x is on {x.device} but the module's parameters are on "
                     f"{param.device}; move the input (x.to({str(param.device)!r})) or the "
                     f"module (module.to(x.device)){meta}")


_GROUP_MAPS = {2: "5-D (B, C, F, H, W)", 3: "6-D (B, C, F, D, H, W)"}


def check_group_map(x: Any, what: str, spatial: Sequence[int] = (2,), hint: str = "", *,
                    floating: bool = True) -> None:
    """``x`` is a group feature map: ``(B, C, F, H, W)`` on images (spatial dims 2),
    ``(B, C, F, D, H, W)`` on volumes (3), of the ranks ``spatial`` allows, floating point
    unless ``floating=False``; ``hint`` (``" (use ...)"``) ends the rank error."""
    check_tensor(x, "x", what, floating=False)
    if x.dim() - 3 not in spatial:
        layout = " or ".join(_GROUP_MAPS[s] for s in spatial)
        raise ValueError(f"{what} expects a {layout} group feature map; got shape "
                         f"{tuple(x.shape)}{hint}")
    if floating:
        check_tensor(x, "x", what)


def check_order_bias(bias: Any, x: torch.Tensor, max_order: int, what: str) -> None:
    """``None`` or a floating ``(C, max_order + 1)`` bias, one value per field of ``x`` (dim 1)
    and rotation order, on ``x``'s device and in its dtype (a norm nonlinearity's)."""
    if bias is None:
        return
    check_tensor(bias, "bias", what, ndim=2, layout="(C, max_order + 1)")
    c = int(x.shape[1])
    if tuple(bias.shape) != (c, max_order + 1):
        raise ValueError(f"{what}: bias must be (C, max_order + 1) = ({c}, {max_order + 1}) "
                         f"for x of shape {tuple(x.shape)} (C={c} fields); got bias of shape "
                         f"{tuple(bias.shape)}")
    check_tensors_match(x, what, (("bias", bias),))  # the rule of every weighted op


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
    """A dense tensor (``TypeError`` otherwise), floating point when ``floating``
    (``TypeError`` naming the dtype and the fix), with ``ndim`` dims (an int or the allowed
    ranks) or at least ``min_ndim`` (``ValueError`` naming the shape; ``layout`` describes
    it)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{_prefix(what)}{name} must be a tensor; got {type(x).__name__}"
                        + proxy_fix(x))
    if floating and x.dtype not in _COMPUTE_DTYPES:
        raise TypeError(f"{_prefix(what)}{name} has dtype {x.dtype}, but it must be a "
                        f"floating-point tensor (float32, float64, float16 or bfloat16); "
                        f"convert it with {name}.float()")
    if x.layout != torch.strided or x.is_nested:  # (deep errors in reshape, pad or amax)
        got = ("a nested tensor: stack its items into one batch (torch.nested.to_padded_"
               "tensor, or loop over them)" if x.is_nested else f"layout {x.layout} (shape "
               f"{tuple(x.shape)}). Convert it with {name}.to_dense()")
        raise TypeError(f"{_prefix(what)}{name} must be a dense (strided) tensor; got {got}")
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
