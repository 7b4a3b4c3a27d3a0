"""Re-estimate batch-norm running statistics after training or surgery (``recalibrate_batch_norm``)
or after weight averaging (``update_bn``, torch's SWA step for every norm layer)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from . import _checks as C
from ._modes import kept_modes, modes_kept_on_error

__all__ = ["recalibrate_batch_norm", "update_bn"]


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
    data = x if max_samples is None else x[:max_samples]
    with modes_kept_on_error(model):  # a failing batch leaves the model as it was
        _estimate(model, ((chunk, len(chunk)) for chunk in data.split(batch_size)), what)
    return model.eval()


@torch.no_grad()
def update_bn(loader: Iterable[Any], model: nn.Module,
              device: int | str | torch.device | None = None) -> None:
    """``torch.optim.swa_utils.update_bn`` for every norm layer, ours and escnn's included: set
    the running statistics of ``model``'s norm layers to the plain average of their batch
    statistics over one pass of ``loader``, leaving every module of ``model`` in the mode it
    was in (torch's sets each one to the top level's mode).

    torch's ``update_bn`` (the last step of its SWA recipe, after
    ``torch.optim.swa_utils.AveragedModel``) only sees subclasses of torch's ``_BatchNorm``:
    it leaves a :class:`~equilayers.nn.HarmonicBatchNorm` (not one: torch's
    ``SyncBatchNorm.convert_sync_batchnorm`` would turn it into a plain batch norm) and escnn's
    norm layers with the statistics they had when the averaged model was copied, and when a
    model has no torch batch norm it returns without running a batch, so the averaged model is
    evaluated with stale statistics and no error. This covers the modules that
    :func:`recalibrate_batch_norm` covers, with torch's arguments and results: each batch
    (or the first element of a list or tuple batch, moved to ``device`` when given) counts
    alike, as with ``momentum=None`` (and each call of a layer that one forward calls several
    times: a shared encoder), and ``num_batches_tracked`` ends at the number of calls (torch's
    layers agree with torch's ``update_bn`` to rounding, ``tests/test_recalibrate.py``). A
    loader that yields no batch raises a ``ValueError`` (torch's resets the statistics to 0 and
    1); one whose batch fails (a wrong type, the model's own error) raises with the statistics
    put back as they were. The forwards run without autograd.

    Example:
        >>> from equilayers.nn import HarmonicBatchNorm
        >>> swa = torch.optim.swa_utils.AveragedModel(nn.Sequential(HarmonicBatchNorm(2, 1)))
        >>> update_bn([torch.randn(8, 2, 3, 4, 4) + 5], swa)
        >>> round(swa.module[0].running_mean.mean().item())
        5
    """
    what = "update_bn"
    C.check_module(model, "model", what)
    if isinstance(loader, torch.Tensor) or not isinstance(loader, Iterable):
        raise TypeError(f"{what}: loader must be an iterable of batches (a DataLoader, or a list "
                        f"of tensors), as for torch.optim.swa_utils.update_bn; got "
                        f"{type(loader).__name__}"
                        + (": wrap one batch in a list, [x]" if isinstance(loader, torch.Tensor)
                           else ""))

    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{what}: device={device!r} is not a torch device ({exc}); pass "
                             "'cpu', 'cuda:0' or a torch.device, or None to leave the batches "
                             "where they are") from None

    def batches():
        for i, batch in enumerate(loader):
            if isinstance(batch, (list, tuple)) and batch:
                batch = batch[0]
            if not isinstance(batch, torch.Tensor):
                raise TypeError(f"{what}: batch {i} of loader must be a tensor, or a list or "
                                f"tuple whose first element is the input tensor; got "
                                f"{type(batch).__name__}")
            yield (batch if device is None else batch.to(device)), 1

    with kept_modes(model):  # each module's own mode, as it was
        _estimate(model, batches(), what, reset=True)


def _estimate(model: nn.Module, batches: Iterator[tuple[torch.Tensor, int]], what: str, *,
              reset: bool = False) -> None:
    """Run ``model`` in training mode on each ``(x, weight)`` of ``batches`` and set every norm
    layer's running statistics to their ``weight``-weighted average over its calls (each
    call's own statistics, taken with ``momentum=1``, read by a forward hook as the call
    ends: a layer called twice per forward averages both). Duck-typed: a norm layer is any module
    with a ``momentum`` and running-statistics buffers of its own. ``reset``: call each layer's
    ``reset_running_stats`` before the first batch (its training forwards then count the
    batches in ``num_batches_tracked``, as with ``momentum=None``). When a batch raises (the
    model's error, a bad batch) the layers' buffers are put back as they were; a ``batches``
    that yields nothing raises a ``ValueError``; a model without norm layers runs no batch."""
    norms: list[Any] = []
    stats: list[list[str]] = []
    for m in model.modules():
        names = [n for n, b in m.named_buffers(recurse=False)
                 if b is not None and _is_running_stat(n)]
        if hasattr(m, "momentum") and names:
            norms.append(m)
            stats.append(names)
    if not norms:
        return  # as torch's update_bn: no batch runs
    saved = [m.momentum for m in norms]
    sums = [[_zero_sum(getattr(m, n)) for n in names] for m, names in zip(norms, stats,
                                                                          strict=True)]
    count = 0
    weights = [0.0] * len(norms)  # per layer: the summed weight of its calls
    now = [0.0]  # the weight of the batch being run
    kept = [{n: b.clone() for n, b in m.named_buffers(recurse=False) if b is not None}
            for m in norms]  # put back if a batch fails

    def after_call(j: int):
        # each call's statistics (momentum 1), as it leaves the layer: a layer called twice in
        # one forward (a shared encoder, a weight-tied block) averages both calls, as torch's
        # update_bn does (reading the buffers after the forward kept the last call only)
        def hook(mod, _args, _out):
            for total, n in zip(sums[j], stats[j], strict=True):
                total += getattr(mod, n).to(total.dtype) * now[0]
            weights[j] += now[0]
        return hook

    handles = [m.register_forward_hook(after_call(j)) for j, m in enumerate(norms)]
    model.train()
    try:
        for m in norms:
            m.momentum = 1.0
        for x, weight in batches:
            if reset and not count:
                for m in norms:
                    if callable(getattr(m, "reset_running_stats", None)):
                        m.reset_running_stats()
            now[0] = weight
            model(x)
            count += 1
    except BaseException:
        for m, buffers in zip(norms, kept, strict=True):
            for n, b in buffers.items():
                getattr(m, n).copy_(b)
        raise
    finally:
        for h in handles:
            h.remove()
        for m, mom in zip(norms, saved, strict=True):
            m.momentum = mom
    if not count:
        raise ValueError(f"{what}: loader gave no batch, so there are no statistics to set "
                         "(the model is unchanged): pass a loader with at least one batch")
    for m, names, acc, w in zip(norms, stats, sums, weights, strict=True):
        if w:  # (a layer the forwards never called keeps its buffers)
            for total, n in zip(acc, names, strict=True):
                getattr(m, n).copy_(total / w)


def _is_running_stat(name: str) -> bool:
    """``running_mean``/``running_var`` (torch's and ours) or ``<rep>_running_mean``/``_var``
    (escnn's norm layers, one pair per representation)."""
    return any(name == s or name.endswith("_" + s) for s in ("running_mean", "running_var"))


def _zero_sum(stat: torch.Tensor) -> torch.Tensor:
    """A zero accumulator for ``stat``, float32 at least: a float16 variance times a batch of
    500 samples leaves float16's range."""
    return torch.zeros_like(stat, dtype=torch.promote_types(stat.dtype, torch.float32))
