"""Lifting and group convolutions (p4, p4m and their subgroups) as ``nn.Conv2d`` look-alikes."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..functional import _gconv as G
from ..groups import GroupLike, get

__all__ = ["LiftingConv2d", "GroupConv2d"]

#: Filter bases implemented now, and the groups each supports.
_BASES = {"pixel": G.PIXEL_GROUPS}


class _GroupConvNd(nn.Module):
    """Shared machinery: validation, the weight (its shape decided by the basis), the expanded
    filter (one private method dispatching on ``self.basis``), the eval cache and the
    exactness warning."""

    lifting: bool = False
    in_rep = "regular"
    out_rep = "regular"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, group: GroupLike = "p4",
                 basis: str = "pixel") -> None:
        super().__init__()
        name = type(self).__name__
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels),
                       ("groups", groups)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: {arg} must be a positive int; got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if basis not in _BASES:
            raise ValueError(f"{name}: unknown basis {basis!r}; available now: "
                             f"{', '.join(map(repr, _BASES))} ('harmonic' is not available yet)")
        grp = get(group)
        if grp.name not in _BASES[basis]:
            raise ValueError(
                f"{name}: group {grp.name!r} needs steerable filters (basis='harmonic'), not "
                f"available yet; pixel-filter groups: {', '.join(G.PIXEL_GROUPS)} "
                "(aliases p4 = c4, p4m = d4)")
        k = G._pair(kernel_size, "kernel_size")
        if k[0] != k[1] or k[0] < 1:
            raise ValueError(f"{name}: kernel_size must be a positive int (square filters, so "
                             f"that rotations map them onto themselves); got {kernel_size!r}")
        if padding_mode not in G.PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {G.PADDING_MODES}; got "
                             f"{padding_mode!r}")
        stride_p, dil_p = G._pair(stride, "stride"), G._pair(dilation, "dilation")
        if min(stride_p) < 1 or min(dil_p) < 1:
            raise ValueError(f"{name}: stride and dilation must be >= 1; got stride={stride!r}, "
                             f"dilation={dilation!r}")
        if isinstance(padding, str) and padding == "same" and max(stride_p) != 1:
            raise ValueError(f"{name}: padding='same' needs stride=1 (as nn.Conv2d); got "
                             f"stride={stride!r}")
        self._pad = G.resolve_padding(padding, k[0], dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = k
        self.stride, self.padding, self.dilation = stride_p, padding, dil_p
        self.groups, self.padding_mode = groups, padding_mode
        self.group, self.basis = grp, basis
        self.fiber_out = int(grp.order)
        self.fiber_in = 1 if self.lifting else self.fiber_out
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self._weight_shape(), **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.register_buffer("expansion_index", torch.empty(0, dtype=torch.long, device=device),
                             persistent=False)
        self._cache: tuple | None = None
        self._warned = False
        self._exact_sizes: set[tuple[int, int]] = set()
        self.reset_parameters()

    # --- the basis decides the weight and the expansion ------------------------------------
    def _weight_shape(self) -> tuple[int, ...]:
        k = self.kernel_size[0]
        c_in = self.in_channels // self.groups
        if self.basis == "pixel":
            return ((self.out_channels, c_in, k, k) if self.lifting
                    else (self.out_channels, c_in, self.fiber_in, k, k))
        raise AssertionError(f"unreachable basis {self.basis!r}")  # validated in __init__

    def _expand(self) -> torch.Tensor:
        """The expanded filter ``(C_out * F_out, C_in * F_in // groups, k, k)``."""
        if self.basis == "pixel":
            return self.weight.reshape(-1)[self.expansion_index]
        raise AssertionError(f"unreachable basis {self.basis!r}")

    def reset_parameters(self) -> None:
        """Uniform init with ``nn.Conv2d``'s bound ``1/sqrt(fan_in)`` for the *expanded* fan-in
        ``C_in * F_in // groups * k * k``: every output unit sums ``fan_in`` distinct i.i.d.
        weights (a permutation of one filter), so its activation variance equals that of an
        ``nn.Conv2d`` with the same fan-in. Bias: uniform with the same bound."""
        k = self.kernel_size[0]
        self.expansion_index = G.expansion_index(
            self.group, self.out_channels, self.in_channels // self.groups, k,
            lifting=self.lifting, device=self.weight.device)
        fan_in = self.in_channels // self.groups * self.fiber_in * k * k
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            if self.weight.device.type != "meta":
                nn.init.uniform_(self.weight, -bound, bound)
                if self.bias is not None:
                    nn.init.uniform_(self.bias, -bound, bound)
        self._cache = None

    # --- forward ---------------------------------------------------------------------------
    def _expanded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(expanded filter, bias repeated over the fiber)``, from the eval cache when
        valid (see :meth:`expanded_filter`)."""
        w, b = self.weight, self.bias
        if (self.training or torch.compiler.is_compiling()
                or (torch.is_grad_enabled() and w.requires_grad)):
            return self._expand(), None if b is None else b.repeat_interleave(self.fiber_out)
        key = (w._version, w.data_ptr(), w.dtype, w.device,
               None if b is None else (b._version, b.data_ptr()))
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self._expand(),
                               None if b is None else b.repeat_interleave(self.fiber_out))
        return self._cache[1], self._cache[2]

    def expanded_filter(self) -> torch.Tensor:
        """The expanded filter, from the eval cache when valid.

        In ``eval()`` mode, when no gradient to the weight is being recorded, the filter is
        cached and re-used until the weight or bias changes: the key is the parameters'
        ``_version`` (bumped by optimizer steps, ``load_state_dict`` and in-place edits),
        ``data_ptr``, dtype and device (``.to()``, ``.double()``, ``weight.data = ...``). Edits
        through ``weight.data`` in place bypass the version counter: call
        :meth:`reset_cache` after those. The cache is a plain attribute, never in the
        ``state_dict``.
        """
        return self._expanded()[0]

    def reset_cache(self) -> None:
        """Drop the cached expanded filter (only needed after in-place ``weight.data`` edits)."""
        self._cache = None

    def _check_exact(self, x: torch.Tensor) -> None:
        size = (x.shape[-2], x.shape[-1])
        if self._warned or size in self._exact_sizes:
            return
        problems = G.exactness_problems(self.group, size, self.kernel_size[0], self.stride,
                                        self._pad, self.dilation)
        if not problems:
            self._exact_sizes.add(size)  # memo: the check costs ~20 us of Python per call
        else:
            self._warned = True
            warnings.warn(f"{type(self).__name__} ({self.group.name}) is not exactly equivariant "
                          f"on input of size {x.shape[-2]}x{x.shape[-1]}: "
                          + "; ".join(problems) + " (warned once per module)", stacklevel=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G._check_input(x, 4 if self.lifting else 5, self.in_channels,
                       None if self.lifting else self.fiber_in, type(self).__name__)
        if not torch.compiler.is_compiling():
            self._check_exact(x)
        weight, bias = self._expanded()
        return G.conv_expanded(x, weight, bias, self.fiber_out, self.stride, self._pad,
                               self.dilation, self.groups, self.padding_mode, bias_repeat=1)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[0]}, "
             f"group={self.group.name!r}")
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.basis != "pixel":
            s += f", basis={self.basis!r}"
        return s


_SHARED_DOC = """
    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode, device, dtype: as ``nn.Conv2d`` (``kernel_size`` square; ``padding`` an
            int, a pair, ``"same"`` or ``"valid"``; ``padding_mode`` ``"zeros"``,
            ``"reflect"``, ``"replicate"`` or ``"circular"``). Channels count *fields*.
        group: ``"c1"``, ``"c2"``, ``"c4"`` (``"p4"``), ``"d1"``, ``"d2"``, ``"d4"``
            (``"p4m"``) or a :class:`~equilayers.groups.Group`.
        basis: ``"pixel"``: full ``k x k`` filters (the GrouPy function class).

    Shape:
        ``H' = floor((H + pad_top + pad_bottom - dilation * (k - 1) - 1) / stride) + 1``,
        the same for ``W'`` (as ``nn.Conv2d``); ``|G|`` is 1, 2, 4, 2, 4, 8 for c1, c2, c4,
        d1, d2, d4.

    Equivariance:
        Exact (float rounding: about 1e-7 relative in float32, 1e-16 in float64) for every
        group element whenever each flipped dim has symmetric padding and
        ``(n + pad - dilation*(k-1) - 1) % stride == 0`` (for 90-degree rotations also the
        same options on both dims and a square input); see
        :func:`equilayers.functional.exactness_problems`. Stride 2 on an even size, or
        ``"same"`` with an even kernel, breaks it: the first such forward warns, once per
        module. Cost: one ``F.conv2d`` with the expanded filter.
"""


class LiftingConv2d(_GroupConvNd):
    __doc__ = """Lifting convolution: images ``(B, C_in, H, W)`` to regular group feature maps
    ``(B, C_out, |G|, H', W')``.

    ``out[o, g] = sum_c in[c] (*) (g . psi[o, c]) + b[o]``: slot ``g`` correlates with the
    filter transformed by ``g`` (``(*)`` is ``F.conv2d``'s cross-correlation).
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConv2d
        >>> LiftingConv2d(3, 8, 3, padding=1, group="p4m")(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 8, 9, 9])
    """
    lifting = True
    in_rep = "trivial"
    out_rep = "regular"


class GroupConv2d(_GroupConvNd):
    __doc__ = """Group convolution between regular feature maps
    ``(B, C_in, |G|, H, W) -> (B, C_out, |G|, H', W')``.

    ``out[o, g] = sum_{c, h} in[c, h] (*) (g . psi[o, c])[h] + b[o]`` where ``g . psi`` moves
    the filter spatially and permutes its slots, ``(g . psi)[h] = g . psi[g^-1 h]``.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConv2d
        >>> GroupConv2d(8, 4, 3, padding=1, group="p4")(torch.randn(2, 8, 4, 9, 9)).shape
        torch.Size([2, 4, 4, 9, 9])
    """
    lifting = False
    in_rep = "regular"
    out_rep = "regular"
