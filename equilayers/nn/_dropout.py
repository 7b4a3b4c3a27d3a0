"""Field dropout: ``nn.Dropout`` with one draw per field and pixel (escnn's ``FieldDropout``;
see :mod:`equilayers.functional._dropout`)."""

from __future__ import annotations

import torch
from torch.nn.modules.dropout import _DropoutNd

from ..functional._dropout import check_dropout_args, field_dropout
from ._typed import Typed

__all__ = ["FieldDropout"]


class FieldDropout(Typed, _DropoutNd):
    """Dropout of whole fields: in training, each field at each pixel is zeroed with
    probability ``p`` and the kept ones are scaled by ``1 / (1 - p)``; the identity in
    evaluation mode (escnn's ``FieldDropout``).

    ``y[b, c, :, h, w] = m[b, c, h, w] x[b, c, :, h, w] / (1 - p)``, ``m ~ Bernoulli(1 - p)``
    i.i.d. over samples, fields and pixels (voxels): the ``F`` slots of a field (``|G|``
    values of a regular field, the harmonic coefficients of a rotation-order one) share one
    draw. ``nn.Dropout`` draws per value (it turns a harmonic field's direction);
    ``nn.Dropout3d`` on a ``(B, C, F, H, W)`` map draws per channel map (a whole field
    everywhere). On an image ``(B, C, H, W)`` every channel is a trivial field: one draw per
    value, as ``nn.Dropout``. A subclass of torch's ``_DropoutNd``, so the metrics and the
    harness know a train-mode ``FieldDropout`` with ``p > 0`` as noise (they warn).

    Functional twin: :func:`~equilayers.functional.field_dropout`.

    Args:
        p: the probability that a field is zeroed, in ``[0, 1]`` (``p=1`` gives zeros, as
            torch). Default: 0.5.
        inplace: zero and scale ``x`` in place (as ``nn.Dropout``). Default: ``False``.

    Shape:
        ``(B, C, F, H, W)``, ``(B, C, F, D, H, W)`` or ``(B, C, H, W)``; the output has the
        input's shape. A plain volume ``(B, C, D, H, W)`` would be read as a group map with
        ``D`` slots: use ``nn.Dropout`` on it (its channels are trivial fields), or pass
        ``x.unsqueeze(2)``.

    Equivariance:
        In distribution, for every group and field type (regular, quotient, harmonic, on
        images and volumes): ``FieldDropout(g x)`` has the distribution of
        ``g FieldDropout(x)``, as a group element moves the i.i.d. mask's pixels and acts on
        each field's slots linearly (a field scaled by 0 or ``1 / (1 - p)`` keeps its
        direction). With the same draws, the mask commutes with every fiber action exactly
        (tested, with ``nn.Dropout`` as the negative control); one sample is not equivariant
        (the mask does not move). The identity in eval mode: exact.

    Example:
        >>> drop = FieldDropout(0.5)
        >>> x = torch.randn(2, 3, 5, 7, 7)  # 3 harmonic fields of orders 0..2
        >>> y = drop(x)
        >>> kept = y != 0  # one draw per field and pixel, shared by its 5 slots
        >>> bool((kept == kept[:, :, :1]).all()), bool((y[kept] == 2 * x[kept]).all())
        (True, True)
        >>> drop.eval()(x) is x
        True
    """

    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        p, inplace = check_dropout_args(p, inplace, type(self).__name__)
        super().__init__(p, inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return field_dropout(x, self.p, self.training, self.inplace)
