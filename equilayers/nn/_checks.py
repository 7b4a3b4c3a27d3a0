"""Constructor and forward checks of the harmonic-field modules, in the vocabulary of those
modules, on top of the one shared rule set (:mod:`equilayers._checks`): each error names the
module, the argument, the value and the fix."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import _checks as C
from ..groups import Group


def positive_int(value, name: str, cls: str, what: str = "the number of fields C") -> int:
    return C.check_int(value, name, cls, minimum=1, fix=what)


def nonnegative_float(value, name: str, cls: str) -> float:
    return C.check_number(value, name, cls, minimum=0)


def function(value, cls: str):
    return C.check_callable(value, "function", cls, fix="e.g. torch.nn.functional.relu")


def function_repr(value, default) -> str:
    """``", function=<name>"`` for a ``function`` other than the module's default (``""``
    for the default), as an ``extra_repr`` part."""
    if value is default:
        return ""
    name = getattr(value, "__name__", None)
    return f", function={name}" if name else f", function={value!r}"


def flag(value, name: str, cls: str) -> bool:
    return C.check_flag(value, name, cls)


def dtype(value, cls: str) -> torch.dtype | None:
    """``None`` or a floating-point ``torch.dtype`` (of the module's parameters/buffers)."""
    return C.check_float_dtype(value, "dtype", cls)


def spatial_dims(value, cls: str) -> int | None:
    """``None`` (the group's default) or the spatial dims of a harmonic module's fields: 2
    (images) or 3 (volumes: SO(3)/O(3) fields, or planar fields turned about the depth axis)."""
    if value is None:
        return None
    return C.check_int(value, "spatial_dims", cls, minimum=2, maximum=3,
                       fix="2 for images (B, C, F, H, W), 3 for volumes (B, C, F, D, H, W); "
                       "or None for the group's; for fibers alone (B, C, F), wrap the module in "
                       "OnFibers")


def choice(value, name: str, cls: str, options: tuple[str, ...]) -> str:
    return C.check_choice(value, name, options, cls)


def fields(x: torch.Tensor, channels: int, cls: str, name: str = "channels", ndim: int = 5,
           param: torch.Tensor | None = None, low_precision_input: bool = False) -> None:
    """``x`` is 5-D (6-D: SO(3) fields) with ``channels`` fields (the fiber is checked by the
    functional), in the dtype of the module's parameter ``param`` (or a mismatch autocast or
    ``low_precision_input`` allows: :func:`equilayers._checks.check_dtype_match`)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{cls} expects a tensor; got {type(x).__name__}{C.proxy_fix(x)}")
    if x.dim() != ndim:
        layout = "(B, C, 2M+1, H, W)" if ndim == 5 else "(B, C, (M+1)^2, D, H, W)"
        raise ValueError(f"{cls} expects a {ndim}-D harmonic field {layout}; got shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != channels:
        fix = (f"pass {channels} fields: x has none" if x.shape[1] == 0
               else f"build it with {name}={x.shape[1]}")
        raise ValueError(f"{cls}({name}={channels}) expects C={channels} fields in dim 1; got "
                         f"shape {tuple(x.shape)} ({fix})")
    C.check_dtype_match(x, param, cls, low_precision_input=low_precision_input)


def _order_of_fiber(f: int, volume: bool) -> int | None:
    """The ``M`` whose harmonic fiber has ``f`` slots (``2M+1``; SO(3): ``(M+1)^2``), or
    ``None`` when no order has that many."""
    if volume:
        # (integer comparisons, not math.isqrt: under torch.compile(dynamic=True) the fiber
        # size is a SymInt, which math.isqrt does not take; fibers are a few dozen slots)
        root = 0
        while (root + 1) * (root + 1) <= f:
            root += 1
        return root - 1 if root >= 1 and root * root == f else None
    return (f - 1) // 2 if f % 2 == 1 else None


def module_label(module: nn.Module) -> str:
    """``Name(group='c8', max_order=1)``: the module with the settings that fix its fiber
    (those it has; ``group`` only where one is set)."""
    parts = []
    group = getattr(module, "group", None)
    if group is not None:
        parts.append(f"group={getattr(group, 'name', group)!r}")
    if getattr(module, "max_order", None) is not None:
        parts.append(f"max_order={module.max_order}")
    return f"{type(module).__name__}({', '.join(parts)})"


def field_rank(x, module: nn.Module, ndim: int, what: str, lift: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a tensor and ``ValueError`` unless it is
    ``ndim``-D, naming the module (:func:`module_label`), ``what`` it expects (e.g.
    ``"harmonic field (B, C, 2M+1, H, W) = (B, C, 3, H, W)"``) and, for an input one
    dimension short (an image or volume), the layer that ``lift``s it to such fields: the
    module's message, not its functional's."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{module_label(module)} expects a {what}; got "
                        f"{type(x).__name__}{C.proxy_fix(x)}")
    C.check_tensor(x, "x", module_label(module), floating=False)  # dense: a nested one has
    # no shape to read
    if x.dim() != ndim:
        fix = ""
        if x.dim() == ndim - 1:  # an image or volume: no fiber axis yet
            kind = "a volume (B, C, D, H, W)" if ndim == 6 else "an image (B, C, H, W)"
            fix = f" ({kind} has no fiber axis: lift it first with {lift})"
        raise ValueError(f"{module_label(module)} expects a {ndim}-D {what}; got a "
                         f"{x.dim()}-D tensor of shape {tuple(x.shape)}{fix}")


def harmonic_fiber(x, module: nn.Module) -> None:
    """Raise ``ValueError`` unless dim 2 of ``x`` is a harmonic fiber of orders
    ``0..module.max_order`` (``2M+1`` slots; SO(3)/O(3) fields: ``(M+1)^2``), naming the
    module, both fibers and the fix: the ``max_order`` the input has. A ``max_order`` of
    ``None`` (read from the input) asks only for a harmonic fiber. A non-tensor or a wrong
    rank is named as the module's too (:func:`field_rank`); its spatial dims are its
    ``in_type``'s (a volume of planar fields is 6-D)."""
    group = getattr(module, "group", None)
    volume = getattr(group, "spatial_dim", 2) == 3  # SO(3)/O(3): (M+1)^2 slots
    in_type = getattr(module, "in_type", None)
    dims = in_type.spatial_dims if in_type is not None else 3 if volume else 2
    space = "D, H, W" if dims == 3 else "H, W"
    max_order = getattr(module, "max_order", None)
    if volume:
        layout = "(B, C, (M+1)^2, D, H, W)" + (
            "" if max_order is None else f" = (B, C, {(max_order + 1) ** 2}, D, H, W)")
    else:
        layout = f"(B, C, 2M+1, {space})" + (
            "" if max_order is None else f" = (B, C, {2 * max_order + 1}, {space})")
    if isinstance(x, torch.Tensor) and x.dim() == 6 and dims == 2:
        raise ValueError(f"{module_label(module)} expects a 5-D harmonic field {layout}; got "
                         f"a 6-D tensor of shape {tuple(x.shape)} (a volume of planar fields "
                         f"(B, C, 2M+1, D, H, W): build it with spatial_dims=3)")
    field_rank(x, module, 3 + dims, f"harmonic field {layout}",
               "SteerableConv3d(..., max_order=M)" if dims == 3
               else "LiftingConv2d(..., group=..., max_order=M)")
    f = int(x.shape[2])
    implied = _order_of_fiber(f, volume)
    formula = "(max_order+1)^2" if volume else "2*max_order+1"
    if max_order is None:
        if implied is not None:
            return
        expects = f"{module_label(module)} expects a harmonic fiber of {formula} slots in dim 2"
    else:
        want = (max_order + 1) ** 2 if volume else 2 * max_order + 1
        if f == want:
            return
        expects = (f"{module_label(module)} expects a fiber of {want} slots (orders 0..{max_order}"
                   f"{', (max_order+1)^2' if volume else ''}) in dim 2")
    if implied is None:
        got, fix = (f"got F={f}, which no order gives", "pass harmonic fields (regular fields "
                    "go through RegularToHarmonic first)")
    else:
        got, fix = f"got F={f} (orders 0..{implied})", f"build it with max_order={implied}"
    raise ValueError(f"{expects}; {got}, shape {tuple(x.shape)}: {fix}")


def gate_fields(x, module: nn.Module) -> None:
    """Raise ``ValueError`` unless a ``gates="first_half"`` module gets an even number of
    fields (``C`` gates, then the ``C`` fields they gate), naming the module and the fix."""
    if getattr(module, "gates", None) != "first_half" or not isinstance(x, torch.Tensor):
        return
    c = int(x.shape[1]) if x.dim() >= 2 else 0
    if c % 2 == 0:
        return
    label = module_label(module)
    raise ValueError(f"{label[:-1]}, gates='first_half') expects an even number of fields in "
                     f"dim 1 (C gate fields, then the C gated fields); got C={c} in shape "
                     f"{tuple(x.shape)}: give it 2C fields (a conv with out_channels={c + 1}, "
                     "say), or gates='own' to gate each field by its own order 0")


def regular_fiber(x, module: nn.Module) -> None:
    """Raise ``ValueError`` unless ``x`` is 5-D and its dim 2 has the ``|G|`` slots of a regular
    fiber of ``module.group``, naming the module and the fix."""
    group = module.group
    assert isinstance(group, Group)  # the modules that take regular fields hold their group
    order = int(group.order)
    field_rank(x, module, 5, f"regular {group.name} field (B, C, |G|, H, W) = (B, C, {order}, H, "
               "W)", f"LiftingConv2d(..., group={group.name!r})")
    if int(x.shape[2]) == order:
        return
    f = int(x.shape[2])
    raise ValueError(f"{module_label(module)} expects a regular {group.name} fiber of "
                     f"|G|={order} slots in dim 2; got F={f}, shape {tuple(x.shape)}: build it "
                     f"with the group whose regular fields the input holds (|G| = {f})")


def check_input_once(module: nn.Module, x, options: tuple,
                     check: Callable[[], bool | None]) -> None:
    """Run ``check()`` (a conv's input checks) and the dtype check (a floating ``x`` in the
    weight's dtype, or autocast on for its device) unless ``x`` is like the last input they
    passed for ``module``: the key is ``x``'s shape, dtype and device, the weight's device
    and dtype, the autocast flag and ``options``, which must hold every other value
    ``check`` reads (so the key cannot match an input or a setting the checks were not run
    for). Not memoized for non-tensors, while ``torch.compile`` or ``torch.jit.trace``
    traces, or when ``check()`` returns ``False`` (a part of it that could not be settled for
    this input yet, e.g. an exactness warning skipped under ``quiet_exactness_warnings``).
    (The checks read the input's sizes, which ``torch.jit.trace`` records: run on the first
    traced call and skipped on the next, they made the two graphs differ, and the default
    ``check_trace`` of ``torch.jit.trace`` failed.)"""
    key = None
    weight = module.weight
    if isinstance(weight, torch.fx.Proxy) or isinstance(x, torch.fx.Proxy):
        C.check_tensor(x if isinstance(x, torch.fx.Proxy) else weight, "x",
                       type(module).__name__)  # the TypeError that names the fx fix
    assert isinstance(weight, torch.Tensor)  # the convs that call this have a weight
    if (isinstance(x, torch.Tensor) and not x.is_nested and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()):
        amp = C.autocast_on(x.device.type)
        key = (x.shape, x.dtype, x.device, weight.device, weight.dtype, amp, *options)
        if key == module.__dict__.get("_checked"):
            return
    settled = check()
    C.check_dtype_match(x, weight, type(module).__name__)
    C.check_device_match(x, weight, type(module).__name__)
    if key is not None and settled is not False:
        module.__dict__["_checked"] = key


#: the ``__dict__`` entry where a transposed conv keeps the output paddings that its calls'
#: ``output_size`` asked for (read by :func:`equilayers.export`)
OUTPUT_SIZE_CALLS = "_output_size_calls"


def note_output_size(module: nn.Module, op: tuple) -> None:
    """Record on ``module`` (a transposed conv) that a call passed ``output_size``, which
    asked for the output padding ``op``: its exported form (:func:`equilayers.export`, an
    ``nn.Sequential`` of reshapes around ``nn.ConvTranspose2d`` / ``3d``) takes no
    ``output_size``, and ``export`` warns, naming the layer and the padding to build it
    with. Not while ``torch.compile`` / ``torch.export`` traces (a write there would break
    the graph); a padding that is not an int (traced) is kept as ``None``."""
    if torch.compiler.is_compiling():
        return
    key = tuple(v if isinstance(v, int) else None for v in op)
    seen = module.__dict__.get(OUTPUT_SIZE_CALLS, frozenset())
    if key not in seen:
        module.__dict__[OUTPUT_SIZE_CALLS] = seen | {key}
