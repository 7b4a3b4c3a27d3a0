"""Learnable polyphase sampling modules (Rojas-Gomez et al., NeurIPS 2022)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks as C
from ..functional._lps import (
    learnable_polyphase_pool2d,
    learnable_polyphase_upsample2d,
    num_orbits,
    polyphase_logits,
)
from ..functional._lps3d import (
    learnable_polyphase_pool3d,
    learnable_polyphase_upsample3d,
    polyphase_logits3d,
)
from ._typed import Typed

__all__ = ["LearnablePolyphasePool2d", "LearnablePolyphaseUpsample2d",
           "LearnablePolyphasePool3d", "LearnablePolyphaseUpsample3d"]

#: The functionals of each number of spatial dims: logits, pool, upsampling.
_FUNCTIONAL = {2: (polyphase_logits, learnable_polyphase_pool2d, learnable_polyphase_upsample2d),
               3: (polyphase_logits3d, learnable_polyphase_pool3d,
                   learnable_polyphase_upsample3d)}


class LearnablePolyphasePool2d(Typed, nn.Module):
    """Learnable polyphase sampling: keep the ``stride x stride`` polyphase component with the
    largest learned logit, per sample.

    Component ``(i, j)`` is ``x[..., i::s, j::s]``. A small scoring net gives each component a
    logit ``v . mean_p ReLU(W *o n(c) + b)_p``: a circular correlation with an isotropic
    ``kernel_size x kernel_size`` filter (one weight per orbit of taps under rot90 and flips),
    a ReLU, the mean over the component's pixels and a linear read-out (``n(c)`` is the
    component on 4-D maps, its root mean square over the fiber on 5-D group maps). Training
    samples the choice with Gumbel noise and a softmax of temperature ``tau``; evaluation keeps
    the argmax. See :mod:`equilayers.functional._lps`.

    Functional twin: :func:`~equilayers.functional.learnable_polyphase_pool2d`.

    Args:
        in_channels: ``C`` of the input.
        stride: integer >= 2.
        hidden_channels: width of the scoring net (default 8).
        kernel_size: odd size of the isotropic scoring filter (default 3; 1: pointwise).
        tau: Gumbel-softmax temperature (> 0); an attribute, so a schedule may anneal it.
        hard: in training, output the sampled component exactly and pass the gradient
            straight through (default), or (False) the soft mixture ``sum_k w_k c_k``.
        gumbel: add Gumbel noise in training (default); False trains on the plain argmax
            (deterministic). ``forward(x, generator=g)`` draws the noise from ``g``; not
            under ``torch.utils.checkpoint``, which restores only torch's global generator
            for the recomputed forward (its choice, and the gradients, would differ).
        return_index: if True, ``forward`` returns ``(y, index)``: the selection
            ``(B, stride**2)``, one-hot on the chosen component ``i * stride + j`` (carrying
            the straight-through gradient), for :class:`LearnablePolyphaseUpsample2d`.
        device, dtype: of the scoring net's parameters.

    Shape:
        ``(B, C, H, W) -> (B, C, H / s, W / s)`` or ``(B, C, F, H, W) -> (B, C, F, H / s,
        W / s)``, index ``(B, s**2)``; an unbatched ``(C, H, W) -> (C, H / s, W / s)``, index
        ``(s**2,)`` (as torch's pools: the batched result of ``x[None]`` with the batch dim
        dropped; a 4-D input is always batched, so an unbatched group map needs ``x[None]``).
        ``H`` and ``W`` must be divisible by ``stride`` (else ``ValueError``: crop or pad
        first).

    Equivariance:
        Exact in evaluation mode. Circular convolutions, ``LearnablePolyphasePool2d`` and a
        global pool are invariant to every integer circular shift; a pool's output is the chosen
        component, shifted. On inputs with both sides divisible by ``s`` the logits are invariant
        to rot90 and flips of a component and to the fiber's permutation (regular and quotient
        fields; any orthogonal fiber action), so the choice commutes with D4: a p4/p4m network
        stays exactly equivariant, shifts included, whenever the largest logit is unique.
        Ties (inputs with symmetric components; components all zero, which share one logit,
        or on which every hidden unit is off, which all score 0: after a ReLU, see
        :class:`~equilayers.models.UNet`) go to the lowest index; no rule can commute with
        D4 on those. The logits are accumulated in float64, so rounding can only reorder logits
        that agree to ~1e-16 of their size (~1e-7 on float32 inputs). In training the Gumbel
        noise makes the choice random (invariant in distribution only).

    Example:
        >>> pool = LearnablePolyphasePool2d(3).eval()
        >>> pool(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    in_type = out_type = None  # any field type; the output has the input's
    _nd = 2  # the sampled (last) dims

    def __init__(self, in_channels: int, stride: int = 2, *, hidden_channels: int = 8,
                 kernel_size: int = 3, tau: float = 1.0, hard: bool = True, gumbel: bool = True,
                 return_index: bool = False, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        what = type(self).__name__
        self.in_channels = C.check_int(in_channels, "in_channels", what, minimum=1)
        self.stride = C.check_stride(stride, "stride", what, minimum=2)
        self.hidden_channels = C.check_int(hidden_channels, "hidden_channels", what, minimum=1)
        k = C.check_int(kernel_size, "kernel_size", what, minimum=1,
                        fix="an odd size of the isotropic scoring filter")
        if k % 2 == 0:
            raise ValueError(f"{what}: kernel_size={k} must be odd (an isotropic filter has a "
                             "centre tap); use 1, 3, 5, ...")
        self.kernel_size = k
        self.tau = C.check_number(tau, "tau", what, positive=True,
                                  fix="the Gumbel-softmax temperature")
        self.hard = C.check_flag(hard, "hard", what)
        self.gumbel = C.check_flag(gumbel, "gumbel", what)
        self.return_index = C.check_flag(return_index, "return_index", what)
        C.check_float_dtype(dtype, "dtype", what)
        hid = self.hidden_channels
        self.weight = nn.Parameter(torch.empty(hid, self.in_channels, num_orbits(k, self._nd),
                                               device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(hid, device=device, dtype=dtype))
        self.out_weight = nn.Parameter(torch.empty(hid, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``+-1/sqrt(fan_in)`` (``nn.Conv2d``'s bound): ``fan_in`` is
        ``C k^2`` (``C k^3`` in 3-D) for the filter and its bias, ``hidden`` for the
        read-out."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** self._nd)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        nn.init.uniform_(self.out_weight, -1.0 / math.sqrt(self.hidden_channels),
                         1.0 / math.sqrt(self.hidden_channels))

    @property
    def draws_noise(self) -> bool:
        """Whether a forward draws random noise: Gumbel noise in training (``gumbel=True``).
        The metrics and the harness warn when they measure a model with such a layer."""
        return self.training and self.gumbel

    def component_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The scoring net's logits ``(B, stride**2)`` (float64; component ``i * s + j``;
        ``(stride**2,)`` for an unbatched ``(C, H, W)``; ``stride**3`` in 3-D)."""
        logits = _FUNCTIONAL[self._nd][0]
        return logits(x, self.weight, self.bias, self.out_weight, self.stride)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        return _FUNCTIONAL[self._nd][1](
            x, self.weight, self.bias, self.out_weight, self.stride, tau=self.tau,
            hard=self.hard, training=self.training, gumbel=self.gumbel, generator=generator,
            return_index=self.return_index)

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}", f"stride={self.stride}"]
        if self.hidden_channels != 8:
            parts.append(f"hidden_channels={self.hidden_channels}")
        if self.kernel_size != 3:
            parts.append(f"kernel_size={self.kernel_size}")
        if self.tau != 1.0:
            parts.append(f"tau={self.tau}")
        if not self.hard:
            parts.append("hard=False")
        if not self.gumbel:
            parts.append("gumbel=False")
        if self.return_index:
            parts.append("return_index=True")
        return ", ".join(parts)


class LearnablePolyphaseUpsample2d(Typed, nn.Module):
    """Put features back on the polyphase component :class:`LearnablePolyphasePool2d` chose.

    ``forward(x, index)``: ``y[b, ..., i + s p, j + s q] = index[b, i s + j] * x[b, ..., p, q]``
    with the pool's selection ``index`` ``(B, s**2)`` (one-hot in evaluation: exact placement,
    zeros elsewhere, also beside an inf or NaN sample; in training its straight-through term
    or mixture weights pass gradients back to the pool's scoring net), or an integer ``index``
    ``(B,)`` of flat component indices. For U-Nets: pair it with a
    ``LearnablePolyphasePool2d(return_index=True)``. No parameters.

    Functional twin: :func:`~equilayers.functional.learnable_polyphase_upsample2d`.

    Args:
        stride: integer >= 2, the pool's.

    Shape:
        ``(B, ..., H, W), (B, s**2) or (B,) -> (B, ..., s H, s W)``; unbatched ``(C, H, W)``,
        ``(s**2,)`` or a 0-d integer index ``-> (C, s H, s W)``.

    Equivariance:
        ``up(*pool(x))`` (evaluation) is exactly equivariant to every integer circular shift of
        ``x`` (the same samples return to the same, shifted, places), and on group maps to
        rot90 and flips, with the pool's conditions.

    Example:
        >>> pool = LearnablePolyphasePool2d(3, return_index=True).eval()
        >>> up = LearnablePolyphaseUpsample2d()
        >>> x = torch.randn(2, 3, 8, 8)
        >>> up(*pool(x)).shape
        torch.Size([2, 3, 8, 8])
    """

    in_type = out_type = None  # any field type; the output has the input's
    _nd = 2  # the upsampled (last) dims

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = C.check_stride(stride, "stride", type(self).__name__, minimum=2)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return _FUNCTIONAL[self._nd][2](x, index, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class LearnablePolyphasePool3d(LearnablePolyphasePool2d):
    """Learnable polyphase sampling of volumes: keep the ``stride x stride x stride``
    polyphase component with the largest learned logit, per sample
    (:class:`LearnablePolyphasePool2d` over ``D, H, W``: the same arguments and rules).

    Component ``(a, b, c)`` is ``x[..., a::s, b::s, c::s]``, flat index ``a s^2 + b s + c``
    (as :class:`PolyphasePool3d`). The scoring filter is an isotropic
    ``kernel_size x kernel_size x kernel_size`` circular correlation with one weight per orbit
    of its taps under the cube's 48 symmetries (``weight``: ``(hidden, C, (r+1)(r+2)(r+3)/6)``,
    4 for ``kernel_size=3``); on the cube groups' 6-D maps it reads the fiber's root mean
    square. See :mod:`equilayers.functional._lps3d`.

    Functional twin: :func:`~equilayers.functional.learnable_polyphase_pool3d`.

    Shape:
        ``(B, C, D, H, W) -> (B, C, D / s, H / s, W / s)`` or ``(B, C, F, D, H, W) -> (B, C, F,
        D / s, H / s, W / s)``, index ``(B, s**3)``; an unbatched ``(C, D, H, W)`` gives
        ``(C, D / s, H / s, W / s)`` and index ``(s**3,)``. ``D``, ``H`` and ``W`` must be
        divisible by ``stride`` (else ``ValueError``).

    Equivariance:
        Exact in evaluation mode, whenever the largest logit is unique: to every integer
        circular shift (the output is the chosen component, shifted), and to every element of
        the cube's groups (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``) on volumes and on regular
        (or any orthogonal) fields, at every size divisible by ``s`` (the sizes need not be
        equal: a rotation permutes them with the dims). Ties go to the lowest index; in
        training the Gumbel noise makes the choice random (invariant in distribution only).

    Example:
        >>> pool = LearnablePolyphasePool3d(3).eval()
        >>> pool(torch.randn(2, 3, 4, 4, 4)).shape
        torch.Size([2, 3, 2, 2, 2])
    """

    _nd = 3


class LearnablePolyphaseUpsample3d(LearnablePolyphaseUpsample2d):
    """Put volumes back on the polyphase component :class:`LearnablePolyphasePool3d` chose:
    :class:`LearnablePolyphaseUpsample2d` over ``D, H, W`` (``forward(x, index)`` with the
    pool's selection ``(B, s**3)`` or integer indices ``(B,)``). No parameters.

    Functional twin: :func:`~equilayers.functional.learnable_polyphase_upsample3d`.

    Shape:
        ``(B, ..., D, H, W), (B, s**3) or (B,) -> (B, ..., s D, s H, s W)``; unbatched
        ``(C, D, H, W)``, ``(s**3,)`` or a 0-d integer index ``-> (C, s D, s H, s W)``.

    Equivariance:
        ``up(*pool(x))`` (evaluation) is exactly equivariant to every integer circular shift of
        ``x`` and, with the pool's conditions, to the cube's groups.

    Example:
        >>> pool = LearnablePolyphasePool3d(3, return_index=True).eval()
        >>> up = LearnablePolyphaseUpsample3d()
        >>> up(*pool(torch.randn(2, 3, 4, 4, 4))).shape
        torch.Size([2, 3, 4, 4, 4])
    """

    _nd = 3

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # its own signature, so that a call without ``index`` names this class, not the 2-D one
        return super().forward(x, index)
