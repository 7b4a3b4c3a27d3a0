"""Zhang's consistency: how often two transformed copies of an input get the same top-1 class."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from .. import _checks as C
from ..groups import FieldType, act, circular_shift, flip, fractional_shift, rot90, rotate
from ..testing._fields import declared_type
from ..testing._harness import kept_buffers
from ._common import check_batch, check_model, choice, no_top1, positive_int, tensor_output

__all__ = ["consistency", "TRANSFORMS"]

Transform = Literal["circular_shift", "crop_shift", "rot90", "flip", "rotate", "fractional_shift"]

TRANSFORMS: tuple[Transform, ...] = ("circular_shift", "crop_shift", "rot90", "flip", "rotate",
                                     "fractional_shift")
"""The transforms :func:`consistency` takes as ``transform``."""
_FINITE = ("circular_shift", "crop_shift", "rot90", "flip")
_WHAT = "consistency"


def _params(transform: str, h: int, w: int, max_shift: float | None, max_angle: float
            ) -> list[tuple[float, ...]]:
    """All parameters of a finite transform family (uniform distribution over this list)."""
    if transform == "rot90":
        return [(k,) for k in range(4)]
    if transform == "flip":
        return [(0,), (1,)]
    if transform == "circular_shift":
        my = h - 1 if max_shift is None else int(max_shift)
        mx = w - 1 if max_shift is None else int(max_shift)
        return [(dy, dx) for dy in range(my + 1) for dx in range(mx + 1)]
    assert max_shift is not None  # crop_shift: consistency set its default
    m = int(max_shift)
    return [(dy, dx) for dy in range(m + 1) for dx in range(m + 1)]


def _draw(transform: str, h: int, w: int, max_shift: float | None, max_angle: float,
          gen: torch.Generator) -> tuple[float, ...]:
    if transform in _FINITE:
        options = _params(transform, h, w, max_shift, max_angle)
        return options[int(torch.randint(len(options), (1,), generator=gen))]
    u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
    if transform == "rotate":
        return (math.radians((2 * u[0] - 1) * max_angle),)
    m = 1.0 if max_shift is None else float(max_shift)  # fractional_shift
    return (u[0] * m, u[1] * m)


def _apply(x: torch.Tensor, transform: str, p: tuple[float, ...], crop: int) -> torch.Tensor:
    if transform == "circular_shift":
        return circular_shift(x, (int(p[0]), int(p[1])))
    if transform == "crop_shift":
        dy, dx = int(p[0]), int(p[1])
        h, w = x.shape[-2:]
        return x[..., dy : dy + h - crop, dx : dx + w - crop]
    if transform == "rot90":
        return rot90(x, int(p[0]))
    if transform == "flip":
        return flip(x) if p[0] else x
    if transform == "rotate":
        return rotate(x, p[0])
    return fractional_shift(x, (p[0], p[1]))


def _fiber_moves(model: object, transform: str) -> Callable[[torch.Tensor, int], torch.Tensor
                                                              ] | None:
    """For a model that declares a fibered input type (regular, harmonic, quotient): the
    action of quarter turn ``k`` (``rot90``) or of the flip (``flip``) on its input, fiber and
    pixels, through the group element that moves the pixels so; None for a model of images."""
    declared = declared_type(model, "in")
    if not (isinstance(declared, FieldType) and declared.has_fiber and declared.spatial_dims
            == 2) or transform in ("circular_shift", "crop_shift", "fractional_shift"):
        return None  # translations move every field type alike
    grp = declared.group
    if transform == "rotate" or grp is None:
        raise ValueError(f"consistency: transform={transform!r} on the model's declared input "
                         f"type {declared!r} would move its pixels and not its fibers; use "
                         "'rot90' or 'flip' with a model whose in_type names its group, or "
                         "measure a model of images (B, C, H, W)")
    probe = torch.arange(12.0).reshape(1, 1, 3, 4)
    ks = range(4) if transform == "rot90" else (1,)
    found = {}
    for k in ks:
        want = rot90(probe, k) if transform == "rot90" else flip(probe)
        g = next((g for g in grp.grid_elements() if torch.equal(act(probe, g), want)), None)
        if g is None:
            raise ValueError(f"consistency: transform={transform!r} is not an element of the "
                             f"model's declared input group {grp.name} (in_type {declared!r}); "
                             "use a transform of that group")
        found[k] = g

    def move(x: torch.Tensor, k: int) -> torch.Tensor:
        if transform == "flip" and not k:
            return x
        return declared.act(found[1 if transform == "flip" else k], x)
    return move


def consistency(
    model: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    x: torch.Tensor,
    transform: Transform = "circular_shift",
    *,
    pairs: int | Literal["all"] = 16,
    max_shift: float | None = None,
    max_angle: float = 180.0,
    generator: torch.Generator | None = None,
) -> float:
    """Zhang's consistency: the probability that two transformed copies get the same top-1 class.

    .. math::
        \\mathrm{Consistency} = \\mathbb{E}_{x,\\,t_1,\\,t_2}\\;
        \\mathbf{1}\\big[\\arg\\max f(T_{t_1} x) = \\arg\\max f(T_{t_2} x)\\big]

    with ``t_1, t_2`` drawn independently and uniformly (Zhang 2019, "Making Convolutional
    Networks Shift-Invariant Again", Sec. 4: random diagonal/crop shifts on ImageNet, circular
    shifts on CIFAR). Here one pair of parameters is drawn per round and applied to the whole
    batch; the estimate averages over the ``pairs`` rounds and the ``B`` samples. A perfectly
    invariant classifier scores 1.0; a constant-prediction one too (check accuracy as well).

    Transforms (``H, W`` the input size):

    * ``"circular_shift"``: integer shifts ``(dy, dx)`` uniform in ``[0, max_shift]``
      (default the whole torus, ``[0, H-1] x [0, W-1]``), :func:`~equilayers.groups.circular_shift`.
    * ``"crop_shift"``: crops of size ``(H - max_shift, W - max_shift)`` at offsets uniform in
      ``[0, max_shift]`` (default ``max_shift = H // 8``); content enters and leaves, so 1.0
      is not reachable in general.
    * ``"rot90"``: ``k`` quarter turns, ``k`` uniform in ``{0, 1, 2, 3}``.
    * ``"flip"``: the horizontal flip or not, each with probability 1/2.
    * ``"rotate"``: an angle uniform in ``[-max_angle, max_angle]`` degrees, bilinear,
      zeros outside (:func:`~equilayers.groups.rotate`).
    * ``"fractional_shift"``: real shifts uniform in ``[0, max_shift)`` (default 1 pixel),
      band-limited (:func:`~equilayers.groups.fractional_shift`).

    A model that declares a fibered input type (``in_type`` regular, harmonic or quotient:
    a model of group maps ``(B, C, F, H, W)``) has ``"rot90"`` and ``"flip"`` act on its
    fibers too, through the element of its group that moves the pixels so (a transform its
    group lacks, and ``"rotate"``, raise ``ValueError``); shifts move every field alike.

    Args:
        model: maps ``x`` to logits ``(B, K)`` (a ``(logits, pose)`` tuple is accepted).
        x: the batch, on the device the model runs on.
        transform: one of the names above.
        pairs: number of random pairs; ``"all"`` (finite transforms only) computes the exact
            expectation over independent uniform draws, ``mean_x sum_c (n_c / T)^2`` with
            ``n_c`` the number of the ``T`` transforms predicted as class ``c``.
        max_shift: see the transforms; ``max_angle``: in degrees, for ``"rotate"``.
        generator: a CPU ``torch.Generator`` for the draws (default: a fresh one seeded 0).

    Returns:
        The consistency in ``[0, 1]``; NaN when a logit is NaN or a row's maximum is an
        infinity two classes share (its top-1 class is undefined: ``argmax`` reads such a row
        as class 0, and a model of NaNs or overflowed logits would score 1.0).

    Example:
        >>> import torch
        >>> model = lambda t: t.mean(dim=(-2, -1))   # shift invariant
        >>> consistency(model, torch.randn(4, 3, 8, 8), "circular_shift")
        1.0
    """
    check_model(model, _WHAT)
    x = check_batch(x, _WHAT, min_dim=4)
    transform = choice(transform, "transform", TRANSFORMS, _WHAT)
    h, w = x.shape[-2:]
    crop = 0
    if transform == "crop_shift":
        max_shift = max(1, h // 8) if max_shift is None else max_shift
        crop = int(max_shift)
    if max_shift is not None:
        C.check_number(max_shift, "max_shift", _WHAT, minimum=0, fix="pixels")
        if transform in _FINITE and int(max_shift) != max_shift:
            raise ValueError(f"consistency: max_shift={max_shift!r} must be an integer for "
                             f"transform={transform!r}")
        if transform == "crop_shift" and max_shift >= min(h, w):
            raise ValueError(f"consistency: max_shift={max_shift} leaves no crop of the "
                             f"{h}x{w} input; use max_shift < {min(h, w)}")
    C.check_number(max_angle, "max_angle", _WHAT, minimum=0, maximum=180, fix="degrees")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"consistency: generator={generator!r} must be a torch.Generator or "
                        "None")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    fibers = _fiber_moves(model, transform)

    def predict(p: tuple[float, ...]) -> torch.Tensor | None:
        """The top-1 classes, or None where a row has none (``no_top1``: argmax would say 0)."""
        moved = _apply(x, transform, p, crop) if fibers is None else fibers(x, int(p[0]))
        try:
            out = model(moved)
        except (RuntimeError, ValueError) as e:
            if moved.shape[-2:] == x.shape[-2:]:
                raise
            if transform == "crop_shift":
                mh, mw = moved.shape[-2:]
                raise ValueError(f"consistency: transform='crop_shift' crops the {h}x{w} "
                                 f"input to {mh}x{mw} (max_shift={crop}), which the model "
                                 f"rejects ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}); pass a model that takes "
                                 "other sizes (e.g. global pooling before its Linear), or use "
                                 "transform='circular_shift' (same size)") from e
            # a quarter turn of a non-square input: the model may take one orientation only
            raise ValueError(f"consistency: transform='rot90' turns the {h}x{w} input into "
                             f"{w}x{h}, which the model rejects ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); pass a square input, or a "
                             "model that takes both orientations (e.g. global pooling before "
                             "its Linear)") from e
        y = tensor_output(out, _WHAT)
        if y.dim() != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(f"consistency: the model must return logits (B, K) with "
                             f"B={x.shape[0]}; got shape {tuple(y.shape)}")
        return None if no_top1(y) else y.argmax(dim=1)

    if pairs != "all":
        positive_int(pairs, "pairs", _WHAT)
    with torch.no_grad(), kept_buffers(model):
        if pairs == "all":
            if transform not in _FINITE:
                raise ValueError(f"consistency: pairs='all' needs a finite transform "
                                 f"({', '.join(_FINITE)}); got {transform!r}: pass an integer")
            found = [predict(p) for p in _params(transform, h, w, max_shift, max_angle)]
            labels = [f for f in found if f is not None]
            if len(labels) < len(found):
                return math.nan
            preds = torch.stack(labels)  # (T, B)
            same = (preds[:, None, :] == preds[None, :, :]).to(torch.float64)  # (T, T, B)
            return float(same.mean())
        n = positive_int(pairs, "pairs", _WHAT)
        agree = 0.0
        for _ in range(n):
            p1 = _draw(transform, h, w, max_shift, max_angle, gen)
            p2 = _draw(transform, h, w, max_shift, max_angle, gen)
            a, b = predict(p1), predict(p2)
            if a is None or b is None:
                return math.nan
            agree += float((a == b).to(torch.float64).mean())
        return agree / n
