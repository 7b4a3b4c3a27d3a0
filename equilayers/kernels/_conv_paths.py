"""The depthwise-convolution fast paths: the blur as one depthwise strided ``F.conv2d``.

What kornia's ``BlurPool2D`` does, for every padding mode: pad (``F.pad`` in the op's mode; a
zero padding the same on both sides is the convolution's own ``padding``), then one depthwise
``conv2d`` at the stride with the outer product of the normalized binomial, one ``expand()``ed
filter for every channel. oneDNN vectorises a depthwise conv over the channels of a
channels_last input, where the separable strided adds of :mod:`._cpu` walk each plane; which
of the two is faster depends on the layout and size, so the op table lists both and the
measured layout table (:mod:`._layout`) picks.

The leading dims are folded into the channels (``(B, C, F, H, W)`` -> ``(B, C F, H, W)``, a view
for contiguous inputs and for the channels_last view of a group conv's output), so a
channels_last group map stays channels_last; a channels_last input whose padding copy comes
back contiguous is made channels_last again before the conv. Autograd differentiates the
plain ops (pad, conv2d, max_pool2d), so the backward is theirs and ``create_graph=True``
works. The same sums as the reference (pad then depthwise conv), up to the order of float
additions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._tables import binomial, pad_amounts

__all__ = ["blur_pool2d", "max_blur_pool2d"]


def _planes(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``(N, G, H, W)``: every dim between the first and ``H`` folded into ``G``."""
    if x.dim() == 3:
        return x[None]
    return x if x.dim() == 4 else x.flatten(1, -3)


def _is_channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


#: ``(k, dtype, device) -> (1, 1, k, k)`` binomial filter: built once per key instead of per
#: call (two small ops, ~3% of a 1 ms blur pool). Its values are a function of the key alone
#: and it never leaves this module (F.conv2d reads it), so it cannot go stale; only a plain
#: tensor built outside tracing is kept (not a fake or inference tensor).
_FILTERS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _filter2d(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (k, dtype, device)
    f2 = _FILTERS.get(key)
    if f2 is not None:
        return f2
    with torch.inference_mode(False):
        f = torch.tensor(binomial(k), dtype=dtype, device=device)
        f2 = torch.outer(f, f)[None, None]
    if (type(f2) is torch.Tensor and not f2.is_inference() and len(_FILTERS) < 64
            and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):
        _FILTERS[key] = f2
    return f2


def _blur4(x: torch.Tensor, k: int, s: int, mode: str) -> torch.Tensor:
    """The blur pooling of a ``(N, G, H, W)`` tensor as pad + one depthwise strided conv."""
    if k == 1:
        return x[..., ::s, ::s]
    g = x.shape[1]
    weight = _filter2d(k, x.dtype, x.device).expand(g, 1, k, k)
    left, right = pad_amounts(k)
    if mode == "zeros" and left == right:
        return F.conv2d(x, weight, stride=s, padding=left, groups=g)
    pad = (left, right, left, right)
    xp = F.pad(x, pad) if mode == "zeros" else F.pad(x, pad, mode=mode)
    if _is_channels_last(x) and not _is_channels_last(xp):
        xp = xp.contiguous(memory_format=torch.channels_last)
    return F.conv2d(xp, weight, stride=s, groups=g)


def _unfold(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return y.reshape(*x.shape[:-2], *y.shape[-2:])


def blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                padding_mode: str = "reflect") -> torch.Tensor:
    """``blur_pool2d`` as padding then one depthwise strided ``conv2d`` (arguments already
    validated by the op's spec).

    Example:
        >>> from equilayers import functional as EF, kernels
        >>> x = torch.randn(2, 3, 9, 8).contiguous(memory_format=torch.channels_last)
        >>> with kernels.use_reference():
        ...     ref = EF.blur_pool2d(x, 3, 2, "circular")
        >>> torch.allclose(blur_pool2d(x, 3, 2, "circular"), ref, atol=1e-6)
        True
    """
    return _unfold(_blur4(_planes(x), kernel_size, stride, padding_mode), x)


def max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2, blur_size: int = 3,
                    padding_mode: str = "reflect", padding: int = 0) -> torch.Tensor:
    """``max_pool2d(x, kernel_size, 1, padding)`` (oneDNN's, which keeps channels_last), then
    :func:`blur_pool2d`'s depthwise conv (arguments already validated)."""
    y = F.max_pool2d(_planes(x), kernel_size, stride=1, padding=padding)
    return _unfold(_blur4(y, blur_size, stride, padding_mode), x)
