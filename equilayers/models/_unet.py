"""UNet: an encoder-decoder for per-pixel prediction, exactly equivariant on its grid."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks as C
from ..functional._group_norm import check_batch_values
from ..groups import FieldType, GroupLike, PlanarGroup, get
from ..nn import GroupPool
from ..nn._typed import Typed
from ._blocks import (
    DOWNS,
    LAYERS,
    NONLINEARITIES,
    UPS,
    DoubleConv,
    concat,
    make_down,
    make_up,
    steerable_conv,
    transposed_up,
)

__all__ = ["UNet"]


class _UNetNd(Typed, nn.Module):
    """The U-Net of :class:`UNet` (``_nd = 2``) and :class:`~equilayers.models.UNet3d`
    (``_nd = 3``): the arguments, the levels and the forward, for ``_nd`` spatial dims."""

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, *, group: GroupLike | None = "p4m",
                 depth: int = 2, width: int = 8, padding_mode: str = "circular",
                 down: str = "blur", basis: str | None = None, up: str = "matched",
                 max_order: int | None = None, nonlinearity: str | None = None, device=None,
                 dtype=None) -> None:
        super().__init__()
        what, nd = type(self).__name__, self._nd
        C.check_int(in_channels, "in_channels", what, minimum=1)
        C.check_int(out_channels, "out_channels", what, minimum=1)
        C.check_int(depth, "depth", what, minimum=1, maximum=8,
                    fix="the number of downsamplings (2-4 is usual)")
        C.check_int(width, "width", what, minimum=1, fix="the fields of the first level")
        C.check_padding_mode(padding_mode, "padding_mode", what, C.PADDING_MODES)
        C.check_choice(down, "down", DOWNS, what)
        C.check_choice(up, "up", UPS, what)
        if up == "transposed" and down in ("polyphase", "learned"):
            raise ValueError(f"{what}: up='transposed' puts the decoder's samples on a fixed "
                             f"grid, which undoes down={down!r}'s exactness under every "
                             "circular shift; use up='matched' (the polyphase upsampling that "
                             "restores the chosen component), or down='max' / 'blur' with "
                             "up='transposed'")
        C.check_float_dtype(dtype, "dtype", what)
        bases = ("pixel", "harmonic") if nd == 2 else ("voxel", "harmonic")
        if basis is not None:
            C.check_choice(basis, "basis", bases, what)
            if group is None:
                raise ValueError(f"{what}: basis={basis!r} chooses group-conv filters, but "
                                 f"group=None builds plain nn.Conv{nd}d; drop basis or give a "
                                 "group")
        grp = None
        if group is None and max_order is not None:
            raise ValueError(f"{what}: max_order={max_order!r} chooses the harmonic fields of "
                             "a continuous group, but group=None builds a plain U-Net; drop "
                             f"max_order or give a group ({self._steerable})")
        if group is not None:
            grp = get(group)
            steerable = not grp.is_finite and grp.spatial_dim in self._steerable_dims
            if not steerable and (not grp.is_finite or grp.spatial_dim != nd):
                raise ValueError(f"{what}: group={grp.name!r} has neither regular nor "
                                 f"harmonic U-Net fields on {self._inputs}; use "
                                 f"{self._groups}, {self._steerable} (or None for a plain "
                                 "U-Net)")
            if steerable:
                max_order = self._check_steerable(grp, max_order, basis, down, what)
            elif max_order is not None:
                raise ValueError(f"{what}: max_order={max_order!r} chooses harmonic fields, "
                                 f"but group={grp.name!r} builds regular ones (|G| slots); "
                                 f"drop max_order, or use {self._steerable}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.group, self.depth, self.width = grp, depth, width
        self.padding_mode, self.down_mode, self.up_mode = padding_mode, down, up
        self.in_type = FieldType.trivial(grp, spatial_dims=nd)
        self.out_type = FieldType.trivial(grp, spatial_dims=nd)
        self.max_order = max_order
        self.nonlinearity = self._check_nonlinearity(nonlinearity, grp, max_order, what)
        self.basis = None if grp is None else (
            basis or ("harmonic" if max_order is not None else self._default_basis))
        if (grp is not None and nd == 2 and self.basis == "harmonic"
                and not isinstance(grp, PlanarGroup)):  # (a registered group: named here)
            raise ValueError(f"{what}: group={grp.name!r} is not a planar group (cN, dN), whose "
                             f"steerable filters basis={self.basis!r} builds"
                             + (" (the default)" if basis is None else "")
                             + "; use basis='pixel' for its pixel filters")
        kw = {"padding_mode": padding_mode, "nd": nd, "device": device, "dtype": dtype}
        block = {**kw, "basis": self.basis, "max_order": max_order,
                 "nonlinearity": self.nonlinearity}
        widths = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [DoubleConv(in_channels, widths[0], grp, lift=True, **block)]
            + [DoubleConv(widths[lv - 1], widths[lv], grp, **block)
               for lv in range(1, depth + 1)])
        self.down = nn.ModuleList(make_down(down, grp, padding_mode, widths[lv], nd=nd,
                                            harmonic=max_order is not None, device=device,
                                            dtype=dtype)
                                  for lv in range(depth))
        if up == "transposed":  # the original U-Net's up-convolution: 2 x 2, stride 2, halving
            self.up = nn.ModuleList(transposed_up(widths[lv + 1], widths[lv], grp, nd=nd,
                                                  max_order=max_order, device=device,
                                                  dtype=dtype)
                                    for lv in range(depth))
        else:
            self.up = nn.ModuleList(make_up(down, padding_mode, nd=nd, device=device,
                                            dtype=dtype) for _ in range(depth))
        came = widths[1:] if up == "matched" else widths[:-1]  # fields the up step gives
        self.decoder = nn.ModuleList(
            DoubleConv(widths[lv] + came[lv], widths[lv], grp, **block) for lv in range(depth))
        factory = {"device": device, "dtype": dtype}
        self.head: nn.Module
        self.pool: nn.Module
        if grp is None:
            self.head, self.pool = (LAYERS[nd]["conv"](widths[0], out_channels, 1, **factory),
                                    nn.Identity())
        elif max_order is not None:  # to invariant (order-0) fields: (B, out, 1, ...) -> logits
            self.head = steerable_conv(widths[0], out_channels, 1, grp, nd=nd, max_order=0,
                                       in_max_order=max_order, **factory)
            self.pool = nn.Flatten(1, 2)
        else:
            self.head = LAYERS[nd]["gconv"](widths[0], out_channels, 1, group=grp, **factory)
            self.pool = GroupPool("max")

    def _check_nonlinearity(self, name, grp, max_order: int | None, what: str) -> str:
        """``nonlinearity`` (``None``: the default of the U-Net's fields), one of
        :data:`~equilayers.models._blocks.NONLINEARITIES` for them."""
        kind = "pointwise" if max_order is None else "harmonic"
        if name is None:
            return NONLINEARITIES[kind][0]
        fields = ("plain channels" if grp is None else
                  f"the regular fields of {grp.name!r}" if kind == "pointwise" else
                  f"the harmonic fields of {grp.name!r}")
        other = "harmonic" if kind == "pointwise" else "pointwise"
        if isinstance(name, str) and name in NONLINEARITIES[other]:
            why = ("is for harmonic fields (of a continuous group)" if other == "harmonic" else
                   "is pointwise, which does not commute with the rotation of a harmonic "
                   "fiber")
            raise ValueError(f"{what}: nonlinearity={name!r} {why}, but this U-Net builds "
                             f"{fields}; use one of {NONLINEARITIES[kind]} (default "
                             f"{NONLINEARITIES[kind][0]!r})")
        return C.check_choice(name, "nonlinearity", NONLINEARITIES[kind], what,
                              fix=f"the nonlinearity on {fields}")

    def _check_steerable(self, grp, max_order: int | None, basis: str | None, down: str,
                         what: str) -> int:
        """The arguments of a U-Net of harmonic fields of the continuous group ``grp``;
        returns ``max_order`` (its default when ``None``)."""
        if basis not in (None, "harmonic"):
            raise ValueError(f"{what}: basis={basis!r} on group={grp.name!r}: a continuous "
                             "group's fields need steerable filters; use basis=None (or "
                             "'harmonic')")
        if max_order is None:
            return 2 if grp.spatial_dim == 2 else 1
        # (a 3 x 3 filter on images or volumes reaches orders 0 .. 2 from the input's scalars:
        # the lifting conv would leave order 3 and up at 0, a warning per layer)
        return C.check_int(max_order, "max_order", what, minimum=0, maximum=2,
                           fix="the highest rotation order of the fields; the 3 x 3 lifting "
                               "conv reaches orders 0 .. 2 only")

    _inputs = "images"
    _groups = "a finite 2-D group such as 'p4', 'p4m' or 'd1'"
    _steerable = "'so2' or 'o2' (harmonic fields, with max_order)"
    _steerable_dims: tuple[int, ...] = (2,)  # spatial_dim of the continuous groups taken
    _default_basis = "harmonic"

    @property
    def multiple(self) -> int:
        """``2**depth``: input sizes must be multiples of it."""
        return 2**self.depth

    def _check_input(self, x: torch.Tensor) -> None:
        what, nd = type(self).__name__, self._nd
        dims = ("H", "W") if nd == 2 else ("D", "H", "W")
        C.check_tensor(x, "x", what, ndim=nd + 2,
                       layout=f"(B, in_channels, {', '.join(dims)})")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{what}(in_channels={self.in_channels}) got an input with "
                             f"{x.shape[1]} channels (shape {tuple(x.shape)})")
        sizes = tuple(x.shape[2:])
        m = self.multiple
        # (the messages are formatted in the failing branches only: compiled with dynamic
        # sizes, str() of a size is a graph break)
        if any(n % m for n in sizes):
            text = "x".join(map(str, sizes))
            names = "height and width" if nd == 2 else "depth, height and width"
            hint = "x".join(str(-(-n // m) * m) for n in sizes)
            raise ValueError(f"{what}(depth={self.depth}): the input {names} must be "
                             f"multiples of 2**depth = {m} (every level halves them and the "
                             f"skip connections must line up); got {text}. Pad to {hint} (or "
                             "crop)")
        if self.padding_mode == "reflect" and min(sizes) < 2 * m:
            # checked here, before an inner conv refuses its 1x1 map with a fix that is not
            # the UNet's (its padding_mode)
            fits = [d for d in range(1, self.depth)
                    if not any(n % 2**d for n in sizes) and min(sizes) >= 2 ** (d + 1)]
            text = "x".join(map(str, sizes))
            smaller = f", or depth={fits[-1]} for {text} inputs" if fits else ""
            deep = "x".join(str(n // m) for n in sizes)
            want = "x".join(str(max(n, 2 * m)) for n in sizes)
            raise ValueError(f"{what}(depth={self.depth}, padding_mode='reflect'): a {text} "
                             f"input is {deep} at the deepest level (every level halves it), "
                             "and reflect padding needs at least 2 pixels there; use an input "
                             f"size of {want} or larger (multiples of {m}){smaller}")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        self._check_input(x)
        if self.training:
            self._check_batch(x)
        if generator is not None:
            if self.down_mode != "learned":
                raise ValueError(f"{type(self).__name__}(down={self.down_mode!r}) draws no random "
                                 "numbers: generator= is for down='learned' (its Gumbel noise "
                                 "in training); drop it")
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"{type(self).__name__}: generator={generator!r} must be a "
                                "torch.Generator or None")
        skips: list[torch.Tensor] = []
        indices: list[torch.Tensor] = []
        h = x
        for level, block in enumerate(self.encoder):
            if level:
                down = self.down[level - 1]
                h = down(h, generator) if generator is not None else down(h)
                if isinstance(h, tuple):  # polyphase: (map, component index)
                    h, index = h
                    indices.append(index)
            h = block(h)
            skips.append(h)
        for level in reversed(range(self.depth)):
            up = self.up[level]
            h = up(h, indices[level]) if indices else up(h)
            h = self.decoder[level](concat(skips[level], h))
        return self.pool(self.head(h))

    def _check_batch(self, x: torch.Tensor) -> None:
        """torch's batch-norm rule in training, for the whole net: the deepest level's batch
        norms need more than one value per channel (``B`` times its pixels, times ``|G|`` on
        regular fields). Checked here because the plain U-Net's ``nn.BatchNorm2d`` / ``3d``
        raised torch's bare "Expected more than 1 value per channel" from inside."""
        deep = [n // self.multiple for n in x.shape[2:]]
        regular = self.group is not None and self.max_order is None
        slots = int(self.group.order) if regular and self.group is not None else 1
        if x.shape[0] * math.prod(deep) * slots == 1:
            check_batch_values(x, 1, f"{type(self).__name__}(depth={self.depth})",
                               f"B * {'F * ' if regular else ''}spatial at the deepest level, "
                               + "x".join(map(str, deep)) + ",")

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}",
                 f"group={None if self.group is None else self.group.name!r}",
                 f"depth={self.depth}", f"width={self.width}"]
        if self.padding_mode != "circular":
            parts.append(f"padding_mode={self.padding_mode!r}")
        if self.down_mode != "blur":
            parts.append(f"down={self.down_mode!r}")
        if self.up_mode != "matched":
            parts.append(f"up={self.up_mode!r}")
        if self.max_order is not None:
            parts.append(f"max_order={self.max_order}")
        if self.nonlinearity != NONLINEARITIES[
                "pointwise" if self.max_order is None else "harmonic"][0]:
            parts.append(f"nonlinearity={self.nonlinearity!r}")
        if self.basis not in (None, self._default_basis):
            parts.append(f"basis={self.basis!r}")
        return ", ".join(parts)


class UNet(_UNetNd):
    """A U-Net of group convolutions: per-pixel logits that rotate, flip and shift with the input.

    ``depth`` levels down and up: level ``l`` works at ``H / 2**l`` with ``width * 2**l``
    fields (regular fields of ``group``, or plain channels with ``group=None``); each level is
    two ``3 x 3`` convs with batch norm and ReLU (:class:`~equilayers.nn.LiftingConv2d` first,
    then :class:`~equilayers.nn.GroupConv2d`, :class:`~equilayers.nn.GroupBatchNorm2d`). The
    encoder halves the size between levels with ``down``, the decoder doubles it with the
    matching upsampling and concatenates the encoder's map of that level (skip connection,
    along ``C``); a ``1 x 1`` group conv to ``out_channels`` fields and a
    :class:`~equilayers.nn.GroupPool` (max over the fiber) give ``out_channels`` logits per
    pixel (a ``1 x 1`` ``nn.Conv2d`` with ``group=None``).

    Args:
        in_channels: channels of the input image.
        out_channels: logits per pixel (classes).
        group: a finite 2-D group (``"p4m"`` = ``"d4"``, ``"p4"`` = ``"c4"``, ``"d1"``,
            ...) for regular fields, or ``None`` for a plain U-Net of ``nn.Conv2d`` /
            ``nn.BatchNorm2d`` (the same shape, for comparison).
        depth: number of downsamplings, >= 1.
        width: fields (channels when ``group=None``) of level 0; level ``l`` has
            ``width * 2**l``. A regular field has ``|G|`` slots: ``group=None`` with about
            ``0.8 * width * sqrt(|G|)`` channels has about the same parameter count (``width *
            sqrt(|G|)`` with ``basis="pixel"``).
        padding_mode: padding of the convs (``"circular"`` default, ``"zeros"``,
            ``"reflect"``, ``"replicate"``).
        down: ``"blur"`` (default): ``BlurPool2d(kernel_size=4)`` and its transpose
            ``BlurUpsample2d(2, 4, transposed=True)``; ``"polyphase"``: adaptive polyphase
            sampling, ``PolyphasePool2d(return_index=True)``, and ``PolyphaseUpsample2d`` with
            the encoder's index (both with a 3-tap binomial blur); ``"max"``: ``2 x 2`` max
            pooling and nearest-neighbour upsampling (the original U-Net's sampling);
            ``"learned"``: learnable polyphase sampling (LPS,
            :class:`~equilayers.nn.LearnablePolyphasePool2d` with ``return_index=True``, no
            blur) and :class:`~equilayers.nn.LearnablePolyphaseUpsample2d` putting the decoder's
            samples back on the component the encoder chose. In training the choice is sampled
            (Gumbel noise, straight-through gradient to the scoring nets; from
            ``forward(x, generator=g)``'s generator, else the global one); in evaluation it is
            the argmax.
        basis: the ``3 x 3`` group convs' filter basis. ``None`` (default): ``"harmonic"``
            for group U-Nets (steerable: Gaussian rings of circular harmonics, escnn's basis,
            about 2/3 of the pixel basis's parameters per field); ``"pixel"``: every pixel
            free within the group's constraint. Exact on the grid either way. The default
            because it trains: in the segmentation benchmark (``benchmarks/results/
            cpu-segmentation.md``) the pixel-basis p4m U-Net ended on 1 seed of 3 predicting one
            class for every digit pixel, the harmonic one learned on every seed. Must be
            ``None`` with ``group=None``.
        up: ``"matched"`` (default): the upsampling partner of ``down`` above; ``"transposed"``:
            the original U-Net's up-convolution, a learned ``2 x 2`` stride-2
            :class:`~equilayers.nn.GroupConvTranspose2d` (pixel basis on p4/p4m and their
            subgroups; the steerable basis on an even grid for ``"cN"``/``"dN"`` and the
            harmonic fields of ``"so2"``/``"o2"``; ``nn.ConvTranspose2d`` with ``group=None``)
            halving the fields before the skip connection, with ``down="max"`` or ``"blur"``
            (its fixed output grid would undo polyphase sampling's exactness under every
            shift: ``ValueError``). Exact under the same elements and shifts as
            ``"blur"``/``"max"``.
        max_order: the highest rotation order of a steerable U-Net's fields, 0 to 2 (a ``3 x
            3`` filter lifts an image to orders 0 .. 2 only); default ``None``: 2. Must be
            ``None`` for finite groups and ``group=None``.
        nonlinearity: after every batch norm. ``None`` (default): ``"relu"`` on plain
            channels and regular fields (``"elu"``: ``nn.ELU``), ``"fourier"`` on the harmonic
            fields of ``"so2"`` / ``"o2"`` (:class:`~equilayers.nn.FourierNonlinearity`, an ELU
            on samples of the fiber); ``"gated"`` (:class:`~equilayers.nn.GatedNonlinearity`:
            each field's order-0 slot, through a sigmoid, gates its higher orders) and
            ``"norm"`` (:class:`~equilayers.nn.NormNonlinearity`: a ReLU of each order's norm
            minus a learned threshold) are cheaper; all are exact wherever the U-Net is. A
            pointwise one on harmonic fields (or the reverse) is a ``ValueError``.
        device, dtype: of the parameters.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; ``H`` and ``W`` divisible by
        ``2**depth``, and with ``padding_mode="reflect"`` at least ``2**(depth + 1)`` (2 pixels
        at the deepest level) (else ``ValueError``; :func:`equilayers.check_grid` says which
        size).

    Equivariance:
        On inputs whose height and width are divisible by ``2**depth`` (the sizes
        :func:`equilayers.check_grid` accepts; it reports every other size), exactly
        equivariant, per pixel, to the group's grid elements (rotations by multiples of 90
        degrees and the flips it has), with any ``down`` and any ``padding_mode``: every
        sampling step tiles even sizes symmetrically (``2 x 2`` windows, an even blur, or
        polyphase components, which rot90 and flips permute), and the fiber pool makes the
        logits scalar fields. With ``padding_mode="circular"``, exactly equivariant to integer
        circular shifts: by every shift with ``down="polyphase"`` or ``"learned"`` (the chosen
        component moves with the image and the decoder puts the samples back where they came
        from), by
        multiples of ``2**depth`` only with ``"blur"`` and ``"max"`` (subsampling commutes
        with shifts by its stride; no fixed subsampling is exact for the other shifts).
        Other shifts are approximate with those two, less so with the blur. Measured: the
        relative output error under shifts of 1-7 px, at init on random inputs (depth 2,
        width 4, 32 x 32, 1 or 2 input channels, float64, worst of 3 seeds), is up to 0.07
        with ``"blur"`` and 0.40 with ``"max"`` for p4 and p4m, 2e-4 and 1.5e-3 for
        ``group=None`` (``tests/test_models.py`` bounds the p4m ones); trained on the
        segmentation benchmark (``benchmarks/results/cpu-segmentation.md``), the p4m U-Net
        keeps the label of 99.2% of the pixels under shifts with ``"blur"`` and 98.3% with
        ``"max"``. Measured in ``tests/test_models.py``: float64 errors at rounding level
        (< 1e-12), float32 below 1e-5. Polyphase exactness assumes that a level's largest
        component norm (``"polyphase"``) or learned logit (``"learned"``) is unique: a tie
        goes to the lowest index, which no rule can make commute with shifts, rot90 and flips.
        The norms tie in practice only where a level's map is constant (e.g. every ReLU off
        before it); none of 660 random narrow polyphase U-Nets (plain, p4, p4m, SO(2); width
        1-2, 8 x 8 and 16 x 16, init or random batch-norm statistics; up to a third had such
        a level) erred above 1e-9. The learned logits also tie on a non-constant map, wherever the
        scoring net rates two components alike: components all zero after the ReLU (they
        share one logit), or components on which every hidden unit of the scoring net is off
        (small deep-level activations against its biases: they all score exactly 0); when
        that logit is the largest, the choice breaks equivariance. Measured (float64, 100
        U-Nets each, one random input, 2026-12-07; broke: relative error above 1e-9 under a
        1-pixel circular shift or a quarter turn): plain, depth 3, width 2, 16 x 16, at init
        2 tied and 1 broke (6e-8), with random batch-norm statistics 3 and 1
        (3e-6); depth 2, width 1, 8 x 8, random statistics: 25 and 3 (up to 3e-4); p4, depth
        3, width 1, 16 x 16: 1 and 0 at init, 3 and 1 (1.5e-2) with random statistics; p4m,
        depth 2, width 1: 4 and 0; SO(2), its default Fourier ELU (no ReLU): no tie in 60.
        ``"learned"`` is exact in evaluation mode (but for such ties), in training its sampled
        choice makes it equivariant in distribution only. Groups with off-grid rotations
        (``"c8"``) are exact on their grid subgroup only. ``group=None`` is shift-equivariant
        as above and not rotation-equivariant (the negative control of the case table).
        ``"so2"`` / ``"o2"``: exact on their grid elements (quarter turns; and flips) and the
        shifts above (the case table's ``models/so2``, ``models/o2`` rows; controls: the SO(2)
        U-Net under flips, one with an ELU of the coefficients). Other angles approximate:
        at init (depth 2, width 4, 32 x 32, a smoothed random input compared inside the
        inscribed disk, 20 / 45 / 70 / 130 degrees, seeds 0 / 1 / 2; 2026-12-06) the
        relative error is 0.18 / 0.19 / 0.25 against an interpolation floor of 0.08 / 0.08 /
        0.11 (p4m U-Net: 0.39 / 0.35 / 0.56, floor 0.16 / 0.15 / 0.27), most of it from the
        stride-2 sampling (with an ELU of the coefficients: 0.19 / 0.28 / 0.39); trained on
        the segmentation benchmark, it scores 57.1% mIoU on scenes of digits at any angle
        against the p4m U-Net's 46.0% (``benchmarks/results/cpu-segmentation.md``).

    Example:
        >>> net = UNet(1, 11, group="p4m", depth=2, width=4)
        >>> net(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 11, 32, 32])
    """
