"""Field dropout (escnn's ``FieldDropout``): in training, each field of a feature map at each
pixel (voxel) is kept or zeroed as a whole, the kept ones scaled by ``1 / (1 - p)``.

A field is one channel ``c`` of a group map ``(B, C, F, H, W)`` (volumes ``(B, C, F, D, H, W)``)
with its ``F`` fiber slots (``|G|`` values of a regular field, the harmonic coefficients of a
rotation-order field): the mask has shape ``(B, C, 1, H, W)``, one Bernoulli draw per sample,
field and pixel, shared by the slots. A group element moves the mask's pixels (an i.i.d. mask
moved is an i.i.d. mask) and acts on each field's slots linearly (a field scaled by 0 or by
``1 / (1 - p)`` stays in its direction): so ``field_dropout(g x)`` has the distribution of
``g field_dropout(x)``, on every field type. ``torch.nn.Dropout`` (one draw per value) changes
the direction of a harmonic field (zeroing ``c_1`` and keeping ``s_1``); ``nn.Dropout3d`` on
the 5-D map drops whole channel maps.

On an image ``(B, C, H, W)`` each channel is a trivial field (one slot): one draw per value,
as ``nn.Dropout``.
"""

from __future__ import annotations

import torch

from .. import _checks as C

__all__ = ["field_dropout", "check_dropout_args"]

_LAYOUT = ("(B, C, H, W) image, (B, C, F, H, W) group map or (B, C, F, D, H, W) volume "
           "group map")
_FIX = {3: "add the batch dim (x.unsqueeze(0)) or, for a 1-D signal, nn.Dropout",
        7: "field dropout takes images and volumes; for other layouts use nn.Dropout (one draw "
           "per value) or reshape to (B, C, F, *spatial)"}


def check_dropout_args(p, inplace, what: str) -> tuple[float, bool]:
    """``(p, inplace)``: ``p`` a real number in [0, 1] (the probability that a field is
    zeroed), ``inplace`` a bool."""
    p = C.check_number(p, "p", what, minimum=0.0, maximum=1.0,
                       fix="the probability that a field is zeroed, as nn.Dropout's p")
    return p, C.check_flag(inplace, "inplace", what)


def _check_x(x, what: str) -> None:
    C.check_tensor(x, "x", what)
    if x.dim() not in (4, 5, 6):
        fix = _FIX[3] if x.dim() <= 3 else _FIX[7]
        raise ValueError(f"{what}: x must be 4-D, 5-D or 6-D, a {_LAYOUT}; got a {x.dim()}-D "
                         f"tensor of shape {tuple(x.shape)}; {fix}")


def _check_generator(generator: object, x: torch.Tensor, what: str) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{what}: generator={generator!r} must be a torch.Generator or None "
                        "(None: the global RNG)")
    if generator.device.type != x.device.type:
        raise ValueError(f"{what}: generator is on {generator.device}, but x is on {x.device}; "
                         f"pass torch.Generator(device={x.device.type!r})")


def field_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
                  *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each field (dim 1) of ``x`` at each pixel with probability ``p``, as a whole, and
    scale the kept ones by ``1 / (1 - p)``; ``x`` itself when not ``training`` or ``p == 0``
    (as ``F.dropout``).

    See :class:`equilayers.nn.FieldDropout`. ``generator``: the ``torch.Generator`` of the
    mask (default: the global RNG).

    Example:
        >>> x = torch.randn(2, 3, 8, 5, 5)  # 3 regular p4m fields
        >>> y = field_dropout(x, 0.5, generator=torch.Generator().manual_seed(0))
        >>> kept = y != 0  # the same for the 8 slots of a field at a pixel
        >>> bool((kept == kept[:, :, :1]).all()), bool((y[kept] == 2 * x[kept]).all())
        (True, True)
    """
    what = "field_dropout"
    p, inplace = check_dropout_args(p, inplace, what)
    training = C.check_flag(training, "training", what)
    _check_x(x, what)
    _check_generator(generator, x, what)
    if not training or p == 0.0:
        return x
    shape = x.shape if x.dim() == 4 else (*x.shape[:2], 1, *x.shape[3:])
    if p == 1.0:  # as torch: zeros (x times 0), the gradient 0
        mask = x.new_zeros(())
    else:
        mask = x.new_empty(shape).bernoulli_(1.0 - p, generator=generator).div_(1.0 - p)
    return x.mul_(mask) if inplace else x * mask
