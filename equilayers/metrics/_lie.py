"""Gruver et al.'s Lie derivative: the local equivariance error under continuous transforms."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from ..groups import FieldType
from ..groups._actions import check_rep
from ..testing._fields import declared_type, resolve_field_type
from ..testing._harness import kept_buffers
from ._common import check_batch, check_model, choice, tensor_output

__all__ = ["lie_derivative", "GENERATORS"]

GENERATORS: tuple[Literal["translate_x", "translate_y", "rotate"], ...] = (
    "translate_x", "translate_y", "rotate")
"""The infinitesimal transforms :func:`lie_derivative` takes as ``generator``."""
_WHAT = "lie_derivative"


def _axis_shift(x: torch.Tensor, s: torch.Tensor, dim: int) -> torch.Tensor:
    """Band-limited circular shift along ``dim`` by ``s`` (a tensor broadcastable against the
    other spatial axis, so each row/column may move by its own amount); differentiable in
    ``s``, forward-mode included (``grid_sample`` has no forward-mode derivative)."""
    n = x.shape[dim]
    # float16/bfloat16 through float32 (torch's FFT takes neither on CPU), back to x's dtype
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    freq = torch.fft.fftfreq(n, dtype=xf.real.dtype, device=x.device)
    shape = [1] * x.dim()
    shape[dim] = n
    phase = torch.exp(-2j * math.pi * freq.view(shape) * s)
    out = torch.fft.ifft(torch.fft.fft(xf, dim=dim) * phase, dim=dim)
    return out.to(x.dtype) if x.is_complex() else out.real.to(x.dtype)


def _translate(x: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    return _axis_shift(x, t, dim)


def _shear_rotate(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rotate the last two dims by ``t`` radians counter-clockwise (as displayed) about the
    centre, on the torus, by three Fourier shears (Unser et al. 1995):
    ``R(t) = S_x(-tan(t/2)) S_y(sin t) S_x(-tan(t/2))``, ``S_x(a): (x, y) -> (x + a y, y)``,
    ``S_y(b): (x, y) -> (x, y + b x)`` in the y-up frame. Smooth in ``t``."""
    h, w = x.shape[-2:]
    y_up = ((h - 1) / 2.0 - torch.arange(h, dtype=x.dtype, device=x.device)).view(h, 1)
    x_right = (torch.arange(w, dtype=x.dtype, device=x.device) - (w - 1) / 2.0).view(1, w)
    a = -torch.tan(t / 2)
    b = torch.sin(t)
    x = _axis_shift(x, a * y_up, -1)        # row at height y moves right by a*y
    x = _axis_shift(x, -b * x_right, -2)    # column at x moves up by b*x (down the rows by -b*x)
    return _axis_shift(x, a * y_up, -1)


@contextmanager
def _forward_ad_import_quiet() -> Iterator[None]:
    """Silence torch's own TorchScript deprecation, which torch's forward-mode AD raises the
    first time a process uses it: its import of ``torch._decomp.decompositions_for_jvp`` calls
    ``torch.jit.script`` at import time (a ``DeprecationWarning`` in torch 2.13, hidden by
    default; a ``FutureWarning`` from 2.15 on, shown to every user of this metric, who never
    called TorchScript). Matched by its exact message and the module that warns, whatever
    the category: a warning from the model itself still surfaces."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated\.",
                                category=Warning, module=r"torch\.jit\._script")
        yield


def _path(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "translate_x":
        return lambda z, t: _translate(z, t, -1)
    if name == "translate_y":
        return lambda z, t: _translate(z, t, -2)
    return _shear_rotate


def lie_derivative(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generator: Literal["translate_x", "translate_y", "rotate"] = "translate_x",
    *,
    out_rep: str | FieldType | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> float | torch.Tensor:
    """Lie derivative of ``model`` along a continuous transform (Gruver et al. 2022, "The Lie
    Derivative for Measuring Learned Equivariance", ICLR 2023).

    .. math::
        (L_X f)(x) = \\frac{d}{dt}\\Big|_{t=0} T^{\\mathrm{out}}_{-t}\\, f(T_t\\, x)
                   = J_f(x)\\,(X x) - X^{\\mathrm{out}} f(x)

    computed by forward-mode differentiation (:func:`torch.func.jvp`) of the scalar ``t``
    through the transformed input, the model and (for equivariant outputs) the inverse
    transform of the output. For invariant outputs (logits, ``out_rep="invariant"``) the
    output is not transformed and ``L_X f = J_f(x) (X x)``; it is 0 for an exactly invariant
    model.

    **Aggregation reported**: per sample the squared L2 norm of ``L_X f(x)`` over all output
    entries, ``LEE(x) = ||L_X f(x)||_2^2`` (the local equivariance error); ``reduction="mean"``
    returns its mean over the batch, ``"none"`` the ``(B,)`` per-sample values. Complex
    outputs count ``|.|^2``; a sample whose output is not finite (NaN, inf) scores NaN.

    Transforms (continuous, periodic, band-limited, so smooth in ``t``):

    * ``"translate_x"``: the content moves right by ``t`` pixels (Fourier shift);
    * ``"translate_y"``: the content moves down the rows by ``t`` pixels (like
      :func:`~equilayers.groups.fractional_shift`'s ``dy``);
    * ``"rotate"``: counter-clockwise (as displayed) by ``t`` radians about the image centre,
      on the torus, by three Fourier shears (``grid_sample`` has no forward-mode derivative).

    For outputs with spatial dims (``out_rep`` ``"trivial"``/``"regular"``, from the module's
    ``out_type`` or the rank as in the harness) a translation by ``t`` input pixels moves
    the output by ``t * H_out / H_in``. Rotations of regular or harmonic fibers are not
    continuous actions and raise ``ValueError``.

    Args:
        model: any differentiable module or function.
        x: the batch ``(B, C, H, W)`` (floating point; float64 recommended).
        generator: ``"translate_x"``, ``"translate_y"`` or ``"rotate"``.
        out_rep: override the output's rep (a name or a FieldType).
        reduction: ``"mean"`` (a float) or ``"none"`` (a ``(B,)`` tensor, detached: a
            measurement, not a loss; ``torch.func.grad`` through it sees a constant).
    """
    check_model(model, _WHAT)
    x = check_batch(x, _WHAT, min_dim=4)
    generator = choice(generator, "generator", GENERATORS, _WHAT)
    reduction = choice(reduction, "reduction", ("mean", "none"), _WHAT)
    if out_rep is not None and not isinstance(out_rep, FieldType):
        check_rep(out_rep, "out_rep", _WHAT)
    path = _path(generator)
    with torch.no_grad(), kept_buffers(model):
        y0 = tensor_output(model(x), _WHAT, batch=x.shape[0], floating=True)
    declared_in = declared_type(model, "in")
    in_rep = declared_in.rep if isinstance(declared_in, FieldType) else declared_in
    if generator == "rotate" and (in_rep in ("regular", "harmonic")
                                  or str(in_rep).startswith("quotient")):
        rep = in_rep
        raise ValueError(f"lie_derivative: generator={generator!r} has no continuous action on "
                         f"the model's declared {rep} input fibers (it would move their pixels "
                         "only); measure a model of images (B, C, H, W)")
    out_type, declared = resolve_field_type(y0, out_rep, model, "out", None, _WHAT)
    if declared:
        out_type.check(y0, "model(x)", _WHAT)
    rep = out_type.rep
    if rep == "harmonic" or (rep == "regular" and generator == "rotate"):
        guessed = "" if declared or out_rep is not None else (
            " (an undeclared 5-D output is read as a regular group map (B, C, F, H, W); a "
            "volume (B, C, D, H, W) rotates slice by slice: pass out_rep='trivial')")
        raise ValueError(f"lie_derivative: generator={generator!r} has no continuous action on "
                         f"out_rep={rep!r} outputs{guessed}; measure an invariant output "
                         "(logits) or pass out_rep='invariant'")
    spatial = rep in ("trivial", "regular")
    if spatial and y0.dim() < 4:
        # a 3-D output (B, C, L) or (B, N, D) has no (H, W) to move back: translate_y would
        # shift its channel axis
        raise ValueError(f"lie_derivative: out_rep={rep!r} moves the output's last two dims as "
                         f"image axes (B, C, H, W); got shape {tuple(y0.shape)}, which has "
                         "none; pass out_rep='invariant' to measure it as is")
    if generator == "translate_x":
        scale = y0.shape[-1] / x.shape[-1] if spatial else 0.0
    elif generator == "translate_y":
        scale = y0.shape[-2] / x.shape[-2] if spatial else 0.0
    else:
        scale = 1.0

    def along(t: torch.Tensor) -> torch.Tensor:
        out = tensor_output(model(path(x, t)), _WHAT)
        if spatial:
            out = path(out, -t * scale)
        return out

    t0 = torch.zeros((), dtype=x.dtype, device=x.device)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    with kept_buffers(model):
        try:
            with _forward_ad_import_quiet():
                # (indexed, not unpacked: torch's stub returns a pair or a triple, with
                # has_aux=True, without an overload, and torch 2.6's is not annotated)
                deriv = torch.func.jvp(along, (t0,), (one,))[1]
        except (NotImplementedError, RuntimeError):  # an op without a forward-mode formula
            _, deriv = torch.autograd.functional.jvp(along, t0, one)
    # |.|^2 of complex outputs (a real part alone drops the imaginary part's derivative)
    lee = deriv.detach().reshape(deriv.shape[0], -1).abs().to(torch.float64).pow(2).sum(dim=1)
    # a sample whose output is not finite has no derivative (jvp through a NaN bias is finite)
    bad = ~torch.isfinite(y0.detach().reshape(y0.shape[0], -1)).all(dim=1)
    lee = lee.masked_fill(bad.to(lee.device), float("nan"))
    return float(lee.mean()) if reduction == "mean" else lee
