"""Kvinge et al.'s G-empirical equivariance deviation (G-EED), and the harness's errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import FieldType, GroupElement, GroupLike, get
from ..groups._actions import check_rep
from ..testing._fields import act_on, resolve_field_type
from ..testing._harness import (
    equivariance_error,
    invariance_error,
    kept_buffers,
    resolve_elements,
)
from ._common import check_batch, check_model, choice, tensor_output

__all__ = ["geed", "invariance_error", "equivariance_error", "DISTANCES"]

DISTANCES: tuple[Literal["cosine", "l2", "kl"], ...] = ("cosine", "l2", "kl")
"""The distances :func:`geed` takes as ``distance``."""
_WHAT = "geed"


def _distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """Per-sample distance between two outputs (float64), shape (B,); clamped at 0, where
    rounding takes the cosine distance or the KL divergence of equal outputs to ~-1e-17."""
    a = a.reshape(a.shape[0], -1).to(torch.float64)
    b = b.reshape(b.shape[0], -1).to(torch.float64)
    if distance == "cosine":
        d = 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-300)
        # two zero outputs are equal: distance 0 (cosine_similarity says 0, distance 1)
        d = d.masked_fill((a == 0).all(dim=1) & (b == 0).all(dim=1), 0.0)
    elif distance == "l2":
        d = torch.linalg.vector_norm(a - b, dim=1)
    else:
        la, lb = F.log_softmax(a, dim=1), F.log_softmax(b, dim=1)
        d = (la.exp() * (la - lb)).sum(dim=1)  # KL(softmax a || softmax b)
    return d.clamp_min(0.0)


def geed(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    distance: Literal["cosine", "l2", "kl"] = "cosine",
    normalized: bool = False,
    *,
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[GroupElement | int] | None = None,
) -> float:
    """G-empirical equivariance deviation (Kvinge et al. 2022, "In What Ways Are Deep Neural
    Networks Invariant and How Should We Measure This?", NeurIPS).

    .. math::
        \\mathrm{GEED}(f) = \\frac{1}{|B|\\,|E|} \\sum_{x \\in B} \\sum_{g \\in E}
        d\\big(f(g \\cdot x),\\; g \\cdot f(x)\\big)

    over the batch ``B`` and the elements ``E`` (default the group's grid elements: rotations
    by multiples of 90 degrees and flips; elements off the grid, such as c8's 45 degrees, raise
    ``ValueError``, see ``elements`` below); ``g . f(x)`` is the identity on invariant
    outputs, so the same formula measures invariance. The normalized variant divides by the
    mean distance between the outputs of *unrelated* inputs, ``d(f(x_b), f(x_{b+1 mod B}))``,
    so that 0 means equivariant and about 1 means "as different as two unrelated images".

    Distances per sample (outputs flattened, computed in float64): ``"cosine"``
    ``1 - <a, b> / (|a| |b|)`` (0 where both are zero, 1 where one is); ``"l2"``
    ``|a - b|_2``; ``"kl"`` ``KL(softmax(a) || softmax(b))`` with ``a = f(g.x)`` (for
    logits).

    Args:
        model: any module or function; modules may declare ``in_type`` / ``out_type``.
        x: the batch (``B >= 2`` when ``normalized``).
        group: a group name or :class:`~equilayers.groups.Group`. A group of 3-D
            rotations (the cube's ``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``;
            ``"so3"``, ``"o3"``) moves volumes: ``x`` must be ``(B, C, D, H, W)`` or
            ``(B, C, F, D, H, W)`` (``ValueError`` for an image batch). A module's
            declared field type must be of ``group`` or of a larger group.
        distance: ``"cosine"``, ``"l2"`` or ``"kl"``.
        normalized: ``True`` divides by the distance between unrelated inputs (a bool:
            ``TypeError`` otherwise).
        in_rep, out_rep: as in :func:`equilayers.testing.equivariance_report`.
        elements: grid elements of ``group`` (or slot indices); ``None``: all of them.
            An element off the pixel grid acts by interpolation, which moves even an exactly
            equivariant map's output, so it is refused: measure those with
            :func:`equilayers.testing.equivariance_report`, which reports the interpolation
            floor beside the error.

    Returns:
        The (normalized) deviation, a float >= 0 (each distance is clamped at 0: rounding
        takes the cosine distance or the KL divergence of equal outputs to about -1e-17).
    """
    check_model(model, _WHAT)
    x = check_batch(x, _WHAT)
    distance = choice(distance, "distance", DISTANCES, _WHAT)
    C.check_flag(normalized, "normalized", _WHAT,
                 fix="True divides by the distance between unrelated inputs")
    grp = get(group)
    # by default the grid elements, also of a finite group with others (c8's 45 degrees): only
    # they act without interpolation, which moves even an exactly equivariant map's output
    # (a pointwise map scored 0.06-0.15 cosine at 45 degrees on 33x33 noise)
    els = (grp.grid_elements() if elements is None
           else resolve_elements(grp, elements, _WHAT))
    off = [g for g in els if not g.is_grid]
    if off:
        raise ValueError(f"geed: elements: {off[0]!r} does not map the pixel grid onto itself; "
                         "its interpolated action moves even an exactly equivariant map's "
                         "output, so the deviation would be the interpolation's; use grid "
                         "elements (multiples of 90 degrees, flips), or measure off-grid "
                         "elements with equilayers.testing.equivariance_report (smoothed "
                         "input, inscribed disk, the interpolation floor reported)")
    if normalized and x.shape[0] < 2:
        raise ValueError(f"geed: normalized=True compares unrelated inputs and needs a batch of "
                         f"B >= 2; got shape {tuple(x.shape)}")
    in_type, declared = resolve_field_type(x, in_rep, model, "in", grp, _WHAT)
    if declared:
        in_type.check(x, "x", _WHAT)
    if out_rep is not None and not isinstance(out_rep, FieldType):
        check_rep(out_rep, "out_rep", _WHAT)
    with torch.no_grad(), kept_buffers(model):
        y = tensor_output(model(x), _WHAT, batch=x.shape[0])
        out_type, declared = resolve_field_type(y, out_rep, model, "out", grp, _WHAT,
                                                like=in_type)
        if declared:
            out_type.check(y, "model(x)", _WHAT)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for g in els:
            y_g = tensor_output(model(act_on(in_type, g, x)), _WHAT, batch=x.shape[0])
            gy = act_on(out_type, g, y)
            if y_g.shape != gy.shape:
                raise ValueError(f"geed: f(g.x) has shape {tuple(y_g.shape)} but g.f(x) has "
                                 f"{tuple(gy.shape)}: is out_rep={out_type.rep!r} right?")
            total = total + _distance(y_g, gy, distance).mean()
        value = total / len(els)
        if normalized:
            base = _distance(y, torch.roll(y, -1, dims=0), distance).mean()  # y[b], y[b+1 mod B]
            if not base > 0:
                raise ValueError("geed: the model gives the same output for every input of the "
                                 "batch, so the normalization (distance between unrelated "
                                 "inputs) is 0; use normalized=False or a varied batch")
            value = value / base
    return float(value) + 0.0  # + 0.0: a -0.0 (all distances clamped to 0) reads as 0.0
