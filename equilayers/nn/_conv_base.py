"""The ``nn.Conv2d`` / ``nn.ConvTranspose2d``-shaped part of the 2-D group convs (torch's
``_ConvNd``): their argument checks, the ``transposed`` / ``output_padding`` pair (a transposed
conv is a subclass that sets ``transposed = True``), the exactness warning and the conv part
of ``extra_repr``."""

from __future__ import annotations

import torch

from .. import _checks as C
from ..functional import _gconv as G
from ..functional import _gconv_transpose as GT
from ..groups import Group
from ._derived import FixedArgs, _conv_options_repr
from ._exactness import _WarnsInexact
from ._padding import ResolvedPadding

__all__ = ["_ExactConvMixin"]


class _ExactConvMixin(FixedArgs, ResolvedPadding, _WarnsInexact):
    """What every group conv module shares: the once-per-module exactness warning and the
    ``nn.Conv2d``-like part of ``extra_repr`` (needs ``group``, ``kernel_size``, ``stride``,
    ``_pad``, ``padding``, ``dilation``, ``groups``, ``bias``, ``padding_mode``, ``_warned``
    and ``_exact_sizes``).

    As torch's ``_ConvNd``: ``transposed`` (a class attribute, ``True`` in the transposed
    subclasses) and ``output_padding`` (``(0, 0)`` for a forward conv). The arguments a
    subclass builds derived state from are fixed at construction (its ``_fixed_args``:
    :class:`~._derived.FixedArgs`); ``stride``, ``padding``, ``dilation``, ``padding_mode``,
    ``output_padding``, ``weight`` and ``bias`` stay assignable, as on ``nn.Conv2d``."""

    group: Group
    transposed: bool = False
    output_padding: tuple[int, int] = (0, 0)

    def _set_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                       groups, padding_mode, output_padding=0) -> None:
        """Validate ``nn.Conv2d``'s arguments (``nn.ConvTranspose2d``'s when ``transposed``;
        square kernels: rotations map them onto themselves) and set them, with the resolved
        padding and the exactness-warning state."""
        name = type(self).__name__
        in_channels, out_channels, groups = C.check_conv_channels(
            in_channels, out_channels, groups, name, C.FIELD_CONV_FIXES)
        k = (C.check_cubic(kernel_size, "kernel_size", name, dims=2),) * 2
        C.check_padding_mode(padding_mode, "padding_mode", name, C.PADDING_MODES)
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode must be one of ('zeros',) (as "
                             f"nn.ConvTranspose2d: the "
                             f"padding of a transposed conv crops its output); got "
                             f"{padding_mode!r}")
        stride_p = C.check_pair(stride, "stride", name)
        dil_p = C.check_pair(dilation, "dilation", name)
        if min(stride_p) < 1 or min(dil_p) < 1:
            raise ValueError(f"{name}: stride and dilation must be >= 1; got stride={stride!r}, "
                             f"dilation={dilation!r}")
        if self.transposed:
            op = GT.check_output_padding(output_padding, stride, dilation, name)
            self.output_padding = (op[0], op[1])
        elif output_padding != 0:
            raise ValueError(f"{name}: output_padding={output_padding!r} applies to transposed "
                             "convs only")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.dilation = stride_p, dil_p
        self.padding = padding  # checked by the setter; _pad follows it (ResolvedPadding)
        self.groups, self.padding_mode = groups, padding_mode

    def _resolve_padding(self, padding) -> tuple[int, ...]:
        name = type(self).__name__
        if self.transposed:  # first: 'same' is refused at every stride, not only stride > 1
            GT.transposed_padding(padding, name)  # an int or a pair, no string
        C.check_same_padding(padding, self.stride, name, "nn.Conv2d")
        return G.resolve_padding(padding, self.kernel_size[0], self.dilation, name)

    def _check_exact(self, x: torch.Tensor, output_padding=None) -> None:
        """Warn once at the first input size (and, transposed, output padding) that breaks
        exactness (:func:`~equilayers.functional.exactness_problems`)."""
        if self.transposed and output_padding is None:
            output_padding = self.output_padding
        self._warn_if_inexact(x, self.group, self.kernel_size[0], self.stride, self._pad,
                              self.dilation, output_padding=output_padding,
                              padding_mode=getattr(self, "padding_mode", None))

    def _conv_repr(self, extra: str = "") -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[0]}, "
             f"group={self.group.name!r}{extra}")
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != 0:
            s += f", padding={self.padding!r}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        s += _conv_options_repr(self, 2)
        return s
