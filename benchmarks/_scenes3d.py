"""Procedural 3-D scenes for the ``segmentation3d`` family: Tetris pieces
(:data:`benchmarks._polycubes.TETRIS`) placed at random on a voxel grid, with a label per
voxel; fixed seeds, nothing downloaded.

A piece is turned by one of the cube's 24 rotation matrices (upright: the identity), each of
its cubes covers ``scale x scale x scale`` voxels, aligned with the grid, at a random integer
offset that keeps it inside the grid (no wrap-around). The piece is rendered with soft edges by
:func:`benchmarks._polycubes.render` (shifted so that its cubes sit on whole voxels); the scene
is the voxelwise maximum of its pieces. Pieces do not touch: a new piece is placed only where
none of its voxels is within one voxel (26-neighbourhood) of a voxel of an earlier piece (up to
:data:`TRIES` offsets, else the scene has one piece fewer). Labels: 0 background, ``1 + k`` (piece
``k`` of ``TETRIS``, 1..8) where that piece's rendered occupancy is above 0.5, exactly the
piece's voxel cubes (a soft edge leaks about 0.03 into the next voxel); as pieces keep a voxel
apart, no voxel is above 0.5 for two pieces (a later piece would win).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _polycubes as P

CLASSES = 1 + len(P.TETRIS)  # background + the 8 pieces
TRIES = 50
_CUBE = torch.tensor(P._cube_matrices(), dtype=torch.float64)  # (24, 3, 3)


def _place(cells: torch.Tensor, rot: torch.Tensor, size: int, scale: int,
           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random integer offset of the rotated piece: ``(offset (3,), cells (n, 3))``, the
    turned cells moved to start at 0, the offset in voxels (index space)."""
    turned = (cells @ rot.T).round()
    turned = turned - turned.amin(0)
    extent = scale * (turned.amax(0) + 1)
    hi = (size - extent + 1).long()
    if (hi < 1).any():
        raise ValueError(f"a piece of extent {extent.tolist()} voxels does not fit a {size}^3 "
                         "grid; use a larger size or scale 1")
    off = torch.stack([torch.randint(int(h), (1,), generator=gen)[0] for h in hi])
    return off.double(), turned


def render_piece(k: int, rot: torch.Tensor, offset: torch.Tensor, size: int,
                 scale: int) -> torch.Tensor:
    """Piece ``k`` of ``TETRIS`` turned by ``rot`` (a cube rotation matrix) with its cubes'
    least corner at voxel index ``offset``, soft-edged: ``(size, size, size)`` float32."""
    cells = torch.tensor(P.TETRIS[k], dtype=torch.float64)
    centroid = cells.mean(0)
    m = (cells @ rot.T).round().amin(0)
    # render puts cell c at scale * (R (c - centroid)) + shift (centred coordinates); the
    # voxel cube of the turned cell c' = R c - m starts at index scale * c' + offset, whose
    # centre is at scale * c' + offset + (scale - 1) / 2 - (size - 1) / 2.
    shift = offset + (scale - 1) / 2 - (size - 1) / 2 - scale * m + scale * (rot @ centroid)
    return P.render(P.TETRIS[k], rot[None], size, float(scale), shifts=shift[None])[0, 0]


def scenes(n: int, *, size: int, scale: int, turned: bool, gen: torch.Generator,
           pieces: tuple[int, int] = (2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes ``(n, 1, size, size, size)`` and their labels ``(n, size, size, size)``
    (int64): ``pieces[0]..pieces[1]`` random pieces each, upright, or with ``turned`` each
    in its own random one of the cube's 24 orientations."""
    x = torch.zeros(n, 1, size, size, size)
    y = torch.zeros(n, size, size, size, dtype=torch.long)
    for i in range(n):
        taken = torch.zeros(size, size, size, dtype=torch.bool)
        count = int(torch.randint(pieces[0], pieces[1] + 1, (1,), generator=gen))
        for _ in range(count):
            k = int(torch.randint(len(P.TETRIS), (1,), generator=gen))
            rot = (_CUBE[int(torch.randint(24, (1,), generator=gen))] if turned
                   else torch.eye(3, dtype=torch.float64))
            cells = torch.tensor(P.TETRIS[k], dtype=torch.float64)
            near = F.max_pool3d(taken[None, None].float(), 3, 1, 1)[0, 0].bool()
            for _ in range(TRIES):
                offset, turned_cells = _place(cells, rot, size, scale, gen)
                mask = torch.zeros_like(taken)
                for c in (scale * turned_cells + offset).long().tolist():
                    mask[c[0]:c[0] + scale, c[1]:c[1] + scale, c[2]:c[2] + scale] = True
                if not (mask & near).any():
                    break
            else:
                continue
            density = render_piece(k, rot, offset, size, scale)
            taken |= mask
            y[i][density > 0.5] = 1 + k
            x[i, 0] = torch.maximum(x[i, 0], density)
    return x, y


def turn_scenes(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each scene and its labels turned by its own random element of the cube's 24 rotations
    (``equilayers.groups.act``: an exact permutation of voxels)."""
    from equilayers.groups import act, get

    elements = get("o").elements()
    xs, ys = [], []
    for xi, yi in zip(x, y, strict=True):
        g = elements[int(torch.randint(24, (1,), generator=gen))]
        xs.append(act(xi[None], g))
        ys.append(act(yi[None, None], g)[0, 0])
    return torch.cat(xs), torch.stack(ys)


def offsets(n: int, gen: torch.Generator, size: int, multiple: int
            ) -> list[tuple[int, int, int]]:
    """Random circular offsets ``(dz, dy, dx)``, none a multiple of ``multiple`` on every
    axis."""
    out: list[tuple[int, int, int]] = []
    while len(out) < n:
        s = tuple(int(v) for v in torch.randint(0, size, (3,), generator=gen))
        if any(v % multiple for v in s):
            out.append(s)  # type: ignore[arg-type]
    return out


def shift_scenes(x: torch.Tensor, y: torch.Tensor, shifts: list[tuple[int, int, int]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene ``i`` and its labels rolled circularly by ``shifts[i]``."""
    return (torch.stack([v.roll(s, (-3, -2, -1)) for v, s in zip(x, shifts, strict=True)]),
            torch.stack([v.roll(s, (-3, -2, -1)) for v, s in zip(y, shifts, strict=True)]))


def dataset(n_train: int, n_test: int, *, size: int, scale: int, seed: int = 0,
            multiple: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train scenes (upright pieces) and the test conditions, deterministic in ``seed``:
    ``upright`` (drawn like the training scenes), ``scene turned`` (those scenes, each turned
    whole by a random cube rotation), ``pieces turned`` (new scenes whose pieces are each in a
    random cube orientation), ``shifted`` (the upright test scenes rolled circularly by random
    offsets, not multiples of ``multiple`` on every axis); and ``train turned``, training
    scenes whose pieces are each turned (augmentation over the cube's rotations), drawn last so
    that the other splits do not depend on it."""
    gen = torch.Generator().manual_seed(seed)
    train = scenes(n_train, size=size, scale=scale, turned=False, gen=gen)
    upright = scenes(n_test, size=size, scale=scale, turned=False, gen=gen)
    out = {"train": train, "upright": upright,
           "scene turned": turn_scenes(*upright, gen),
           "pieces turned": scenes(n_test, size=size, scale=scale, turned=True, gen=gen),
           "shifted": shift_scenes(*upright, offsets(n_test, gen, size, multiple))}
    out["train turned"] = scenes(n_train, size=size, scale=scale, turned=True, gen=gen)
    return out
