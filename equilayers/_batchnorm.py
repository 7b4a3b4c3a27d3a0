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
    ``momentum`` attribute and ``running_mean``/``running_var`` buffers: ``nn.BatchNorm1d/2d/3d``,
    :class:`~equilayers.nn.GroupBatchNorm2d`, :class:`~equilayers.nn.HarmonicBatchNorm`. Each
    batch's statistics are taken with ``momentum=1`` and averaged with equal weights (so the
    variance leaves out the spread of the batch means, which is small for shuffled data).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        >>> _ = recalibrate_batch_norm(net, torch.randn(64, 1, 8, 8), batch_size=32)
        >>> net.training
        False
    """
    what = "recalibrate_batch_norm"
    C.check_module(model, "model", what)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of inputs; got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    C.check_tensor(x, "x", what, floating=False)  # any dtype the model takes
    C.check_int(batch_size, "batch_size", what, minimum=1)
    C.check_optional_int(max_samples, "max_samples", what, minimum=1,
                         fix="None uses every sample")
    # duck-typed: any module with a momentum and running_mean/running_var tensors
    norms: list[Any] = [m for m in model.modules()
             if hasattr(m, "momentum") and isinstance(getattr(m, "running_mean", None),
                                                      torch.Tensor)
             and isinstance(getattr(m, "running_var", None), torch.Tensor)]
    saved = [m.momentum for m in norms]
    sums = [[torch.zeros_like(m.running_mean), torch.zeros_like(m.running_var)] for m in norms]
    data = x if max_samples is None else x[:max_samples]
    chunks = data.split(batch_size)
    model.train()
    try:
        for m in norms:
            m.momentum = 1.0
        for chunk in chunks:
            model(chunk)
            for m, acc in zip(norms, sums, strict=True):
                acc[0] += m.running_mean
                acc[1] += m.running_var
    finally:
        for m, mom in zip(norms, saved, strict=True):
            m.momentum = mom
    for m, (mean, var) in zip(norms, sums, strict=True):
        m.running_mean.copy_(mean / len(chunks))
        m.running_var.copy_(var / len(chunks))
    return model.eval()
