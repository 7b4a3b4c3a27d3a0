"""The continuous groups of 3-D rotations, SO(3), and of rotations and the inversion, O(3).

Conventions (used by the steerable 3-D convs and their tests):

* Coordinates ``(x, y, z)`` are the volume's (:mod:`equilayers.groups._cubic`): ``x`` along
  the width, ``y`` up, ``z`` along the depth index.
* An element is its ``3 x 3`` orthogonal matrix on ``(x, y, z)`` (``det = 1`` for SO(3),
  ``+-1`` for O(3) = SO(3) x {I, -I}); composition is the matrix product (``a * b`` applies
  ``b`` first), the inverse the transpose. A matrix within ``1e-12`` of a signed permutation is
  stored as that signed permutation, exactly, so the grid elements stay grid elements under
  products.
* The grid subgroup is the cube's: ``"o"`` (24 rotations) for SO(3), ``"oh"`` (48) for O(3)
  (as SO(2)'s is C4). :meth:`SO3Group.grid_elements` lists them in the cube group's slot
  order, as elements of SO(3)/O(3); they move a volume exactly (flips and an axis
  permutation). Other elements move it by trilinear interpolation about its centre.
* Harmonic fields of orders ``0 .. L`` have ``(L + 1)^2`` slots, order ``l`` in slots ``l^2
  .. (l+1)^2 - 1`` (its ``2l + 1`` real spherical-harmonic coefficients, ``m = -l .. l``), on
  which ``g`` acts by the real Wigner-D matrices of :mod:`equilayers.groups._spherical`
  (O(3): parity ``(-1)^l``, a function on the sphere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._group import Element, Group
from ._registry import get, register_group

__all__ = ["SO3Group", "SO3Element", "rotate3d"]

Rows = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


def _snap(m: torch.Tensor) -> torch.Tensor:
    """``m``, or the signed permutation within ``1e-12`` of it (exact)."""
    r = m.round()
    if (m - r).abs().max() <= 1e-12 and bool(((r != 0).sum(0) == 1).all()) and bool(
            ((r != 0).sum(1) == 1).all()):
        return r + 0.0  # no negative zeros
    return m


def _rows(m: torch.Tensor) -> Rows:
    v = m.tolist()
    return ((float(v[0][0]), float(v[0][1]), float(v[0][2])),
            (float(v[1][0]), float(v[1][1]), float(v[1][2])),
            (float(v[2][0]), float(v[2][1]), float(v[2][2])))


@dataclass(frozen=True)
class SO3Element(Element):
    """One element of :class:`SO3Group`: an orthogonal ``3 x 3`` matrix on ``(x, y, z)``
    (``rows``, float), printed as its rows (grid elements as the image of ``(x, y, z)``)."""

    group: SO3Group
    rows: Rows

    @property
    def det(self) -> int:
        """+1 for rotations, -1 for the elements with the inversion (O(3))."""
        return 1 if float(torch.linalg.det(torch.tensor(self.rows, dtype=torch.float64))) > 0 \
            else -1

    def __repr__(self) -> str:
        if all(v in (-1.0, 0.0, 1.0) for row in self.rows for v in row):
            names = []
            for row in self.rows:
                j = next(j for j in range(3) if row[j])
                names.append(("-" if row[j] < 0 else "") + "xyz"[j])
            return "(" + ", ".join(names) + ")"
        return "R" + repr([[round(v, 4) for v in row] for row in self.rows])


class SO3Group(Group):
    """SO(3), the rotations of space, or O(3), the rotations and the inversion ``-I``: the
    continuous groups of the steerable 3-D convs (:class:`~equilayers.nn.SteerableConv3d`).

    Use :func:`~equilayers.groups.get`: ``"so3"`` or ``"o3"``. Conventions in
    :mod:`equilayers.groups._so3`. Elements come from :meth:`element` (a matrix),
    :meth:`from_axis_angle`, :meth:`random_element` and :meth:`grid_elements` (the cube's).

    Args:
        reflections: ``False`` for SO(3), ``True`` for O(3).

    Example:
        >>> from equilayers.groups import get
        >>> so3 = get("so3")
        >>> so3.order, so3.spatial_dim, so3.grid_subgroup().name, len(so3.grid_elements())
        (inf, 3, 'o', 24)
        >>> so3.harmonic_size(2)
        9
    """

    _element_type = SO3Element

    def __init__(self, reflections: bool) -> None:
        self.reflections = C.check_flag(reflections, "reflections", "SO3Group",
                                        fix="False for SO(3), True for O(3)")

    # --- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "o3" if self.reflections else "so3"

    def _key(self) -> tuple:
        return (self.reflections,)

    @property
    def spatial_dim(self) -> int:
        return 3

    @property
    def order(self) -> float:
        return math.inf

    @property
    def has_reflections(self) -> bool:
        return self.reflections

    def harmonic_size(self, max_order: int) -> int:
        """``(L + 1)^2``: the slots of a harmonic fiber of orders ``0 .. L``."""
        return (max_order + 1) ** 2

    # --- elements -------------------------------------------------------------------------
    def element(self, matrix) -> SO3Element:
        """The element with ``matrix`` (a ``3 x 3`` orthogonal tensor or nested lists; ``det =
        1`` for SO(3)); ``ValueError`` otherwise."""
        what = f"{self.name}.element"
        m = orthogonal_matrix(matrix, "matrix", what)
        if not self.reflections and float(torch.linalg.det(m)) < 0:
            raise ValueError(f"{what}: matrix={m.tolist()} has det -1 (it reflects); so3 has "
                             "rotations only: use 'o3'")
        return SO3Element(self, _rows(_snap(m)))

    def from_axis_angle(self, axis, angle: float, *, inversion: bool = False) -> SO3Element:
        """The rotation by ``angle`` radians about ``axis`` (right-handed; normalised), times
        ``-I`` with ``inversion`` (O(3) only)."""
        a = torch.as_tensor(axis, dtype=torch.float64, device="cpu")
        if a.shape != (3,) or float(a.norm()) == 0:
            raise ValueError(f"{self.name}.from_axis_angle: axis={axis!r} must be a non-zero "
                             "3-vector (x, y, z)")
        if inversion and not self.reflections:
            raise ValueError("so3.from_axis_angle: inversion=True needs 'o3'")
        ax, ay, az = (a / a.norm()).tolist()
        k = torch.tensor([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]], dtype=torch.float64)
        m = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (
            1 - math.cos(angle)) * (k @ k)
        return self.element(-m if inversion else m)

    def random_element(self, generator: torch.Generator | None = None) -> SO3Element:
        """A Haar-random element (a uniform unit quaternion; O(3): the inversion with
        probability 1/2), drawn from ``generator`` (CPU)."""
        q = torch.randn(4, generator=generator, dtype=torch.float64)
        w, x, y, z = (q / q.norm()).tolist()
        m = torch.tensor([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]],
            dtype=torch.float64)
        if self.reflections and float(torch.rand(1, generator=generator)) < 0.5:
            m = -m
        return self.element(m)

    @property
    def identity(self) -> SO3Element:
        return self.element(torch.eye(3, dtype=torch.float64))

    def elements(self) -> list[SO3Element]:
        raise ValueError(f"{self.name} is continuous; use grid_elements() (the cube's "
                         f"{self.grid_subgroup().order}), element(matrix), from_axis_angle(...) "
                         "or random_element() to choose finitely many")

    def grid_elements(self) -> list[SO3Element]:
        """The elements that map the voxel grid onto itself: the cube group's, in its slot
        order (:mod:`equilayers.groups._cubic`)."""
        sub = self.grid_subgroup()
        return [self.element(sub.matrix(h)) for h in sub.elements()]

    def compose(self, a: SO3Element, b: SO3Element) -> SO3Element:
        """The product ``a * b`` (apply ``b`` first, then ``a``): the matrix product."""
        self._check(a)
        self._check(b)
        return self.element(self.matrix(a) @ self.matrix(b))

    def inverse(self, a: SO3Element) -> SO3Element:
        """``a^-1``: the transpose."""
        self._check(a)
        return self.element(self.matrix(a).T)


    # --- the action on space --------------------------------------------------------------
    def matrix(self, g: SO3Element) -> torch.Tensor:
        """The orthogonal matrix on ``(x, y, z)``, float64 on the CPU (exact for the grid)."""
        self._check(g)
        return torch.tensor(g.rows, dtype=torch.float64, device="cpu")

    def grid_subgroup(self) -> Group:
        """The cube's group: ``"o"`` for SO(3), ``"oh"`` for O(3)."""
        return get("oh" if self.reflections else "o")


register_group(r"(s?)o3", lambda s: SO3Group(s == ""),
               form="'so3' or 'o3' (3-D rotations, and the inversion)")


def orthogonal_matrix(matrix, name: str, what: str) -> torch.Tensor:
    """``matrix`` as a float64 CPU ``3 x 3`` orthogonal tensor, or a ``TypeError`` /
    ``ValueError`` naming ``name``."""
    try:
        m = torch.as_tensor(matrix, dtype=torch.float64, device="cpu")
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what}: {name}={matrix!r} must be a 3 x 3 matrix of real numbers (a "
                        "tensor or nested lists)") from None
    if m.shape != (3, 3) or not bool(torch.isfinite(m).all()):
        raise ValueError(f"{what}: {name} must be a finite 3 x 3 matrix; got shape "
                         f"{tuple(m.shape)}")
    # rtol=0: allclose's default rtol (1e-5) let a diagonal of M M^T off by 1e-5 through
    if not torch.allclose(m @ m.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-9):
        dtype = getattr(matrix, "dtype", torch.float64)
        low = dtype != torch.float64 and dtype.is_floating_point  # float32: only to ~1e-7
        raise ValueError(f"{what}: {name}={m.tolist()} is not orthogonal (M M^T = I to 1e-9): "
                         + (f"a {str(dtype).removeprefix('torch.')} matrix is orthogonal only "
                            "to its precision; pass it in float64 (the elements are float64)"
                            if low else "pass a rotation matrix"))
    return m


def rotate3d(x: torch.Tensor, matrix: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Move the last three dims ``(D, H, W)`` of ``x`` by the orthogonal ``matrix`` on ``(x,
    y, z)`` about the volume's centre, ``out[p] = in[M^-1 p]`` (one unit per voxel), by
    trilinear (``mode="bilinear"``) or nearest interpolation, zeros outside. For the grid
    elements use the exact :func:`~equilayers.groups.act_spatial` instead (which this equals,
    to rounding, on them)."""
    what = "rotate3d"
    C.check_choice(mode, "mode", ("bilinear", "nearest"), what,
                   fix="'bilinear' (trilinear) or 'nearest' for volumes")
    C.check_tensor(x, "x", what)
    if x.dim() < 3:
        raise ValueError(f"{what}: x must be (..., D, H, W), at least 3-D; got shape "
                         f"{tuple(x.shape)}")
    d, h, w = x.shape[-3:]
    m = orthogonal_matrix(matrix, "matrix", what)
    sign = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))  # y is up
    half = torch.diag(torch.tensor([(n - 1) / 2 if n > 1 else 1.0 for n in (w, h, d)],
                                   dtype=torch.float64))
    theta = torch.linalg.inv(half) @ sign @ m.T @ sign @ half  # output -> input, normalised
    affine = torch.cat([theta, torch.zeros(3, 1, dtype=torch.float64)], 1)[None]
    vol = x.reshape(1, -1, d, h, w)
    grid = F.affine_grid(affine.to(x.dtype).to(x.device), [1, 1, d, h, w], align_corners=True)
    out = F.grid_sample(vol, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out.reshape(x.shape)


def smooth3d(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (``sigma`` voxels, replicate padding) of the last three dims:
    the band limit of test volumes before interpolated rotations (the harness's)."""
    if sigma == 0 or x.numel() == 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    v = x.reshape(-1, 1, *shape[-3:])
    for dim in range(3):  # depth, height, width
        view = [1, 1, 1, 1, 1]
        view[2 + dim] = -1
        pad = [0] * 6
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        v = F.conv3d(F.pad(v, pad, mode="replicate"), k.view(view))
    return v.reshape(shape)


def ball_mask(d: int, h: int, w: int, margin: float = 1.0, *, device=None) -> torch.Tensor:
    """Boolean ``(D, H, W)`` mask of the voxels inside the inscribed ball, ``margin`` voxels
    inside (about the volume's centre)."""
    axes = [torch.arange(n, dtype=torch.float64, device=device) - (n - 1) / 2 for n in (d, h, w)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    radius = (min(d, h, w) - 1) / 2 - margin
    # (a negative radius is no ball: its square would admit the voxels about the centre)
    return (zz * zz + yy * yy + xx * xx) <= (radius * radius if radius >= 0 else -1.0)
