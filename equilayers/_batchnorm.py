"""Re-estimate batch-norm running statistics after training or surgery."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _checks as C

__all__ = ["recalibrate_batch_norm"]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, x: torch.Tensor, *, batch_size: int = 500,
                           max_samples: int | None = 2000) -> nn.Module:
    """Set the running statistics of every norm layer of ``model`` to their average over the
    batches of ``x`` (up to ``max_samples`` samples), then put ``model`` in eval mode.

    Short training runs (and :func:`equilayers.antialias`, whose blurs change activation
    statistics) leave running statistics that lag the weights, so eval-mode accuracy can drop to
    chance. This re-estimates them without touching any weight. It covers every module with a
    ``momentum`` attribute and running-statistics buffers (named ``running_mean``/``running_var``
    or ending in ``_running_mean``/``_running_var``): ``nn.BatchNorm1d/2d/3d``,
    :class:`~equilayers.nn.GroupBatchNorm2d`, :class:`~equilayers.nn.HarmonicBatchNorm`, and
    escnn's ``GNormBatchNorm``/``NormBatchNorm``/``IIDBatchNorm*`` (one buffer pair per
    representation; its ``InnerBatchNorm`` holds ``nn.BatchNorm*`` modules). Each batch's
    statistics are taken with ``momentum=1`` and averaged, each weighted by its number of
    samples (so a last, smaller batch counts for what it holds; the variance leaves out the
    spread of the batch means, which is small for shuffled data).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        >>> _ = recalibrate_batch_norm(net, torch.randn(64, 1, 8, 8), batch_size=32)
        >>> net.training
        False
    """
    what = "recalibrate_batch_norm"
    C.check_module(model, "model", what)
    if not isinstance(x, torch.Tensor):
        fix = (": join a list of batches with torch.cat(x)" if isinstance(x, (list, tuple))
               else "")
        raise TypeError(f"{what}: x must be one tensor of inputs (N, ...); got "
                        f"{type(x).__name__}{fix}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"{what}: x must be a non-empty batch of inputs (N, ...); got shape "
                         f"{tuple(x.shape)}")
    C.check_tensor(x, "x", what, floating=False)  # any dtype the model takes
    C.check_int(batch_size, "batch_size", what, minimum=1)
    C.check_optional_int(max_samples, "max_samples", what, minimum=1,
                         fix="None uses every sample")
    # duck-typed: any module with a momentum and running-statistics buffers of its own
    norms: list[Any] = []
    stats: list[list[str]] = []
    for m in model.modules():
        names = [n for n, b in m.named_buffers(recurse=False)
                 if b is not None and _is_running_stat(n)]
        if hasattr(m, "momentum") and names:
            norms.append(m)
            stats.append(names)
    saved = [m.momentum for m in norms]
    sums = [[_zero_sum(getattr(m, n)) for n in names] for m, names in zip(norms, stats,
                                                                          strict=True)]
    data = x if max_samples is None else x[:max_samples]
    chunks = data.split(batch_size)
    model.train()
    try:
        for m in norms:
            m.momentum = 1.0
        for chunk in chunks:
            model(chunk)
            for m, names, acc in zip(norms, stats, sums, strict=True):
                for total, n in zip(acc, names, strict=True):
                    total += getattr(m, n).to(total.dtype) * len(chunk)
    finally:
        for m, mom in zip(norms, saved, strict=True):
            m.momentum = mom
    for m, names, acc in zip(norms, stats, sums, strict=True):
        for total, n in zip(acc, names, strict=True):
            getattr(m, n).copy_(total / len(data))
    return model.eval()


def _is_running_stat(name: str) -> bool:
    """``running_mean``/``running_var`` (torch's and ours) or ``<rep>_running_mean``/``_var``
    (escnn's norm layers, one pair per representation)."""
    return any(name == s or name.endswith("_" + s) for s in ("running_mean", "running_var"))


def _zero_sum(stat: torch.Tensor) -> torch.Tensor:
    """A zero accumulator for ``stat``, float32 at least: a float16 variance times a batch of
    500 samples leaves float16's range."""
    return torch.zeros_like(stat, dtype=torch.promote_types(stat.dtype, torch.float32))
