"""Petrini et al.'s relative stability to smooth deformations (diffeomorphisms) vs noise."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..testing._harness import kept_buffers
from ._common import check_batch, check_model, positive_int, tensor_output

__all__ = ["deformation_stability", "DeformationStability", "random_deformation"]

_WHAT = "deformation_stability"


@dataclass(frozen=True)
class DeformationStability:
    """Result of :func:`deformation_stability`.

    Attributes:
        relative: ``R_f = D_f / G_f``; below 1 the model is more stable to deformations than
            to noise of the same norm.
        deformation: ``D_f``, mean ``||f(tau x) - f(x)||^2``.
        noise: ``G_f``, mean ``||f(x + eta) - f(x)||^2`` with ``||eta|| = ||tau x - x||``.
        displacement: mean RMS displacement of the deformations, in pixels.
        grad_tau: mean RMS ``||grad tau||`` (Frobenius norm of the displacement's Jacobian per
            pixel, dimensionless): the size of the deformation's local distortion.
    """

    relative: float
    deformation: float
    noise: float
    displacement: float
    grad_tau: float


def random_deformation(
    h: int, w: int, temperature: float, cutoff: int, *, generator: torch.Generator,
    dtype: torch.dtype = torch.float64, device: torch.device | None = None,
) -> torch.Tensor:
    """A random smooth displacement field ``(2, H, W)`` in pixels (rows: ``(u_x, u_y)``).

    Petrini et al. 2021's band-limited diffeomorphism: on ``[0, 1]^2``,
    ``u(s, t) = sum_{1 <= i^2 + j^2 <= c^2} C_ij sin(i pi s) sin(j pi t)`` with
    ``C_ij ~ N(0, T / (i^2 + j^2))`` independently for each component; the displacement
    vanishes on the border and is scaled by the image side to pixels.
    """
    what = "random_deformation"
    C.check_int(h, "h", what, minimum=1)
    C.check_int(w, "w", what, minimum=1)
    C.check_number(temperature, "temperature", what, positive=True)
    C.check_int(cutoff, "cutoff", what, minimum=1, fix="the highest mode of the field")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{what}: generator={generator!r} must be a torch.Generator (or None: "
                        "torch's global one)")
    C.check_float_dtype(dtype, "dtype", what, optional=False)
    s = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    t = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    i = torch.arange(1, cutoff + 1, dtype=torch.float64)
    keep = (i[:, None] ** 2 + i[None, :] ** 2) <= cutoff**2
    var = temperature / (i[:, None] ** 2 + i[None, :] ** 2)
    coef = torch.randn(2, cutoff, cutoff, generator=generator, dtype=torch.float64)
    coef = coef * var.sqrt() * keep
    sin_s = torch.sin(math.pi * i[:, None] * s[None, :])  # (c, W)
    sin_t = torch.sin(math.pi * i[:, None] * t[None, :])  # (c, H)
    u = torch.einsum("kij,jy,ix->kyx", coef, sin_t, sin_s)  # (2, H, W)
    scale = torch.tensor([w, h], dtype=torch.float64).view(2, 1, 1)
    return (u * scale).to(dtype=dtype, device=device)


def _warp(x: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """``(tau x)(p) = x(p - u(p))`` by bilinear sampling (border values outside)."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, dtype=x.dtype, device=x.device)
    xs = torch.arange(w, dtype=x.dtype, device=x.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    sx = gx - disp[0]
    sy = gy - disp[1]
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1)  # align_corners=False
    flat = x.reshape(-1, 1, h, w)
    grid = grid.unsqueeze(0).expand(flat.shape[0], h, w, 2)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(x.shape)


def deformation_stability(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    temperature: float = 0.01,
    cutoff: int = 3,
    samples: int = 4,
    generator: torch.Generator | None = None,
) -> DeformationStability:
    """Relative stability to smooth deformations (Petrini, Favero, Geiger, Wyart 2021,
    "Relative stability toward diffeomorphisms indicates performance in deep nets", NeurIPS).

    .. math::
        R_f = \\frac{D_f}{G_f}, \\quad
        D_f = \\mathbb{E}_{x,\\tau}\\, \\|f(\\tau x) - f(x)\\|^2, \\quad
        G_f = \\mathbb{E}_{x,\\eta}\\, \\|f(x + \\eta) - f(x)\\|^2

    where ``tau`` is a random band-limited deformation (:func:`random_deformation`, temperature
    ``T``, cutoff ``c``) and ``eta`` is Gaussian noise rescaled per sample to the norm of the
    deformation's change, ``||eta|| = ||tau x - x||``. ``R_f < 1``: the model is more stable to
    deformations than to noise of the same size (what good image classifiers learn, by
    Petrini et al.); the identity map has ``R_f = 1`` exactly. The result also reports the mean
    displacement and ``||grad tau||`` of the deformations drawn: the measured form of
    ``||f(x) - f(tau x)||`` against ``||grad tau||``.

    Args:
        model: any module or function.
        x: the batch ``(B, C, H, W)``.
        temperature: ``T > 0``, the deformations' size (``||grad tau||^2`` grows like
            ``T c^2``).
        cutoff: ``c >= 1``, the highest mode of the deformation field.
        samples: deformations (and noises) drawn per input; one field is shared by the batch
            per sample.
        generator: a CPU ``torch.Generator`` (default: a fresh one seeded 0).
    """
    check_model(model, _WHAT)
    x = check_batch(x, _WHAT, min_dim=4)
    C.check_number(temperature, "temperature", _WHAT, positive=True)
    cutoff = positive_int(cutoff, "cutoff", _WHAT)
    samples = positive_int(samples, "samples", _WHAT)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"deformation_stability: generator={generator!r} must be a "
                        "torch.Generator, or None: a fresh one seeded 0")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    h, w = x.shape[-2:]
    d_sum = g_sum = disp_sum = grad_sum = moved = 0.0
    with torch.no_grad(), kept_buffers(model):
        y = tensor_output(model(x), _WHAT, batch=x.shape[0])
        for _ in range(samples):
            disp = random_deformation(h, w, temperature, cutoff, generator=gen, dtype=x.dtype,
                                      device=x.device)
            xt = _warp(x, disp)
            delta = (xt - x).reshape(x.shape[0], -1)
            moved += float(delta.abs().sum())
            noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x)
            noise = noise.reshape(x.shape[0], -1)
            noise = noise * (delta.norm(dim=1, keepdim=True) /
                             noise.norm(dim=1, keepdim=True).clamp_min(1e-300))
            yt = tensor_output(model(xt), _WHAT)
            yn = tensor_output(model(x + noise.reshape(x.shape)), _WHAT)
            d_sum += float((yt - y).reshape(x.shape[0], -1).to(torch.float64).pow(2).sum(1).mean())
            g_sum += float((yn - y).reshape(x.shape[0], -1).to(torch.float64).pow(2).sum(1).mean())
            d64 = disp.to(torch.float64)
            disp_sum += float(d64.pow(2).sum(0).mean().sqrt())
            jy = torch.diff(d64, dim=-2)[..., :, :-1]
            jx = torch.diff(d64, dim=-1)[..., :-1, :]
            grad_sum += float((jy.pow(2) + jx.pow(2)).sum(0).mean().sqrt())
    # tau x = x up to the warp's rounding (constant frames, 1x1 images): the noise scaled to
    # that change is ~0 too, which reads as a constant model below
    if g_sum == 0.0 and moved <= 64 * torch.finfo(x.dtype).eps * samples * float(x.abs().sum()):
        raise ValueError("deformation_stability: the deformations drawn leave x unchanged "
                         f"(tau x = x for every sample; x of shape {tuple(x.shape)} is constant "
                         "or too small for a displacement that vanishes on the border), so the "
                         "noise scaled to that change is 0 too and R_f is undefined; measure "
                         "images with content, or raise temperature")
    if g_sum == 0.0:
        raise ValueError("deformation_stability: the model's output does not change under "
                         "noise (G_f = 0), so R_f is undefined; is the model constant?")
    return DeformationStability(d_sum / g_sum, d_sum / samples, g_sum / samples,
                                disp_sum / samples, grad_sum / samples)
