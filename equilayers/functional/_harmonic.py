"""Operations on harmonic fields ``(B, C, 2M+1, H, W)``: ``[a_0, c_1, s_1, ..., c_M, s_M]``.

A rotation by ``t`` turns each pair ``(c_m, s_m)`` by ``m t`` and the flip negates one of its
entries (see :func:`equilayers.groups.harmonic_matrix`); ``a_0`` is invariant. So every map here
acts on the magnitude ``|v_m| = sqrt(c_m^2 + s_m^2)`` of each pair, or on ``a_0`` as a signed
scalar, and commutes with both.

Precision: squares of float16 values overflow from 256 on (``256^2 > 65504``), so magnitudes of
half-precision inputs (float16, bfloat16) are computed in float32 and cast back; float32 and
float64 take the fast paths below unchanged. Under ``torch.func`` transforms (``grad``,
``vmap``, ``jvp``) and forward-mode AD (``torch.autograd.forward_ad``) :func:`norm_pool` takes a
path of plain differentiable ops (its fast path writes into ``out=`` buffers, which functorch
cannot batch and forward-mode AD cannot differentiate).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import GroupLike, get
from ..kernels._autodiff import batched_grad, transforms_active
from . import _harmonic3d as H3
from ._norm_map import norm_map
from ._steerable3d import order0_bias
from ._steerable_expand import expand_steerable

__all__ = [
    "check_harmonic",
    "check_floating",
    "norm_nonlinearity",
    "gated_nonlinearity",
    "norm_pool",
    "steerable_conv2d",
    "GATES",
]

GATES = ("own", "first_half")
ORDER0 = ("function", "norm")
#: How a norm nonlinearity's bias enters: ``"add"`` ``function(|v| + b)``, ``"exp"``
#: ``function(|v| - exp(b))`` (escnn's and e2cnn's ``n_relu``: ``b`` is the log of a threshold
#: that stays positive).
BIAS_FORMS = ("add", "exp")


def check_floating(x: torch.Tensor, what: str, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` is a real floating-point tensor (integer, bool and
    complex fibers have no meaningful rotation here; an integer Fourier matrix is all zeros)."""
    C.check_tensor(x, name, what)


def check_order(max_order, what: str, name: str = "max_order") -> int:
    """``max_order`` as an int >= 0 (``TypeError`` for a non-integer, ``ValueError`` below 0)."""
    return C.check_int(max_order, name, what, minimum=0, fix=f"fiber 2*{name}+1")


def check_harmonic(x: torch.Tensor, max_order: int, what: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, C, 2 * max_order + 1, H, W)`` (or a volume
    of them, ``(B, C, 2M+1, D, H, W)``: :func:`on_planes`), ``TypeError`` unless it is a
    real floating-point tensor."""
    check_order(max_order, what)
    check_floating(x, what)
    if x.dim() not in (5, 6) or x.shape[2] != 2 * max_order + 1:
        hint = ("; SO(3)/O(3) fields (B, C, (max_order+1)^2, D, H, W) need group='so3' or "
                "'o3'" if x.dim() == 6 and x.shape[2] == (max_order + 1) ** 2 else "")
        raise ValueError(f"{what} expects a harmonic field (B, C, 2*max_order+1, H, W) = "
                         f"(B, C, {2 * max_order + 1}, H, W) for max_order={max_order} (or a "
                         f"volume of them, (B, C, {2 * max_order + 1}, D, H, W)); got shape "
                         f"{tuple(x.shape)}{hint}")


def on_planes(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn``, a map of planar harmonic fields ``(B, C, F, H, W)`` that treats every position
    alike (pointwise maps, statistics over ``B, H, W``), on ``x``; on a volume of planar
    fields ``(B, C, F, D, H, W)`` (a planar group turning every depth slice, :class:`~equilayers.
    groups.FieldType`), on its view ``(B, C, F, D, H * W)``, the result viewed back."""
    if x.dim() != 6:
        return fn(x)
    return fn(x.flatten(-2)).unflatten(-1, x.shape[-2:])


def _check_function(function, what: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``function`` checked callable, returned as a callable that raises a ``ValueError``
    where it does not keep its input's shape (the maps apply it elementwise; a reduction
    would return a wrongly shaped output or fail deep in torch); torch's ReLU as it is (the
    fast paths recognise it)."""
    C.check_callable(function, "function", what, fix="e.g. torch.nn.functional.relu")
    if function in (F.relu, torch.relu):
        return function
    return _Pointwise(function, what)


class _Pointwise:
    """A user's ``function``, checked to keep the shape of what it is applied to."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], what: str) -> None:
        self.function, self.what = function, what

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        out = self.function(t)
        if not isinstance(out, torch.Tensor) or out.shape != t.shape:
            name = getattr(self.function, "__name__", repr(self.function))
            got = (f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                   else f"a {type(out).__name__}")
            raise ValueError(f"{self.what}: function must be elementwise and return a tensor "
                             f"of its input's shape {tuple(t.shape)} (e.g. F.relu, F.elu, "
                             f"torch.tanh); {name} returned {got}")
        return out


def _low_precision(x: torch.Tensor) -> bool:
    """float16/bfloat16 (anything below float32): magnitudes are computed in float32."""
    return x.dtype not in (torch.float32, torch.float64)


def _volume_fields(group: GroupLike | None, what: str) -> bool:
    """Whether ``group`` names SO(3)/O(3) harmonic fields (the 3-D layout of
    :mod:`._harmonic3d`); ``None`` and the planar groups keep the planar layout."""
    if group is None:
        return False
    try:
        grp = get(group)
        grp.harmonic_size(0)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: group={group!r} has no harmonic fields ({e}); use None (any "
                      "planar group), a planar group, 'so3' or 'o3'") from None
    return grp.spatial_dim == 3


def norm_nonlinearity(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    max_order: int,
    function: Callable[[torch.Tensor], torch.Tensor] = F.relu,
    eps: float = 1e-6,
    order0: str = "function",
    *,
    group: GroupLike | None = None,
    bias_form: str = "add",
) -> torch.Tensor:
    """Norm nonlinearity: ``v_m -> v_m * function(|v_m| + b_m) / |v_m|`` for orders m >= 1,
    and ``a_0 -> function(a_0 + b_0)`` (order 0 is a signed scalar, invariant by itself).

    ``bias`` is ``(C, M + 1)`` (one per field and order) in ``x``'s dtype (or a mix that
    ``torch.autocast`` allows; ``TypeError`` otherwise, as every weighted op) or ``None``;
    ``|v_m|`` is computed as ``sqrt(c^2 + s^2 + eps)`` so the map is smooth at 0 (in float32
    for float16/bfloat16 inputs, and so are the scale ``function(|v_m| + b_m) / |v_m|`` and
    its product with ``v_m``, then cast back: a float16 input never overflows; bfloat16, like
    float32, overflows where a square passes float32's range, ``|v_m|`` above about 1.8e19,
    as ``torch.linalg.vector_norm`` does).
    ``order0="norm"`` treats order 0 as a one-dimensional norm field too,
    ``a_0 -> sign(a_0) * function(|a_0| + b_0)`` (escnn's ``NormNonLinearity`` on a trivial
    field: both signs survive). A negative bias is a threshold: with ``function=relu``,
    magnitudes below ``-b`` are cut to 0 (:class:`~equilayers.nn.NormNonlinearity` starts at
    ``b = -1`` on its norm fields). ``group="so3"``/``"o3"``: SO(3)/O(3) fields ``(B, C,
    (M+1)^2, D, H, W)``, the same map on the norm of each order's ``2l+1`` slots.

    ``bias_form="exp"``: ``bias`` holds the logs of the thresholds, ``v -> v function(|v| -
    exp(b)) / |v|`` on every norm field (escnn's and e2cnn's ``n_relu`` with its
    ``log_bias``: the same map as ``"add"`` with ``-exp(b)``, but a learned threshold stays
    positive and moves by factors); needs ``order0="norm"`` (order 0 a norm field too).

    A volume of planar fields ``(B, C, 2M+1, D, H, W)`` (a planar group turning every depth
    slice) gets the planar map on every voxel; so do :func:`gated_nonlinearity`,
    :func:`norm_pool` (``-> (B, C (M+1), D, H, W)``), :func:`harmonic_batch_norm` and
    :func:`fourier_nonlinearity`.
    """
    what = "norm_nonlinearity"
    volume = _volume_fields(group, what)
    function = _check_function(function, what)
    eps = C.check_number(eps, "eps", what, positive=True, fix="e.g. eps=1e-6")
    C.check_choice(order0, "order0", ORDER0, what, fix="'function': a_0 -> function(a_0 + b_0), "
                   "'norm': a_0 -> sign(a_0) function(|a_0| + b_0)")
    bias = threshold_bias(bias, bias_form, order0, what)
    if volume:
        return H3.norm_nonlinearity3d(x, bias, max_order, function, eps, order0)
    check_harmonic(x, max_order, what)
    C.check_order_bias(bias, x, max_order, what)
    return on_planes(x, lambda v: norm_map(v, bias, max_order, function, eps, order0))


def threshold_bias(bias: torch.Tensor | None, bias_form: str, order0: str, what: str
                   ) -> torch.Tensor | None:
    """The additive bias of :func:`norm_nonlinearity` for ``bias_form``: ``bias`` itself
    (``"add"``) or ``-exp(bias)`` (``"exp"``, which needs ``order0="norm"``)."""
    C.check_choice(bias_form, "bias_form", BIAS_FORMS, what,
                   fix="'add': function(|v| + b), 'exp': function(|v| - exp(b)) (escnn's n_relu)")
    if bias_form == "exp" and order0 != "norm":
        raise ValueError(f"{what}: bias_form='exp' thresholds norm fields, function(|v| - "
                         f"exp(b)), and order 0 must be one too: pass order0='norm' (got "
                         f"order0={order0!r}), or keep bias_form='add'")
    if bias_form == "add" or bias is None:
        return bias
    C.check_tensor(bias, "bias", what, ndim=2, layout="(C, max_order + 1)")
    return -bias.exp()


def gated_nonlinearity(
    x: torch.Tensor,
    max_order: int,
    function: Callable[[torch.Tensor], torch.Tensor] = F.relu,
    gates: str = "own",
    *,
    group: GroupLike | None = None,
) -> torch.Tensor:
    """Gated nonlinearity: ``v_m -> sigmoid(g) v_m`` (m >= 1) and ``a_0 -> function(a_0)``.

    ``gates="own"`` (default): each field's own order-0 slot is its gate, ``g = a_0``;
    ``(B, C, 2M+1, H, W) -> (B, C, 2M+1, H, W)``. ``gates="first_half"`` (escnn's
    ``GatedNonLinearity1`` default split): the first half of the fields are gate fields, of
    which only the invariant order-0 slot is read; gate field ``i`` gates field ``C + i``, and the
    gates are dropped: ``(B, 2C, 2M+1, H, W) -> (B, C, 2M+1, H, W)``. A gate is invariant, so
    either way the map commutes with every rotation and flip of the fiber. ``group="so3"``/
    ``"o3"``: SO(3)/O(3) fields ``(B, C, (M+1)^2, D, H, W)``. A float16 input is gated in
    float32 and cast back (the gate's gradient sums over the slots and can pass 65504).
    """
    volume = _volume_fields(group, "gated_nonlinearity")
    function = _check_function(function, "gated_nonlinearity")
    C.check_choice(gates, "gates", GATES, "gated_nonlinearity",
                   fix="'own': each field gated by its own a_0, 'first_half': the first C of 2C "
                   "fields are gates")
    if volume:
        return H3.gated_nonlinearity3d(x, max_order, function, gates)
    check_harmonic(x, max_order, "gated_nonlinearity")
    return on_planes(x, lambda v: H3.gated_map(v, max_order, function, gates))


def norm_pool(x: torch.Tensor, max_order: int, *, group: GroupLike | None = None
              ) -> torch.Tensor:
    """The magnitude of every order: ``(B, C, 2M+1, H, W) -> (B, C * (M + 1), H, W)``.

    Channel ``c * (M + 1) + m`` is ``|v_m|`` of field ``c`` (``|a_0|`` for order 0): a
    plain (trivial) feature map, invariant to the fiber action, so rotating the input only moves
    it spatially. Computed as ``(v * v)`` summed over each pair, then ``sqrt`` (faster on CPU
    than ``Tensor.norm`` over a middle dim); the gradient at an exactly zero magnitude is 0.
    float16/bfloat16 inputs are squared and summed in float32 (finite wherever
    ``torch.linalg.vector_norm`` is), and the result cast back. ``group="so3"``/``"o3"``:
    SO(3)/O(3) fields ``(B, C, (M+1)^2, D, H, W) -> (B, C (M+1), D, H, W)``.
    """
    if _volume_fields(group, "norm_pool"):
        return H3.norm_pool3d(x, max_order)
    check_harmonic(x, max_order, "norm_pool")
    if x.dim() == 6:  # a volume of planar fields
        return on_planes(x, lambda v: norm_pool(v, max_order))
    b, c, f, h, w = x.shape
    shape = (b, c * (max_order + 1), h, w)
    if _low_precision(x):
        return _plain_norms(x.float()).to(x.dtype).reshape(shape)
    if torch.compiler.is_compiling():  # no out= buffers in a traced graph: plain ops
        if not max_order:
            return x.abs().reshape(shape)
        # order 0 as |a_0| (sqrt(a_0^2) has gradient 0 where a_0^2 underflows: the eager
        # path's is sign(a_0))
        sq = (x[:, :, 1:] * x[:, :, 1:]).unflatten(2, (-1, 2)).sum(3)
        return torch.cat([x[:, :, :1].abs(), _SafeSqrt.apply(sq)], 2).reshape(shape)
    if transforms_active() or torch.jit.is_tracing():
        # grad / vmap / jvp, forward-mode AD (an out= op has no forward derivative), or
        # torch.jit.trace (a Python autograd Function is an op a saved TorchScript graph
        # cannot hold): no out= ops, no custom Function
        return _plain_norms(x).reshape(shape)
    if x.requires_grad and torch.is_grad_enabled():
        return _NormPool.apply(x).reshape(shape)
    return _norms(x).reshape(shape)


def _plain_norms(x: torch.Tensor) -> torch.Tensor:
    """:func:`_norms` with plain differentiable ops (``|a_0|``, and ``sqrt`` behind a double
    ``where`` so the gradient at 0 is 0, not NaN): the torch.func and half-precision path."""
    a0 = x[:, :, :1].abs()
    if x.shape[2] == 1:
        return a0
    sq = (x[:, :, 1:] * x[:, :, 1:]).unflatten(2, (-1, 2)).sum(3)
    zero = sq == 0  # not ``sq > 0``: a NaN must stay NaN, not become a norm of 0
    return torch.cat([a0, torch.where(zero, 0.0, torch.where(zero, 1.0, sq).sqrt())], 2)


def _norms(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, M + 1, H, W)``: ``|a_0|`` and ``sqrt(c_m^2 + s_m^2)``, in one buffer."""
    f = x.shape[2]
    out = x.new_empty((*x.shape[:2], (f + 1) // 2, *x.shape[3:]))
    if f == 1:
        return torch.abs(x, out=out)
    (a0, v), (o0, ov) = x.split([1, f - 1], 2), out.split([1, f // 2], 2)
    torch.abs(a0, out=o0)
    torch.sum((v * v).unflatten(2, (-1, 2)), 3, out=ov).sqrt_()
    return out


class _SafeSqrt(torch.autograd.Function):
    """``sqrt`` whose gradient is 0 (not inf, which becomes NaN) where the input is 0 (the
    traced path of :func:`norm_pool`)."""

    @staticmethod
    def forward(sq: torch.Tensor) -> torch.Tensor:
        return sq.sqrt()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return torch.where(out == 0, 0.0, grad / (2 * out))  # NaN stays NaN


class _NormPool(torch.autograd.Function):
    """Per-order norms with a hand-written backward ``x * g / |v|`` (0 where ``|v| = 0``: norm
    nonlinearities and zero backgrounds make exact zeros common), written straight into the
    gradient buffer: autograd through ``cat``, ``sum`` and a guarded ``sqrt`` measured 1.4x
    the floor at (16, 16, 5, 32, 32) on CPU."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = _norms(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        # order 0: d|a_0|/da_0 = sign(a_0), exact; orders >= 1: v * grad / |v|, with |v| read
        # as at least the smallest normal float: grad / |v| overflowed to inf at a subnormal
        # |v| (x * grad / |a_0| at a_0 = 1e-40 in float32 too); below it the gradient keeps
        # v's direction and is |v| / tiny of its size. (0 where v = 0: NaN stays NaN.)
        scale = grad[:, :, 1:] / out[:, :, 1:].clamp_min(torch.finfo(out.dtype).tiny)
        if torch.is_grad_enabled() or batched_grad(grad):
            # create_graph=True: the same product, differentiable (and no out= buffer, which
            # a batch of gradients, is_grads_batched=True, cannot be written into)
            return torch.cat([x[:, :, :1].sign() * grad[:, :, :1],
                              (x[:, :, 1:].unflatten(2, (-1, 2)) * scale.unsqueeze(3)
                               ).reshape(x[:, :, 1:].shape)], 2)
        gx = torch.empty_like(x)
        f = x.shape[2]
        if f == 1:
            return torch.sign(x, out=gx).mul_(grad)
        (a0, v), (g0, gv) = x.split([1, f - 1], 2), gx.split([1, f - 1], 2)
        torch.sign(a0, out=g0).mul_(grad[:, :, :1])
        torch.mul(v.unflatten(2, (-1, 2)), scale.unsqueeze(3), out=gv.unflatten(2, (-1, 2)))
        return gx


def steerable_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    basis: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution with filters in a steerable basis: one ``F.conv2d`` on the flattened fibers.

    Args:
        x: ``(B, C_in, H, W)`` (``F_in = 1``) or ``(B, C_in, F_in, H, W)``.
        weight: ``(C_out, C_in // groups, num_basis)``.
        basis: ``(num_basis, F_out, F_in, k, k)`` from :func:`steerable_basis`.
        bias: ``(C_out,)``, added to fiber slot 0 only (the invariant ``a_0`` of a harmonic
            field); use ``None`` for regular outputs and add a per-field bias yourself.
        stride, padding, dilation, groups: as ``F.conv2d`` (``s``, ``p``, ``d`` below).

    Shape: ``(B, C_out, F_out, H', W')`` with ``H' = (H + 2 p - d (k - 1) - 1) // s + 1``.
    """
    what = "steerable_conv2d"
    check_floating(x, what)
    C.check_tensor(weight, "weight", what, ndim=3, layout="(C_out, C_in // groups, num_basis)")
    C.check_tensor(basis, "basis", what, ndim=5, layout="(num_basis, F_out, F_in, k, k)")
    stride = C.check_pair(stride, "stride", what, minimum=1)
    padding = C.check_pair(padding, "padding", what, minimum=0)
    dilation = C.check_pair(dilation, "dilation", what, minimum=1)
    groups = C.check_int(groups, "groups", what, minimum=1)
    f_in = basis.shape[2]
    if x.dim() == 4 and f_in == 1:
        x = x.unsqueeze(2)
    if x.dim() != 5 or x.shape[2] != f_in:
        raise ValueError(f"steerable_conv2d: the basis expects F_in={f_in} fiber slots, i.e. "
                         f"x of shape (B, C_in, {f_in}, H, W); got {tuple(x.shape)}")
    b, c_in = x.shape[:2]
    h, w = x.shape[-2:]
    C.check_channels(x, weight.shape[1] * groups, what, unit="fields", hint=(
        f" (weight of shape {tuple(weight.shape)}: C_in // groups = {weight.shape[1]} input "
        f"fields, groups={groups})"))
    C.check_bias(bias, (weight.shape[0],), what, per="output field")
    C.check_tensors_match(x, what, (("weight", weight), ("basis", basis), ("bias", bias)))
    kh, kw = basis.shape[-2:]
    C.check_window(x, (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1),
                   (padding[1], padding[1], padding[0], padding[0]), what)
    filt = expand_steerable(weight, basis, groups)
    c_out, f_out = weight.shape[0], basis.shape[1]
    y = F.conv2d(x.reshape(b, c_in * f_in, h, w), filt, order0_bias(bias, f_out), stride,
                 padding, dilation, groups)  # the bias on order 0, inside the conv
    return y.view(b, c_out, f_out, *y.shape[-2:])
