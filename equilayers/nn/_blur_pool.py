"""Anti-aliased pooling modules: blur pools, max-blur pool, blur conv, blur upsampling."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks as C
from ..functional._blur import (
    binomial_filter,
    blur_pool1d,
    blur_pool2d,
    blur_pool3d,
    blur_upsample2d,
    blur_upsample3d,
)
from ..functional._blur_conv import blur_conv2d
from ..groups import FieldType
from ._derived import _conv_options_repr, _FixedBuffers, parametrized_once
from ._exactness import _WarnsInexact, blur_padding_break, warn_once
from ._pool3d import warn_if_pool3d_inexact
from ._typed import Typed

__all__ = ["BlurPool1d", "BlurPool2d", "BlurPool3d", "BlurConv2d", "BlurUpsample2d"]

_FUNCTIONAL = {1: blur_pool1d, 2: blur_pool2d, 3: blur_pool3d}


class _BinomialBuffer(_FixedBuffers):
    """Mixin: the blur's normalized 1-D binomial filter as a non-persistent ``filter`` buffer
    (for inspection, as timm's ``filt``; the functional twin builds its own), placed on
    ``device``/``dtype`` as ``torch.nn`` modules place theirs."""

    filter: torch.Tensor  # buffer

    def _register_filter(self, size: int, device, dtype, what: str) -> None:
        C.check_float_dtype(dtype, "dtype", what)
        self.register_buffer("filter", torch.empty(size, device=device, dtype=dtype),
                             persistent=False)
        self._refill()  # not on the meta device: filled when moved off it

    def reset_parameters(self) -> None:
        """Fill the ``filter`` buffer (a pure function of the blur size)."""
        with torch.no_grad():
            self.filter.copy_(binomial_filter(self.filter.numel(), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        """An antialiased-cnns checkpoint's persistent ``filt`` (``(C, 1, k[, k])``: the
        normalized binomial, per channel) is read and checked, not unexpected: a model whose
        ``antialiased_cnns.BlurPool`` layers were swapped for ours loads its pretrained
        weights strictly."""
        filt = state_dict.pop(prefix + "filt", None)
        if filt is not None:
            k, nd = self.filter.numel(), getattr(self, "_nd", 2)
            b = binomial_filter(k, dtype=torch.float64)
            want = b if nd == 1 else torch.outer(b, b) if nd == 2 else None
            got = filt.detach().to("cpu", torch.float64)
            if want is None or got.shape[1:] != (1, *want.shape) or not torch.allclose(
                    got, want.expand_as(got), atol=1e-6):
                error_msgs.append(f"{type(self).__name__}: the checkpoint's {prefix}filt (an "
                                  f"antialiased-cnns blur filter of shape {tuple(filt.shape)}) "
                                  f"is not the binomial of size {k} this layer blurs with")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)


class _BlurPoolNd(Typed, _WarnsInexact, _BinomialBuffer):
    _nd = 2
    _fixed_args = ("kernel_size",)
    _shape = ""
    # Acts on the spatial dims only, so it commutes with any fiber action: the harness infers
    # the rep from the rank (4-D trivial, 5-D regular).
    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, channels: int | None = None, kernel_size: int | tuple[int, ...] = 3,
                 stride: int | tuple[int, ...] = 2, padding_mode: str = "reflect", device=None,
                 dtype=None) -> None:
        super().__init__()
        what = type(self).__name__
        self.channels = C.check_optional_int(channels, "channels", what, minimum=1,
                                             fix="None accepts any number of channels")
        # ints, or equal tuples as torch's pools take them (kornia's pairs, (3, 3); (3, 3, 3)
        # in 3-D), as their ints
        keep = f"a depthwise nn.Conv{self._nd}d"
        k, s = (C.square_int(v, n, what, keep, self._nd) for v, n
                in ((kernel_size, "kernel_size"), (stride, "stride")))
        C.check_blur_pool_args(k, s, padding_mode, what)
        self.kernel_size, self.stride, self.padding_mode = k, s, padding_mode
        self._register_filter(k, device, dtype, what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None and isinstance(x, torch.Tensor) and not x.is_nested:
            cdim = 1 if x.dim() >= self._nd + 2 else 0
            if x.dim() > cdim and x.shape[cdim] != self.channels:
                raise ValueError(f"{type(self).__name__}(channels={self.channels}) got an input "
                                 f"with {x.shape[cdim]} channels (shape {tuple(x.shape)}); pass "
                                 "channels=None to accept any")
        if self._nd == 2:  # on group maps: warn once where the grid breaks exactness
            self._warn_if_window_inexact(x)
        elif self._nd == 3:
            warn_if_pool3d_inexact(self, x, self._window3d, padding_mode=self.padding_mode,
                                   taps=self._window_taps())
        # the functional twin (blur_pool2d dispatches: Triton kernel, CPU fast path, reference)
        return _FUNCTIONAL[self._nd](x, self.kernel_size, self.stride, self.padding_mode)

    def _sampling_window(self) -> tuple:
        a = (self.kernel_size - 1) // 2  # the blur's padding: the extra pixel at the end
        b = self.kernel_size - 1 - a
        return self.kernel_size, self.stride, (a, b, a, b), 1

    def _window_padding_mode(self) -> str | None:
        return self.padding_mode  # the blur reads its padding directly

    def _window_taps(self) -> tuple[int, ...]:
        return tuple(math.comb(self.kernel_size - 1, u) for u in range(self.kernel_size))

    def _window3d(self) -> tuple:
        k, s, (a, b, _, _), _ = self._sampling_window()  # the same padding on every dim
        return (k,) * 3, (s,) * 3, (a, b) * 3, (1, 1, 1)

    def extra_repr(self) -> str:
        parts = [] if self.channels is None else [f"channels={self.channels}"]
        parts += [f"kernel_size={self.kernel_size}", f"stride={self.stride}"]
        if self.padding_mode != "reflect":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return ", ".join(parts)


class BlurPool1d(_BlurPoolNd):
    """Anti-aliased subsampling of 1-D signals: binomial blur, then keep every ``stride``-th.

    ``y[n] = sum_i b[i] xpad[s n + i]`` with ``b`` the normalized binomial of size
    ``kernel_size`` and ``xpad`` padded by ``(k-1)//2`` left and ``(k-1) - (k-1)//2`` right.

    Functional twin: :func:`~equilayers.functional.blur_pool1d`.

    Args:
        channels: optional; only checked against the input (the filter is shared).
        kernel_size: binomial filter size, 1..7 (1 = plain subsampling ``x[..., ::s]``); an
            int or a 1-tuple ``(k,)`` (as ``nn.AvgPool1d`` takes it), as ``stride``.
        stride: subsampling factor, >= 1.
        padding_mode: ``"reflect"`` (default), ``"replicate"``, ``"zeros"`` or ``"circular"``;
            ``"reflect"`` on ``L <= (k-1) - (k-1)//2`` pads with ``"replicate"`` instead.
        device, dtype: of the ``filter`` buffer (the binomial, a copy to inspect: the blur
            does not read it), as in ``torch.nn`` modules.

    Shape:
        ``(B, C, L) -> (B, C, floor((L - 1) / stride) + 1)``.

    Equivariance:
        With ``padding_mode="circular"`` exactly equivariant to circular shifts by multiples of
        ``stride`` (a shift by ``s t`` moves the output by ``t``) when ``stride`` divides
        ``L`` (otherwise the samples do not tile the circle: error 0.3-1.3 measured at
        ``L = 7``, stride 2 and 3).

    Example:
        >>> BlurPool1d()(torch.randn(2, 3, 9)).shape
        torch.Size([2, 3, 5])
    """

    _nd = 1


class BlurPool2d(_BlurPoolNd):
    """Anti-aliased subsampling (Zhang 2019): 2-D binomial blur, then subsample by ``stride``.

    The filter is the outer product of the normalized binomial of size ``kernel_size``; each
    spatial dim is padded ``(k-1)//2`` top/left and ``(k-1) - (k-1)//2`` bottom/right (Zhang's
    reference: the extra pixel of even sizes at the bottom/right), then correlated at stride
    ``s`` from offset 0, the same filter for every channel. The ``filter`` buffer is a copy
    to inspect (as timm's ``filt``): the functional twin builds the binomial of
    ``kernel_size`` itself, so editing the buffer changes nothing (another filter: a
    depthwise ``nn.Conv2d``).

    Functional twin: :func:`~equilayers.functional.blur_pool2d`.

    Args:
        channels: optional; only checked against the input's dim 1.
        kernel_size: binomial filter size, 1..7 (1 = plain subsampling ``x[..., ::s, ::s]``);
            an int or an equal pair (kornia's), as ``stride``.
        stride: subsampling factor, >= 1.
        padding_mode: ``"reflect"`` (default), ``"replicate"``, ``"zeros"`` or ``"circular"``.
            With ``"reflect"``, a spatial dim of size ``<= (k-1) - (k-1)//2`` (too short to
            reflect) is padded with ``"replicate"`` instead (a 1-pixel dim blurs to itself);
            ``"circular"`` needs every spatial size ``>= (k-1) - (k-1)//2``.
        device, dtype: of the ``filter`` buffer (the binomial, a copy to inspect: the blur
            does not read it), as in ``torch.nn`` modules.

    Shape:
        ``(B, C, H, W) -> (B, C, H', W')`` or ``(B, C, F, H, W) -> (B, C, F, H', W')`` (only
        ``H, W`` are blurred), ``H' = floor((H - 1) / stride) + 1``.

    Equivariance:
        Exact for circular shifts by multiples of ``stride`` with ``padding_mode="circular"``
        when ``stride`` divides ``H`` and ``W`` (any other mode breaks it at the borders, and
        other sizes everywhere: the samples do not tile the torus). Exact for rot90 and flips
        (trivial or regular fields) when ``kernel_size`` is odd and ``(n - 1) % stride == 0``
        on both dims (e.g. 9x9 or 9x13 at stride 2: a quarter turn maps ``H x W`` to
        ``W x H``, any sizes); even sizes at stride 2 do not
        commute with rot90 (an even ``kernel_size``: the other way round). On group maps
        (5-D) it warns once per module at a size that breaks this (not on images, where it
        makes no group claim).

    Example:
        >>> BlurPool2d(channels=3)(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    _nd = 2


class BlurPool3d(_BlurPoolNd):
    """Anti-aliased subsampling of volumes: 3-D binomial blur, then subsample by ``stride``.

    Same semantics (and arguments, the ``"reflect"`` fallback included; ``kernel_size`` and
    ``stride`` an int or an equal triple, ``(3, 3, 3)``, where :class:`BlurPool2d` takes an
    equal pair) as :class:`BlurPool2d` over ``(D, H, W)``; a group feature
    map of the cube's groups ``(B, C, F, D, H, W)`` is blurred slot by slot (only ``D, H, W`` move).

    Functional twin: :func:`~equilayers.functional.blur_pool3d`.

    Shape:
        ``(B, C, D, H, W) -> (B, C, D', H', W')`` or ``(B, C, F, D, H, W) -> (B, C, F, D', H',
        W')``, ``D' = floor((D - 1) / stride) + 1``. Every leading dim is blurred alike, so a
        4-D input is an unbatched volume ``(C, D, H, W) -> (C, D', H', W')``, as for
        ``nn.AvgPool3d``; at least 4 dims.

    Equivariance:
        Exact for circular shifts by multiples of ``stride`` with ``padding_mode="circular"``
        when ``stride`` divides every size. Exact for every element of the cube groups
        (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``; volumes or regular fields) when
        ``kernel_size`` is odd, ``(n - 1) % stride == 0`` on every dim (e.g. 9x9x9 at
        stride 2; the sizes may differ, e.g. 7x9x11: a rotation permutes them with the dims);
        even sizes at stride 2 are not
        (measured error ~0.9 on 6x6x6; an even ``kernel_size``: the other way round). On 6-D
        group maps it warns once per module at a size that breaks this.

    Example:
        >>> BlurPool3d()(torch.randn(1, 2, 5, 6, 7)).shape
        torch.Size([1, 2, 3, 3, 4])
        >>> BlurPool3d()(torch.randn(1, 2, 24, 9, 9, 9)).shape  # an "o" group map
        torch.Size([1, 2, 24, 5, 5, 5])
    """

    _nd = 3


class BlurConv2d(Typed, nn.Module):
    """A strided ``nn.Conv2d`` made anti-aliased: convolve at stride 1, then blur-pool.

    Same arguments, parameter names (``weight``, ``bias``) and initialization as
    ``nn.Conv2d``, so a ``Conv2d``'s ``state_dict`` loads into it; ``stride`` is applied by
    the blur pool (``blur_size`` binomial, padded with ``blur_padding_mode``: default
    ``"circular"`` when ``padding_mode="circular"``, else ``"reflect"``; with ``"reflect"``, a
    dim of the stride-1 conv's output of size ``<= (b-1) - (b-1)//2``, ``b = blur_size``, is
    padded with ``"replicate"`` instead, so every input ``nn.Conv2d`` takes works).

    ``fold`` chooses how the output is computed, never what it is (every path equals the
    composition to float rounding, tested on random configurations): ``None`` (default) the
    path with the fewest multiply-adds, ``True`` an exact rewrite at output resolution wherever
    one applies, ``False`` the composition itself. The rewrites: a ``1 x 1`` kernel blur-pools
    its input and convolves a quarter of the pixels (stride 2); a larger kernel blurs its input
    at stride 1 and runs the strided conv on it, or (depthwise convs) convolves with the blur
    folded into the weight (``k + 2`` taps per dim for a 3-tap blur, recomputed in every
    forward from the stored ``k x k`` weight); the outputs whose blur taps reach the padding
    (a one-pixel ring for a 3-tap blur at stride 2) are recomputed from the few stride-1 conv
    rows and columns they read. :func:`equilayers.functional.blur_conv2d_path` says which path
    an input takes.

    ``stride`` is an int or a pair of equal ints (the blur pool subsamples both dims alike),
    stored as an int. ``padding`` is an int, a pair or ``"valid"`` (no padding, stored as
    ``(0, 0)``); ``"same"`` is refused, as ``nn.Conv2d`` refuses it for strided convs.

    Functional twin: :func:`~equilayers.functional.blur_conv2d`.

    Shape:
        ``(B, C_in, H, W) -> (B, C_out, H', W')`` or unbatched ``(C_in, H, W) -> (C_out, H',
        W')``, ``H' = floor((H + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1``,
        as the strided ``nn.Conv2d``.

    Equivariance:
        With ``padding_mode="circular"`` exactly equivariant to circular shifts by multiples of
        ``stride`` (every ``fold``) when the stride-1 conv keeps the size (odd
        ``kernel_size``, ``padding = dilation (kernel_size - 1) / 2``) and ``stride`` divides
        ``H`` and ``W``; other paddings or sizes are not circular (error 0.1-1.2 measured).

    Example:
        >>> BlurConv2d(3, 8, 3, padding=1)(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 5, 5])
    """

    in_type = out_type = FieldType.trivial()  # images of any group: shift-equivariant

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 2, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None, *, blur_size: int = 3,
                 blur_padding_mode: str | None = None, fold: bool | None = None) -> None:
        super().__init__()
        what = type(self).__name__
        in_channels, out_channels, groups = C.check_conv_channels(
            in_channels, out_channels, groups, what, C.CONV_FIXES)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = C.check_pair(kernel_size, "kernel_size", what, minimum=1)
        self.stride = C.check_square_stride(stride, "stride", what)  # (s, s) -> s
        self.padding = C.check_strided_padding(padding, "padding", what)
        self.dilation = C.check_pair(dilation, "dilation", what, minimum=1)
        self.groups = groups
        self.padding_mode = C.check_padding_mode(padding_mode, "padding_mode", what,
                                                 C.PADDING_MODES)
        self.blur_size = C.check_blur_size(blur_size, "blur_size", what, "conv")
        if blur_padding_mode is not None:
            C.check_padding_mode(blur_padding_mode, "blur_padding_mode", what)
        self.blur_padding_mode = blur_padding_mode
        self.fold = C.check_bool(fold, "fold", what, optional=True,
                                 fix="None takes the cheaper exact path, False the composition")
        C.check_flag(bias, "bias", what)
        C.check_float_dtype(dtype, "dtype", what)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups,
                                               *self.kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialization."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.check_dtype_match(x, self.weight, type(self).__name__)
        return blur_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           self.groups, blur_size=self.blur_size, padding_mode=self.padding_mode,
                           blur_padding_mode=self.blur_padding_mode, fold=self.fold)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        s += _conv_options_repr(self, 2)
        if self.blur_size != 3:
            s += f", blur_size={self.blur_size}"
        if self.blur_padding_mode is not None:
            s += f", blur_padding_mode={self.blur_padding_mode!r}"
        if self.fold is not None:
            s += f", fold={self.fold}"
        return s


class BlurUpsample2d(Typed, _BinomialBuffer):
    """Anti-aliased upsampling: zero insertion, then a binomial blur scaled by ``s**2``.

    ``x[..., i, j]`` lands on ``y[..., s i, s j]`` (zeros elsewhere) and ``y`` is blurred at
    stride 1 with the filter ``s**2 * b b^T``, which keeps the mean (exactly with circular
    padding; ``blur_size=1`` is the zero insertion times ``s**2``). ``scale_factor=2,
    blur_size=3`` keeps the input samples and fills the new ones by linear interpolation. The
    samples land on ``s i``, so the upsampled grid is off centre
    by ``(s - 1) / 2`` pixels (even ``blur_size`` shifts it by half a pixel more), unless
    ``transposed=True`` with an even ``blur_size`` at ``s = 2``.

    Functional twin: :func:`~equilayers.functional.blur_upsample2d`.

    Args:
        scale_factor: integer upsampling factor, >= 1.
        blur_size: binomial filter size, 1..7.
        padding_mode: padding of the blur (``"reflect"`` default).
        transposed: ``s**2`` times the transpose of ``BlurPool2d(blur_size, s, padding_mode)``
            (needs ``padding_mode`` ``"zeros"`` or ``"circular"``; every ``s`` and
            ``blur_size``): for even ``blur_size`` the blur's pads are swapped, so the samples
            land on ``y[..., s i + 1, s j + 1]``, where that pool took them from
            (``blur_size=2``: nearest-neighbour upsampling); odd sizes are unchanged.
        device, dtype: of the ``filter`` buffer (the blur's binomial, a copy to inspect:
            the blur does not read it), as in ``torch.nn`` modules.

    Shape:
        ``(..., H, W) -> (..., s H, s W)``; trivial ``(B, C, H, W)`` or group maps
        ``(B, C, F, H, W)`` (only ``H, W`` are upsampled).

    Equivariance:
        With ``padding_mode="circular"``: a circular shift of the input by ``t`` shifts the
        output by ``s t``, exactly. Rot90 and flips on even sizes: ``transposed=True`` with an
        even ``blur_size`` at ``s = 2`` commutes with them exactly (as ``BlurPool2d`` with the
        same even size does on even inputs; ``tests/test_blur_upsample.py`` measures both on 4-D
        and regular 5-D maps): the pair of :class:`equilayers.models.UNet`. Every other setting
        with ``scale_factor > 1`` is off centre at every size (measured p4 error 0.75-1.5), and
        warns once per module on a group map (5-D; images make no group claim).

    Example:
        >>> BlurUpsample2d()(torch.randn(1, 2, 4, 5)).shape
        torch.Size([1, 2, 8, 10])
    """

    _fixed_args = ("blur_size",)

    in_type = out_type = None  # any field type; the output has the input's
    _nd = 2  # the upsampled (last) dims

    def __init__(self, scale_factor: int = 2, blur_size: int = 3,
                 padding_mode: str = "reflect", *, transposed: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__()
        what = type(self).__name__
        self.scale_factor, self.blur_size, self.padding_mode, self.transposed = (
            C.check_blur_upsample_args(scale_factor, blur_size, padding_mode, transposed, what))
        self._register_filter(self.blur_size, device, dtype, what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.__dict__.get("_warned", False) and isinstance(x, torch.Tensor)
                and x.dim() == self._nd + 3 and not self._grid_exact()):
            self._warn_inexact_everywhere()
        fn = blur_upsample2d if self._nd == 2 else blur_upsample3d
        return fn(x, self.scale_factor, self.blur_size, self.padding_mode,
                  transposed=self.transposed)

    def _grid_exact(self) -> bool:
        """Whether the upsampled grid is centred on the input's, so rot90 and flips commute
        with it at every size: no upsampling with an odd blur, or ``scale_factor=2``,
        ``transposed=True`` and an even blur (the samples land half a pixel in on each side).
        Every other setting is off centre at every size (measured: p4 error 0.75-1.5)."""
        s, b = self.scale_factor, self.blur_size
        return (s == 1 and b % 2 == 1) or (s == 2 and self.transposed and b % 2 == 0)

    def _grid_breaks(self) -> list[tuple[str, str, str, str]]:
        """What it breaks at every size, for ``check_grid``: ``(problem, "group" |
        "shifts", why, fix)``."""
        out = []
        if not self._grid_exact():
            out.append(("upsample-grid", "group", "its samples land off the centre of the "
                        "upsampled grid at every size (measured p4 error 0.75-1.5)",
                        "scale_factor=2, transposed=True and an even blur_size (padding_mode "
                        f"'zeros' or 'circular': the pair of BlurPool{self._nd}d with that "
                        "size)"))
        return out + blur_padding_break(self.blur_size, self.padding_mode)

    def _warn_inexact_everywhere(self) -> None:
        warn_once(
            self, f"{type(self).__name__}({self.extra_repr()}) on a group map is not exactly "
            "equivariant to flips and 90-degree rotations at any size: its samples land off "
            "the centre of the upsampled grid; use scale_factor=2, transposed=True and an even "
            f"blur_size (padding_mode 'zeros' or 'circular': the pair of BlurPool{self._nd}d "
            "with that size, as equilayers.models.UNet uses in 2-D) (warned once per module)")

    def extra_repr(self) -> str:
        parts = [f"scale_factor={self.scale_factor}"]
        if self.blur_size != 3:
            parts.append(f"blur_size={self.blur_size}")
        if self.padding_mode != "reflect":
            parts.append(f"padding_mode={self.padding_mode!r}")
        if self.transposed:
            parts.append("transposed=True")
        return ", ".join(parts)


class BlurUpsample3d(BlurUpsample2d):
    """Anti-aliased upsampling of volumes: :class:`BlurUpsample2d` along ``D, H, W``, zero
    insertion then a binomial blur scaled by ``s**3`` (the same arguments and rules).

    Functional twin: :func:`~equilayers.functional.blur_upsample3d`.

    Shape:
        ``(..., D, H, W) -> (..., s D, s H, s W)``; volumes ``(B, C, D, H, W)`` or the cube
        groups' maps ``(B, C, |G|, D, H, W)`` (only ``D, H, W`` are upsampled).

    Equivariance:
        With ``padding_mode="circular"`` a circular shift of the input by ``t`` shifts the
        output by ``s t``, exactly. ``transposed=True`` with an even ``blur_size`` at ``s = 2``
        (``s**3`` times the transpose of ``BlurPool3d`` with that size) commutes exactly with
        every element of the cube's groups on 6-D maps (each axis's samples land half a voxel
        in on both sides, so every signed permutation of the axes maps the grid onto itself;
        ``tests/test_blur_upsample3d.py`` measures all 48 of O_h); every other setting with
        ``scale_factor > 1`` is off centre at every size and warns once per module on a 6-D
        map.

    Example:
        >>> BlurUpsample3d(2, 4, "circular", transposed=True)(torch.randn(1, 2, 3, 3, 3)).shape
        torch.Size([1, 2, 6, 6, 6])
    """

    _nd = 3
