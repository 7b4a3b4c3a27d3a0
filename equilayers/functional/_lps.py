"""Learnable polyphase sampling (Rojas-Gomez, Lim, Schwing, Do & Dokmanic, "Learnable Polyphase
Sampling for Shift Invariant and Equivariant Convolutional Networks", NeurIPS 2022) and its
inverse placement.

The ``s x s`` polyphase components of ``x`` are ``x[..., i::s, j::s]``, indexed by ``i * s + j``
(as in :func:`polyphase_pool2d`). Adaptive polyphase sampling keeps the component of largest
norm; learnable polyphase sampling keeps the component of largest *learned* logit. Here the
logit of a component ``c`` (``(C, H/s, W/s)``, or ``(C, F, H/s, W/s)`` on group maps) is

.. math::
    \\ell(c) = v^\\top \\operatorname{mean}_{p}\\,
    \\mathrm{ReLU}\\big((W \\star_{\\circ} n(c))_p + b\\big)

with ``n(c) = c`` on 4-D maps and the root mean square over the fiber ``F`` on 5-D maps,
``W \\star_\\circ`` a correlation with circular padding by an *isotropic* ``k x k`` filter (one
weight per orbit of the filter's taps under the square's 8 rotations and flips: ``weight`` has
shape ``(hidden, C, (r+1)(r+2)/2)`` for ``k = 2r + 1``), and the mean over the component's
pixels. Each step commutes with circular shifts of ``c``, with rot90 and flips of a square
``c``, and (the fiber norm) with any orthogonal action on ``F`` (the permutations of regular and
quotient fields): the logit is invariant to all of them.

A circular shift of ``x`` permutes the components and shifts each one; on an ``x`` whose
sides are divisible by ``s``, rot90 maps component ``(a, b)`` to ``(s-1-b, a)`` and the flip maps
``(a, b)`` to ``(a, s-1-b)``, each moved by the same element (see :mod:`._polyphase`). So the
logits are permuted the same way and the argmax follows the input: in evaluation (hard choice,
no noise) the pool is exactly equivariant to every integer circular shift (the output is a
shifted component) and, with both sides divisible by ``s``, to rot90 and flips (trivial,
regular or quotient fields), whenever the largest logit is unique. Ties (a symmetric input
whose components have equal logits; components all zero, which share one logit; components on
which every hidden unit is off, which all score exactly 0) go to the lowest index, and no rule
can commute with D4 on those. The logits are accumulated in float64 (float32 on MPS):
rounding can reorder only logits that agree to ~1e-16 of their size (~1e-7 for float32
inputs, whose correlation runs in float32).

Training: with ``training=True`` and ``gumbel=True``, Gumbel(0, 1) noise is added to the logits
(from ``generator``, or the global RNG); the hard choice is the argmax of the noisy logits, and
``w = softmax(noisy / tau)`` carries the gradient: ``hard=True`` (straight-through) outputs the
chosen component exactly and back-propagates ``sum_k (w_k - stop_grad(w_k)) c_k`` (zero in
value) into the scoring weights; ``hard=False`` outputs the mixture ``sum_k w_k c_k``. The
straight-through gradient also flows into ``x`` through the scoring net. In evaluation the
choice is the plain argmax (deterministic); ``x`` gets its exact gradient (the chosen samples',
the choice being locally constant) and, where gradients are recorded, the straight-through term
still reaches the scoring weights. A ``torch.jit.trace`` graph, which runs later in any grad
mode, holds the term wherever the scoring weights (in training, or ``x``) require grad, whether
it was traced with autograd on or off.
The code is written for ``nd`` spatial dims (``logits_nd``, ``pool_nd``, ``upsample_nd``: every
argument rule once); :mod:`._lps3d` is the 3-D twin, on volumes and the cube groups' maps.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal, overload

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._host import host_tensor
from ..kernels._autodiff import transforms_active
from ..kernels._reference import kept_channels_last
from ._polyphase import place_components

__all__ = ["polyphase_logits", "learnable_polyphase_pool2d", "learnable_polyphase_upsample2d"]

_WHAT_POOL = "learnable_polyphase_pool2d"
_LAYOUT = "(B, C, H, W), (B, C, F, H, W) or an unbatched (C, H, W)"


def _choose(n: int, k: int) -> int:
    """``binomial(n, k)`` by integer arithmetic (``torch.compile`` traces it; it refused
    ``itertools``)."""
    out = 1
    for i in range(k):
        out = out * (n - i) // (i + 1)
    return out


def num_orbits(kernel_size: int, nd: int = 2) -> int:
    """The number of weights of an isotropic ``kernel_size``-wide filter over ``nd`` dims (odd
    size ``2r + 1``): the orbits of its taps under the signed permutations of the axes (the
    square's 8 symmetries, the cube's 48), ``binomial(r + nd, nd)``: ``(r + 1)(r + 2) / 2``
    in 2-D, ``(r + 1)(r + 2)(r + 3) / 6`` in 3-D."""
    return _choose(kernel_size // 2 + nd, nd)


_FORMULA = {2: "(r+1)(r+2)/2", 3: "(r+1)(r+2)(r+3)/6"}


def _radius(n: int, what: str, nd: int = 2) -> int:
    r = 0
    while _choose(r + nd, nd) < n:
        r += 1
    if _choose(r + nd, nd) != n:
        counts = ", ".join(str(_choose(i + nd, nd)) for i in range(4))
        sizes = ", ".join("x".join([str(2 * i + 1)] * nd) for i in range(4))
        raise ValueError(f"{what}: weight must have {_FORMULA[nd]} orbit weights in dim 2 "
                         f"({counts}, ... for an isotropic {sizes} filter); got {n}")
    return r


def _orbit_index(r: int, nd: int = 2) -> list[int]:
    """Tap of a ``(2r+1)^nd`` filter (row-major) -> its orbit: the offsets' absolute values
    sorted in decreasing order ``a_1 >= .. >= a_nd``, numbered lexicographically,
    ``sum_i binomial(a_i + nd - i, nd - i + 1)`` (in 2-D, ``m (m + 1) / 2 + l`` for
    ``m = max(|di|, |dj|)``, ``l = min(...)``)."""
    k = 2 * r + 1
    out = []
    for t in range(k ** nd):
        desc = sorted((abs(t // k ** (nd - 1 - i) % k - r) for i in range(nd)), reverse=True)
        out.append(sum(_choose(a + nd - 1 - i, nd - i) for i, a in enumerate(desc)))
    return out


def isotropic_filter(weight: torch.Tensor, nd: int = 2) -> torch.Tensor:
    """The ``(hidden, C, k, ..., k)`` filter (``nd`` spatial dims) of orbit weights
    ``(hidden, C, n)``: every tap holds its orbit's weight, so the filter is exactly invariant
    to every signed permutation of its axes (rot90 and flips; the cube's 48 symmetries)."""
    r = _radius(weight.shape[2], "isotropic_filter", nd)
    idx = host_tensor(_orbit_index(r, nd), device=weight.device)
    return weight[:, :, idx].reshape(*weight.shape[:2], *(2 * r + 1,) * nd)


def _autocast_off(device_type: str):
    # (a constant tuple while compiling: the dynamo of torch 2.6 cannot trace
    # torch.amp.is_autocast_available, and fullgraph compile / export failed on it)
    if (device_type in ("cpu", "cuda") if torch.compiler.is_compiling()
            else torch.amp.is_autocast_available(device_type)):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _sides(nd: int) -> tuple[str, ...]:
    return ("D", "H", "W")[-nd:]


def _layout(nd: int) -> str:
    sp = ", ".join(_sides(nd))
    return f"(B, C, {sp}), (B, C, F, {sp}) or an unbatched (C, {sp})"


def _check_x(x: object, stride: int, what: str, nd: int = 2) -> torch.Tensor:
    x = C.check_tensor(x, "x", what, ndim=(nd + 1, nd + 2, nd + 3), layout=_layout(nd))
    sizes = x.shape[-nd:]
    if any(n % stride for n in sizes):
        names = _sides(nd)
        got = ", ".join(f"{a}={n}" for a, n in zip(names, sizes, strict=True))
        raise ValueError(f"{what} needs {', '.join(names[:-1])} and {names[-1]} divisible by "
                         f"stride={stride} (circular shifts must permute the components); got "
                         f"{got} (shape {tuple(x.shape)}). Crop or pad the input to a multiple "
                         f"of {stride} first")
    return x


def _check_weights(x: torch.Tensor, weight: object, bias: object, out_weight: object,
                   stride: int, what: str, nd: int = 2) -> int:
    w = C.check_tensor(weight, "weight", what, ndim=3, layout="(hidden, C, orbits)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{what}: the scoring net was built for C_in={w.shape[1]} channels "
                         f"(weight shape {tuple(w.shape)}) but x has C={x.shape[1]} in dim 1 "
                         f"(shape {tuple(x.shape)}); "
                         + (f"pass {w.shape[1]} channels" if x.shape[1] == 0
                            else f"build it with in_channels={x.shape[1]}"))
    r = _radius(w.shape[2], what, nd)
    C.check_bias(bias, (w.shape[0],), what)
    v = C.check_tensor(out_weight, "out_weight", what, ndim=1, layout="(hidden,)")
    if v.shape[0] != w.shape[0]:
        raise ValueError(f"{what}: out_weight must have shape ({w.shape[0]},) (one weight per "
                         f"hidden channel of weight); got shape {tuple(v.shape)}")
    # the logits are computed in float64 from any floating dtypes, on x's device
    C.check_tensors_match(x, what, (("weight", w), ("bias", bias), ("out_weight", v)),
                          dtypes=False)
    m = [n // stride for n in x.shape[-nd:]]
    if min(m) < r:
        raise ValueError(f"{what}: the components of x (shape {tuple(x.shape)}, stride="
                         f"{stride}) are {'x'.join(map(str, m))}, smaller than the circular "
                         f"padding {r} of the {'x'.join([str(2 * r + 1)] * nd)} scoring "
                         "filter; use a larger input or a smaller kernel_size")
    return r


def _split(x: torch.Tensor, s: int, nd: int) -> torch.Tensor:
    """``x`` ``(B, ..., n_1, ..., n_nd)`` as ``(B, R, n_1 / s, s, ..., n_nd / s, s)``: the
    component of phases ``(a_1, ..., a_nd)`` is ``[:, :, :, a_1, ..., :, a_nd]``."""
    split = [v for n in x.shape[-nd:] for v in (n // s, s)]
    return x.reshape(x.shape[0], math.prod(x.shape[1:-nd]), *split)


def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            out_weight: torch.Tensor, s: int, r: int, nd: int = 2) -> torch.Tensor:
    b = x.shape[0]
    lead = x.shape[1:-nd]
    m = [n // s for n in x.shape[-nd:]]
    # (B, s, .., s, R, m_1, .., m_nd): the components, flat index a_1 s^(nd-1) + ... + a_nd
    comps = _split(x, s, nd).permute(0, *range(3, 2 * nd + 2, 2), 1, *range(2, 2 * nd + 2, 2))
    dt = _compute_dtype(x)
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    with _autocast_off(x.device.type):
        z = comps.reshape(b * s ** nd, *lead, *m).to(dt)
        if x.dim() == nd + 3:  # invariant to any orthogonal action on the fiber
            # squared in acc: float32 squares overflow from ~1.8e19 (NaN logits, every
            # input read as component 0)
            z = (z.to(acc).square().mean(2) + 1e-12).sqrt().to(dt)
        if r:
            z = F.pad(z, (r,) * (2 * nd), mode="circular")
        filt = isotropic_filter(weight.to(dt), nd)
        conv = F.conv2d if nd == 2 else F.conv3d
        hidden = conv(z, filt, None if bias is None else bias.to(dt)).relu()
        feat = hidden.mean(tuple(range(-nd, 0)), dtype=acc)  # (B s^nd, hidden)
        logits = feat @ out_weight.to(acc)
    return logits.reshape(b, s ** nd)


def logits_nd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              out_weight: torch.Tensor, stride: int, nd: int, what: str) -> torch.Tensor:
    """:func:`polyphase_logits` over ``nd`` spatial dims (``what``: the public name)."""
    s = C.check_stride(stride, "stride", what, minimum=2)
    x = _check_x(x, s, what, nd)
    unbatched = x.dim() == nd + 1
    xb = x[None] if unbatched else x
    r = _check_weights(xb, weight, bias, out_weight, s, what, nd)
    logits = _logits(xb, weight, bias, out_weight, s, r, nd)
    return logits[0] if unbatched else logits


def polyphase_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     out_weight: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """The scoring net of learnable polyphase sampling: one logit per polyphase component.

    See the module docstring for the formula (isotropic circular correlation, ReLU, mean over
    the component, a linear read-out; the root mean square over ``F`` first on 5-D maps).

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, F, H, W)``, or an unbatched ``(C, H, W)``; ``H``,
            ``W`` divisible by ``stride``.
        weight: ``(hidden, C, (r+1)(r+2)/2)``: the orbit weights of an isotropic
            ``(2r+1) x (2r+1)`` filter.
        bias: ``(hidden,)`` or None.
        out_weight: ``(hidden,)``.
        stride: integer >= 2.

    Returns:
        ``(B, stride**2)`` logits in float64 (float32 on MPS), component ``i * stride + j``
        (``(stride**2,)`` for an unbatched ``x``).
    """
    return logits_nd(x, weight, bias, out_weight, stride, 2, "polyphase_logits")


def _gumbel(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    e = torch.empty_like(logits).exponential_(generator=generator)
    return -torch.log(e.clamp_min(torch.finfo(e.dtype).tiny))


def _check_generator(generator: object, device: torch.device, what: str) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{what}: generator={generator!r} must be a torch.Generator or None")
    if generator.device.type != device.type:
        raise ValueError(f"{what}: generator is on {generator.device}, but the logits are on "
                         f"{device}; pass torch.Generator(device={device.type!r})")


@overload
def learnable_polyphase_pool2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ...,
    return_index: Literal[False] = ...) -> torch.Tensor: ...


@overload
def learnable_polyphase_pool2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ...,
    return_index: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def learnable_polyphase_pool2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = ..., *, tau: float = ..., hard: bool = ..., training: bool = ...,
    gumbel: bool = ..., generator: torch.Generator | None = ..., return_index: bool = ...
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def learnable_polyphase_pool2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out_weight: torch.Tensor,
    stride: int = 2, *, tau: float = 1.0, hard: bool = True, training: bool = False,
    gumbel: bool = True, generator: torch.Generator | None = None, return_index: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep the polyphase component with the largest learned logit, per sample.

    See :class:`equilayers.nn.LearnablePolyphasePool2d` and the module docstring.

    Args:
        x: ``(B, C, H, W)`` or ``(B, C, F, H, W)``, or an unbatched ``(C, H, W)`` (as torch's
            pools: the same as ``x[None]`` with the batch dim dropped from the results; a 4-D
            input is always batched); ``H``, ``W`` divisible by ``stride``.
        weight, bias, out_weight: the scoring net (:func:`polyphase_logits`).
        stride: integer >= 2.
        tau: Gumbel-softmax temperature (> 0) of the weights that carry the gradient.
        hard: straight-through (the chosen component exactly) or, in training, the soft
            mixture ``sum_k w_k c_k``.
        training: training mode: Gumbel noise (if ``gumbel``) and the soft mixture (if not
            ``hard``); evaluation is always the hard, noise-free argmax.
        gumbel: add Gumbel(0, 1) noise to the logits in training.
        generator: the ``torch.Generator`` of the noise (default: the global RNG).
        return_index: also return the selection ``(B, stride**2)`` (dtype of ``x``, float32
            for a float16/bfloat16 ``x``: the scoring net's gradient sums over every sample;
            ``(stride**2,)`` for an unbatched ``x``): one-hot on the chosen component
            ``i * stride + j`` (``index.argmax(-1)``) plus the straight-through term, or the
            mixture weights; for :func:`learnable_polyphase_upsample2d`.

    Example:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> w, b, v = torch.randn(4, 3, 3), torch.zeros(4), torch.randn(4)
        >>> y, index = learnable_polyphase_pool2d(x, w, b, v, return_index=True)
        >>> y.shape, index.shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2, 4]))
    """
    return pool_nd(x, weight, bias, out_weight, stride, tau, hard, training, gumbel, generator,
                   return_index, 2, "learnable_polyphase_pool2d")


def pool_nd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            out_weight: torch.Tensor, stride: int, tau: float, hard: bool, training: bool,
            gumbel: bool, generator: torch.Generator | None, return_index: bool, nd: int,
            what: str) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`learnable_polyphase_pool2d` over ``nd`` spatial dims (``what``: the public
    name): the arguments' rules, once for every dimension."""
    s = C.check_stride(stride, "stride", what, minimum=2)
    tau = C.check_number(tau, "tau", what, positive=True, fix="the Gumbel-softmax temperature")
    hard = C.check_flag(hard, "hard", what)
    training = C.check_flag(training, "training", what)
    gumbel = C.check_flag(gumbel, "gumbel", what)
    return_index = C.check_flag(return_index, "return_index", what)
    x = _check_x(x, s, what, nd)
    if x.dim() == nd + 1:  # unbatched (C, H, W), as torch's pools: a batch of one
        out = pool_nd(x[None], weight, bias, out_weight, s, tau, hard, training, gumbel,
                      generator, return_index, nd, what)
        return (out[0][0], out[1][0]) if isinstance(out, tuple) else out[0]
    r = _check_weights(x, weight, bias, out_weight, s, what, nd)
    _check_generator(generator, x.device, what)
    # evaluation: the choice is locally constant in x, so x's gradient is the exact one (the
    # chosen samples') and the straight-through term reaches only the scoring weights
    logits = _logits(x if training else x.detach(), weight, bias, out_weight, s, r, nd)
    noisy = logits + _gumbel(logits, generator) if training and gumbel else logits
    b = x.shape[0]
    xr = _split(x, s, nd)
    if training and not hard:  # the Gumbel-softmax mixture
        probs = torch.softmax(noisy / tau, dim=1)
        y = _mix(probs, xr)
        sel = probs.to(_compute_dtype(x))
    else:
        k = noisy.argmax(dim=1)
        rows = torch.arange(b, device=x.device)
        # the phases of k, most significant first: (B, R, m_1, .., m_nd)
        phases = [k // s ** (nd - 1)] + [k // s ** (nd - 1 - i) % s for i in range(1, nd - 1)]
        at: list = [rows, slice(None)]
        for a in [*phases, k % s]:
            at += [slice(None), a]
        y = xr[tuple(at)]
        # (a comparison with an arange, not F.one_hot, which reads k's values: vmap batches it)
        sel = (k[:, None] == torch.arange(s ** nd, device=x.device)).to(_compute_dtype(x))
        if ((_scores_need_grad(x, (weight, bias, out_weight), training)
                if torch.jit.is_tracing() else torch.is_grad_enabled() and logits.requires_grad)
                or transforms_active()):
            # straight-through: zero in value, the gradient of the softmax's weights (and
            # their tangent under forward mode, torch.func.jvp/jacfwd or a dual level, where
            # nothing requires grad: without it the tangent was 0, not the estimator's)
            probs = torch.softmax(noisy / tau, dim=1)
            delta = probs - probs.detach()
            y = y + _mix(delta, xr.detach())
            sel = sel + delta.to(sel.dtype)
    y = y.reshape(b, *x.shape[1:-nd], *(n // s for n in x.shape[-nd:]))
    return (y, sel) if return_index else y


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """``x``'s dtype, float32 for float16/bfloat16: the dtype of the scores, the mixture and
    the selection (the selection's gradient in :func:`learnable_polyphase_upsample2d` sums
    ``x * grad`` over every sample of a component, and the softmax's backward needs the
    differences of those sums: rounded to bfloat16 the scoring net's gradient was 0.12-0.57
    relative off, in float16 0.04-0.48)."""
    return torch.promote_types(x.dtype, torch.float32)


def _mix(weights: torch.Tensor, xr: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[:, k] c_k`` over the components of ``xr`` ``(B, R, m, s, n, s)`` (or
    ``(B, R, l, s, m, s, n, s)``), in
    ``xr``'s dtype; float16/bfloat16 ``xr`` (or autocast) in float32, autocast off, the
    result cast back: the weights' gradient ``c_k . grad`` sums over every sample of a
    component, and the softmax's backward needs its differences between components (rounded
    to bfloat16 they came out alike and the scoring net's gradient vanished; in float16 it
    was 30% off, and inf past 65504)."""
    ct = _compute_dtype(xr)
    b, s, nd = xr.shape[0], xr.shape[3], (xr.dim() - 2) // 2
    phases, places = "ijk"[:nd], "mno"[:nd]  # "bij,brminj->brmn" in 2-D
    eq = f"b{phases},br{''.join(m + a for m, a in zip(places, phases, strict=True))}->br{places}"
    with _autocast_off(xr.device.type):
        y = torch.einsum(eq, weights.to(ct).view(b, *(s,) * nd), xr.to(ct))
    return y.to(xr.dtype)


def _scores_need_grad(x: torch.Tensor, weights: tuple[torch.Tensor | None, ...],
                      training: bool) -> bool:
    """Whether the logits would carry a gradient with autograd on: a traced graph keeps the
    straight-through term whatever the grad mode it was traced in (it is run later in any, and
    ``torch.jit.trace`` checks its trace under ``torch.no_grad``), as it did for one traced
    with autograd on."""
    return (any(w is not None and w.requires_grad for w in weights)
            or (training and x.requires_grad))


def learnable_polyphase_upsample2d(x: torch.Tensor, index: torch.Tensor,
                                   stride: int = 2) -> torch.Tensor:
    """Put ``x`` back on the polyphase component :func:`learnable_polyphase_pool2d` chose.

    ``y[b, ..., i + s p, j + s q] = index[b, i s + j] * x[b, ..., p, q]`` for a selection
    ``index`` of shape ``(B, s**2)`` (the pool's ``return_index=True`` output: one-hot in
    evaluation, so the samples come back exactly and zeros fill the rest; the straight-through
    term or the mixture weights in training, through which gradients reach the scoring net;
    where ``index`` is 0, ``y`` is 0 even for an inf or NaN sample, as the integer placement), or
    the plain placement for an integer ``index`` of shape ``(B,)`` (flat component indices, as
    :func:`polyphase_upsample2d` takes). Output ``(B, ..., s H, s W)``. An unbatched ``x``
    ``(C, H, W)`` takes a selection ``(s**2,)`` or a 0-d integer index (as the pool returns for
    it) and gives ``(C, s H, s W)``.

    ``learnable_polyphase_upsample2d(*learnable_polyphase_pool2d(x, ..., return_index=True))``
    (evaluation) is exactly equivariant to every integer circular shift of ``x``.
    """
    return upsample_nd(x, index, stride, 2, "learnable_polyphase_upsample2d")


_FLAT = {2: "i*stride+j", 3: "i*stride**2+j*stride+k"}


def upsample_nd(x: torch.Tensor, index: torch.Tensor, stride: int, nd: int,
                what: str) -> torch.Tensor:
    """:func:`learnable_polyphase_upsample2d` over ``nd`` spatial dims (``what``: the public
    name)."""
    s = C.check_stride(stride, "stride", what, minimum=2)
    n, sp = s ** nd, ", ".join(_sides(nd))
    x = C.check_tensor(x, "x", what, min_ndim=nd + 1, layout=f"(B, C, {sp}), (B, C, F, {sp}) "
                       f"(any dims between B and {sp[0]}) or an unbatched (C, {sp})")
    b = x.shape[0]
    pool = what.replace("upsample", "pool")
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"{what}: index must be a tensor (the selection (B, stride**{nd}) from "
                        f"{pool}(..., return_index=True), or integer component indices (B,)); "
                        f"got {type(index).__name__}")
    if x.dim() == nd + 1:  # unbatched (C, H, W): a selection (s**nd,) or a 0-d integer index
        want = (n,) if index.is_floating_point() else ()
        if index.shape != want or index.is_complex() or index.dtype == torch.bool:
            raise ValueError(f"{what}: x is unbatched (C, {sp}), so index must be a floating "
                             f"selection of shape ({n},) or a 0-d integer tensor (as {pool} "
                             f"returns for an unbatched x); got {index.dtype} of shape "
                             f"{tuple(index.shape)}")
        return upsample_nd(x[None], index[None], s, nd, what)[0]
    sizes = x.shape[-nd:]
    lead = x.shape[1:-nd]
    xr = x.reshape(b, math.prod(lead), *(v for m in sizes for v in (m, 1)))
    phases = (b, 1, *(v for _ in range(nd) for v in (1, s)))  # (B, 1, 1, s, 1, s) in 2-D
    if index.is_floating_point():
        C.check_tensors_match(x, what, (("index", index),), dtypes=False)  # cast to x's dtype
        if index.shape != (b, n):
            raise ValueError(f"{what}: a floating index is a selection and must have shape "
                             f"(B, stride**{nd}) = ({b}, {n}); got shape {tuple(index.shape)}")
        ct = _compute_dtype(x)
        with _autocast_off(x.device.type):  # the product (and index's gradient) in ct
            w, xc = index.to(ct).view(phases), xr.to(ct)
            # a select on the selection's zeros (the components not chosen, in evaluation):
            # there the samples' finite part is multiplied, so an inf or NaN sample leaves
            # them 0 (inf * 0 was NaN across the sample's whole block), as place_components
            # does. Still the product: on finite samples the gradients are those of
            # x * index, the straight-through term's included (index's gradient on a
            # component is x . grad there, chosen or not)
            y = (torch.where(w != 0, xc, xc.nan_to_num(0.0, 0.0, 0.0)) * w).to(x.dtype)
    else:
        if index.is_complex() or index.dtype == torch.bool or index.shape != (b,):
            wrong_type = index.is_complex() or index.dtype == torch.bool
            raise (TypeError if wrong_type else ValueError)(
                f"{what}: index must be a floating selection of shape ({b}, {n}) or an "
                f"integer tensor of shape ({b},) (flat component indices {_FLAT[nd]}); got "
                f"{index.dtype} of shape {tuple(index.shape)}")
        return place_components(x, index, s, nd, 1, "circular", what)  # the adaptive pools'
    y = y.reshape(b, *lead, *(m * s for m in sizes))
    fmt = kept_channels_last(x, nd)
    return y if fmt is None else y.contiguous(memory_format=fmt)  # the input's layout
