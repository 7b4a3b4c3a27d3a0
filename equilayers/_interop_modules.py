"""``from_escnn``'s helpers for whole modules of a migrating model: a converted layer put on
escnn's device and dtype with its frozen parameters frozen (:func:`like_source`), the filter
escnn's forward really uses (:func:`expanded`), the pools and upsamplings that need no group
layer (:func:`adaptive_pool`, :func:`trivial_pool`, :func:`upsampling`), and the refusal that
says what to do instead (:func:`unsupported`)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from .nn import (
    GroupBatchNorm2d,
    GroupBatchNorm3d,
    GroupUpsample2d,
    GroupUpsample3d,
    HarmonicBatchNorm,
)

__all__ = ["like_source", "expanded", "relative_close", "unsupported", "adaptive_pool",
           "trivial_pool", "check_iid_tracked", "iid_regular_batch_norm", "iid_field_batch_norm",
           "upsampling"]


def like_source(ours: nn.Module, m: Any, where: str = "module") -> nn.Module:
    """``ours`` (converted from escnn's module ``m``, at path ``where``) on ``m``'s device and
    floating dtype (those of its first floating parameter or buffer; a module with none,
    e.g. ``ReLU``, leaves ``ours`` as built), with the parameters ``m`` has frozen frozen
    too: each of ours takes the ``requires_grad`` of the escnn parameters that become it,
    by name (escnn's conv ``weights`` is our ``weight``; ``bias``, ``log_bias``; a batch
    norm's per-irrep ``irrep_0_weight``, ... are parts of our ``weight``), ignoring empty
    ones (escnn's per-irrep biases of orders > 0); every one where all of ``m``'s are
    frozen. Parts that disagree are refused: ours cannot be part frozen. Never unfreezes
    (an :class:`~equilayers.nn.ExpandedGroupConv2d` is frozen by design)."""
    ref = next((t for t in itertools.chain(m.parameters(), m.buffers())
                if t.is_floating_point()), None)
    if ref is not None:
        ours.to(device=ref.device, dtype=ref.dtype)
    names = {n.rsplit(".", 1)[-1] for n, _ in ours.named_parameters()}
    parts: dict[str, dict[str, bool]] = {}  # our name -> {escnn name: requires_grad}
    for name, p in m.named_parameters():
        key = name.rsplit(".", 1)[-1]
        key = "weight" if key == "weights" else key
        if key not in names:  # escnn's per-irrep names: the part of ours they end with
            key = next((t for t in sorted(names) if key.endswith("_" + t)), key)
        if p.numel():
            parts.setdefault(key, {})[name] = p.requires_grad
    all_frozen = any(True for _ in m.parameters()) and not any(
        p.requires_grad for p in m.parameters())
    for key, grads in parts.items():
        if key in names and len(set(grads.values())) > 1:
            off, on = (", ".join(sorted(n for n, g in grads.items() if g is t))
                       for t in (False, True))
            raise ValueError(
                f"from_escnn: {where}: {type(m).__name__}'s parameters {off} (frozen: "
                f"requires_grad=False) and {on} (trainable) all become our "
                f"{type(ours).__name__}'s {key!r}, which cannot be part frozen: freeze "
                "all of them or none before converting (and freeze parts of ours by "
                "zeroing their gradients, e.g. with a hook, if you need to)")
    for name, p in ours.named_parameters():
        grads = parts.get(name.rsplit(".", 1)[-1], {})
        if all_frozen or (grads and not any(grads.values())):
            p.requires_grad_(False)
    return ours


# what to do instead, for the escnn modules a migrating model has that do not convert
_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("MultipleModule", "BranchingModule", "MergeModule"), "it splits or joins fields of "
     "several types; convert each branch with from_escnn and join the outputs in your own "
     "forward"),
    (("DisentangleModule", "ReshuffleModule"), "it permutes escnn's channels or changes their "
     "basis, while our tensors hold one kind of field in a fixed layout; port the model with "
     "one field type per tensor"),
    (("GatedNonLinearity1", "GatedNonLinearity2", "GatedNonLinearityUniform",
      "InducedGatedNonLinearity1"), "escnn's gates are separate scalar fields, our "
     "GatedNonlinearity reads them from harmonic fields: port it by hand, or use "
     "NormNonLinearity / FourierELU, which convert"),
    (("NormBatchNorm", "InducedNormBatchNorm"), "use GNormBatchNorm (or IIDBatchNorm2d) in "
     "escnn's model: they convert to HarmonicBatchNorm"),
)


def unsupported(m: Any, supported: str) -> str:
    """The message for escnn's module ``m`` that has no equivalent: its name, what to do
    instead where known, and the list of what converts."""
    name = type(m).__name__
    hint = next((h for names, h in _HINTS if name in names),
                "port it by hand (docs/escnn.md, 'Porting by hand') and convert the escnn "
                "modules around it with from_escnn")
    return (f"from_escnn: escnn.nn.{name} has no equilayers equivalent: {hint}. Supported: "
            f"{supported}")


def adaptive_pool(m: Any, enn: Any) -> nn.Module:
    """escnn's ``PointwiseAdaptiveAvgPool2D`` / ``PointwiseAdaptiveMaxPool2D`` (every channel
    alone) -> ``nn.AdaptiveAvgPool3d`` / ``nn.AdaptiveMaxPool3d`` with output size ``(None, h,
    w)``: on our ``(B, C, F, H, W)`` fields it keeps the fiber axis and pools the plane, on an
    image ``(B, C, H, W)`` (trivial fields, taken as an unbatched volume) it pools the plane
    of every channel: escnn's outputs in our layout either way."""
    size = tuple(m.output_size)
    if len(size) != 2:
        raise ValueError(f"from_escnn: {type(m).__name__} with output_size={m.output_size}: "
                         "only the 2-D adaptive pools convert")
    if isinstance(m, enn.PointwiseAdaptiveAvgPool2D):
        return nn.AdaptiveAvgPool3d((None, *size))
    return nn.AdaptiveMaxPool3d((None, *size))


def upsampling(m: Any, enn: Any) -> nn.Module:
    """escnn's ``R2Upsampling`` / ``R3Upsampling`` (``F.interpolate`` on every channel) ->
    :class:`~equilayers.nn.GroupUpsample2d` / ``3d`` with its size or factor, mode and
    ``align_corners``: every channel and slot interpolated alone, as escnn does, so any field
    type and slot order converts."""
    cls = GroupUpsample3d if isinstance(m, enn.R3Upsampling) else GroupUpsample2d
    size, factor = m._size, m._scale_factor
    if factor is not None and not (float(factor).is_integer() and factor >= 1):
        raise ValueError(f"from_escnn: {type(m).__name__} with scale_factor={factor}: only "
                         f"integer factors convert ({cls.__name__} keeps rot90 and flips exact "
                         "with them); pass the output size instead")
    return cls(size=size, scale_factor=None if factor is None else int(factor), mode=m._mode,
               align_corners=m._align_corners if m._mode != "nearest" else None)


def trivial_pool(m: Any, enn: Any) -> nn.Module | None:
    """escnn's ``PointwiseMaxPool2D`` / ``PointwiseAvgPool2D`` on trivial fields only (images,
    e.g. after ``GroupPooling``) -> ``nn.MaxPool2d`` / ``nn.AvgPool2d`` with its arguments
    (``F.max_pool2d`` / ``F.avg_pool2d``, as escnn calls them); ``None`` for other fields."""
    reps = m.in_type.representations
    if not all(r.is_trivial() and r.name != "regular" for r in reps):
        return None  # C_1's regular representation is trivial: a regular field
    if isinstance(m, enn.PointwiseMaxPool2D):
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation,
                            ceil_mode=m.ceil_mode)
    return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)


def expanded(m: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """escnn's conv ``m``'s expanded filter and bias (``expand_parameters()``, no gradient;
    ``Linear``: its matrix and bias; ``TensorProductModule``: its matrix and ``None``),
    checked against what its forward uses: in eval mode escnn convolves with the ``filter``
    (``matrix``) and ``expanded_bias`` it cached at ``.eval()``, so where the weights changed
    since (a ``state_dict`` loaded with ``strict=False``, weights edited in eval mode)
    escnn's output follows stale filters, and converting the weights would silently compute
    another function: that raises, naming the fix."""
    with torch.no_grad():
        out = m.expand_parameters()
        filt, bias = out if isinstance(out, tuple) else (out, None)
        if m.training:
            return filt, bias
        cached_filter = getattr(m, "filter", None)
        if cached_filter is None:
            cached_filter = getattr(m, "matrix", None)
        pairs = [(cached_filter, filt), (getattr(m, "expanded_bias", None), bias)]
        for cached, fresh in pairs:
            if cached is None or fresh is None:
                continue
            if not relative_close(cached, fresh, 1e-6):
                raise ValueError(
                    f"from_escnn: escnn's {type(m).__name__} is in eval mode and the filter it "
                    "cached at .eval() is not its weights' expansion (the weights changed "
                    "after .eval(), e.g. a state_dict loaded with strict=False), so escnn's "
                    "eval outputs use stale filters; call .train() then .eval() on escnn's "
                    "model to rebuild them from the weights, and convert again")
    return filt, bias


def relative_close(got: torch.Tensor, want: torch.Tensor, atol: float) -> bool:
    """Whether ``got`` equals ``want`` to ``atol`` relative to ``want``'s largest entry, in
    float64 (in float16 the scale's floor underflowed to 0: a zero bias compared as NaN, and
    a half-precision escnn model was refused as stale)."""
    if got.shape != want.shape:
        return False
    a, b = got.detach().double(), want.detach().double().to(got.device)
    scale = b.abs().max().clamp_min(1e-30) if b.numel() else 1.0
    return torch.allclose(a / scale, b / scale, rtol=0, atol=atol)


def check_iid_tracked(m: Any) -> None:
    """escnn's ``IIDBatchNorm`` converts where its running statistics give the eval-mode map
    (ours then computes the same one); without them escnn normalizes by its own batch
    statistics in every mode, which ours do not reproduce (below)."""
    if not m.track_running_stats:
        raise ValueError(f"from_escnn: {type(m).__name__} with track_running_stats=False "
                         "normalizes by escnn's batch statistics in every mode (per-slot "
                         "variances, unbiased, detached), which no equilayers batch norm "
                         "computes; convert a model built with track_running_stats=True")


def iid_regular_batch_norm(m: Any, c: int) -> nn.Module:
    """escnn's ``IIDBatchNorm2d`` / ``3d`` on ``c`` regular fields -> :class:`GroupBatchNorm2d`
    / ``3d`` with its state. escnn subtracts each field's trivial part (the mean over its
    slots, a constant vector: ``running_mean`` ``(C, |G|)`` holds it in every slot), divides
    by one variance per field and adds its bias along the trivial part (the same constant in
    every slot): in eval mode the map of ``InnerBatchNorm``, ours. In training mode escnn's
    variance is the mean of its slots' variances (each around its own slot's mean, unbiased,
    detached), ours that of the field around its mean (biased, as ``nn.BatchNorm``): they
    differ by the spread of the slots' means and Bessel's factor."""
    name = "regular"
    state: dict[str, Any] = {
        what: getattr(m, f"{m._escape_name(name)}_{what}", None)
        for what in ("running_mean", "running_var", "weight", "bias", "change_of_basis")}
    mean, var = state["running_mean"].detach(), state["running_var"].detach().reshape(c)
    bias = (None if state["bias"] is None else
            (state["bias"].detach() @ state["change_of_basis"].detach().T))  # (c, |G|)
    for what, t in (("running_mean", mean), ("bias", bias)):
        if t is not None and not torch.allclose(t, t[:, :1].expand_as(t), rtol=0,
                                                atol=1e-6 * float(t.abs().max()) + 1e-12):
            raise ValueError(f"from_escnn: {type(m).__name__}'s {what} is not constant over a "
                             "regular field's slots; cannot convert")
    cls = GroupBatchNorm3d if m.in_type.gspace.dimensionality == 3 else GroupBatchNorm2d
    ours = cls(c, m.eps, m.momentum, m.affine, True, device=mean.device, dtype=mean.dtype)
    with torch.no_grad():
        assert ours.running_mean is not None and ours.running_var is not None  # tracked
        ours.running_mean.copy_(mean[:, 0])
        ours.running_var.copy_(var)
        assert ours.num_batches_tracked is not None  # tracked
        ours.num_batches_tracked.copy_(m.num_batches_tracked)
        if m.affine:
            assert ours.weight is not None and ours.bias is not None and bias is not None
            ours.weight.copy_(state["weight"].detach().reshape(c))
            ours.bias.copy_(bias[:, 0])
    return ours


def iid_field_batch_norm(m: Any, c: int, order: int, group: str,
                         spatial_dims: int | None = None) -> nn.Module:
    """escnn's ``IIDBatchNorm`` on ``c`` harmonic fields of orders ``0 .. order`` given as one
    representation each (SO(2)/O(2), C_N/D_N; SO(3)/O(3) on the sphere) ->
    :class:`HarmonicBatchNorm` with ``statistics="field"`` and escnn's state: one running
    variance and weight per field, the running mean and bias of its order-0 slot (the same
    map in eval mode)."""
    names = {r.name for r in m.in_type.representations}
    if len(names) != 1:
        raise ValueError(f"from_escnn: {type(m).__name__} on {m.in_type}: the fields must all "
                         "be one representation of irreps 0..L")
    (name,) = names
    ours = HarmonicBatchNorm(c, order, eps=m.eps, momentum=m.momentum, affine=m.affine,
                             track_running_stats=m.track_running_stats, group=group,
                             statistics="field", spatial_dims=spatial_dims)

    def state(what: str) -> torch.Tensor:
        return getattr(m, f"{m._escape_name(name)}_{what}").detach()

    with torch.no_grad():
        if m.track_running_stats:
            assert ours.running_mean is not None and ours.running_var is not None  # tracked
            ours.running_mean.copy_(state("running_mean")[:, 0])
            ours.running_var.copy_(state("running_var"))
            assert ours.num_batches_tracked is not None  # tracked
            ours.num_batches_tracked.copy_(m.num_batches_tracked)
        if m.affine:
            assert ours.weight is not None and ours.bias is not None  # affine
            ours.weight.copy_(state("weight"))
            ours.bias.copy_(state("bias")[:, 0])
    return ours
