"""Procedural 3-D shape data for the ``tetris`` family: polycubes rendered on a voxel grid in
any orientation, with fixed seeds and nothing downloaded.

A shape is a set of unit cubes (integer centres). :func:`render` samples a soft-edged copy of it
(each cube a product of logistic steps of width ``SOFTNESS`` voxels; cubes sharing a face add up
to 1 across it) at the voxel centres of an ``n x n x n`` grid, after rotating it about its
centroid, scaling it to ``scale`` voxels per cube and shifting it. The rotated shape is
rendered, not resampled: upright and rotated volumes are equally smooth, so a test under
rotation differs from training by the rotation alone (resampling a rendered volume with
``grid_sample`` would blur only the rotated side). :func:`cube_turns` moves a volume by the
cube's 24 rotations exactly, with ``equilayers.groups.act`` (a permutation of voxels).
"""

from __future__ import annotations

import itertools

import torch

#: Thomas et al. 2018 (Tensor field networks), the classic 3-D Tetris: eight shapes of four
#: cubes, in their order; the first two are mirror images of each other (told apart by
#: rotations, not by reflections).
TETRIS = (
    ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)),  # chiral 1
    ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)),  # chiral 2
    ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)),  # square
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),  # line
    ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),  # corner
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)),  # L
    ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),  # T
    ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)),  # zigzag
)
TETRIS_NAMES = ("chiral 1", "chiral 2", "square", "line", "corner", "L", "T", "zigzag")
SOFTNESS = 0.3  # voxels: the width of a cube's logistic edge


def _cube_matrices() -> list[tuple[tuple[int, ...], ...]]:
    """The 24 rotation matrices of the cube (signed permutations of determinant 1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = [[0] * 3 for _ in range(3)]
            for i, (j, s) in enumerate(zip(perm, signs, strict=True)):
                m[i][j] = s
            if round(float(torch.tensor(m, dtype=torch.float64).det())) == 1:
                out.append(tuple(tuple(r) for r in m))
    return out


def _canonical(cells) -> tuple[tuple[int, int, int], ...]:
    """The shape moved so that its least coordinates are 0, as a sorted tuple."""
    lo = [min(c[i] for c in cells) for i in range(3)]
    return tuple(sorted(tuple(c[i] - lo[i] for i in range(3)) for c in cells))


def _rotation_class(cells, rotations) -> tuple[tuple[int, int, int], ...]:
    """The least canonical form over the cube's rotations: equal for rotated copies only."""
    return min(_canonical([tuple(sum(r[i][j] * c[j] for j in range(3)) for i in range(3))
                           for c in cells]) for r in rotations)


def polycubes(n: int) -> list[tuple[tuple[int, int, int], ...]]:
    """Every polycube of ``n`` face-connected cubes up to rotation (mirror images distinct:
    8 of 4 cubes, the Tetris set; 29 of 5), each in its least canonical orientation, sorted."""
    if n < 1:
        raise ValueError(f"polycubes: n={n} must be >= 1")
    rotations = _cube_matrices()
    shapes = {((0, 0, 0),)}
    for _ in range(n - 1):
        grown = set()
        for s in shapes:
            for c in s:
                for axis, step in itertools.product(range(3), (1, -1)):
                    new = list(c)
                    new[axis] += step
                    if tuple(new) not in s:
                        grown.add(_rotation_class([*s, tuple(new)], rotations))
        shapes = grown
    return sorted(shapes)


def same_up_to_rotation(a, b) -> bool:
    """Whether two shapes (cube centres) are rotated and shifted copies of each other."""
    rotations = _cube_matrices()
    return _rotation_class(a, rotations) == _rotation_class(b, rotations)


def radius(shape) -> float:
    """The largest distance, in cubes, from the shape's centroid to a corner of its cubes."""
    c = torch.tensor(shape, dtype=torch.float64)
    corners = (c[:, None, :] + torch.tensor(list(itertools.product((-0.5, 0.5), repeat=3)),
                                            dtype=torch.float64)).reshape(-1, 3)
    return float((corners - c.mean(0)).norm(dim=1).max())


def fit_scale(shapes, size: int, margin: float = 0.6) -> float:
    """Voxels per cube (at most 2) at which every shape, turned any way, stays ``margin``
    voxels inside the grid's inscribed ball."""
    return min(2.0, ((size - 1) / 2 - margin) / max(radius(s) for s in shapes))


def random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly (Haar) from SO(3): normalized
    Gaussian quaternions."""
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=1).view(n, 3, 3)


def render(shape, rotations: torch.Tensor, size: int, scale: float,
           shifts: torch.Tensor | None = None) -> torch.Tensor:
    """The shape rotated by each of ``rotations`` ``(N, 3, 3)`` about its centroid, ``scale``
    voxels per cube, shifted by ``shifts`` ``(N, 3)`` voxels (default none), centred in an
    ``size^3`` grid: ``(N, 1, size, size, size)`` float32 in [0, 1] (axes ``D, H, W`` are the
    shape's coordinates 0, 1, 2)."""
    cubes = torch.tensor(shape, dtype=torch.float64)
    centroid = cubes.mean(0)
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    p = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)
    if shifts is not None:
        p = p[None] - shifts.to(torch.float64)[:, None, :]  # (N, V, 3)
    else:
        p = p[None].expand(len(rotations), -1, -1)
    # q = R^T p / scale + centroid: the point of the upright shape that lands on voxel p
    q = torch.einsum("nij,nvi->nvj", rotations.to(torch.float64), p) / scale + centroid
    d = (0.5 - (q[:, :, None, :] - cubes).abs()) * (scale / SOFTNESS)  # (N, V, cubes, 3)
    density = torch.sigmoid(d).prod(-1).sum(-1).clamp(max=1.0)
    return density.view(-1, 1, size, size, size).float()


def cube_turns(x: torch.Tensor) -> torch.Tensor:
    """Every volume of ``x`` ``(N, 1, n, n, n)`` under each of the cube's 24 rotations
    (``equilayers.groups.act``, exact): ``(24 N, 1, n, n, n)``, rotation-major."""
    from equilayers.groups import act, get

    return torch.cat([act(x, g) for g in get("o").elements()])
