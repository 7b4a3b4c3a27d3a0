"""Our SO(3)/O(3) harmonic analysis against escnn's (issue 16): the real Wigner-D matrices of
``equilayers.groups.wigner_d`` and escnn's ``so3_group().irrep(l)`` / ``o3_group().irrep(l %
2, l)`` are the same representations: the intertwiner between them (unique up to scale by
Schur's lemma, computed here from a few rotations and checked on fresh ones) is the identity,
so for the same rotation matrix (escnn's ``param="MAT"``) the two matrices are equal, entry for
entry: same real basis, same order of the ``m`` slots, same signs, same parity on O(3).

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_so3.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn.group import o3_group, so3_group  # noqa: E402

from equilayers.groups import get, wigner_d  # noqa: E402

D64 = torch.float64
ORDERS = range(5)


def _escnn_d(group, order: int, m: torch.Tensor, o3: bool = False) -> torch.Tensor:
    g = group.element(m.numpy() if not o3 else (int(torch.linalg.det(m) < 0),
                                                 (m * torch.linalg.det(m)).numpy()),
                      param="MAT")
    rep = group.irrep(order % 2, order) if o3 else group.irrep(order)
    return torch.as_tensor(rep(g), dtype=D64)


def _change_of_basis(order: int, mats: list[torch.Tensor], escnn_fn) -> torch.Tensor:
    """The orthogonal ``Q`` with ``D_ours(R) Q = Q D_escnn(R)`` for the rotations ``mats``:
    the null space of the stacked linear constraints (one dimension by Schur's lemma)."""
    d = 2 * order + 1
    eye = torch.eye(d, dtype=D64)
    rows = [torch.kron(wigner_d(order, m), eye) - torch.kron(eye, escnn_fn(m).T.contiguous())
            for m in mats]
    _, s, vh = torch.linalg.svd(torch.cat(rows))
    assert s[-1] < 1e-9 and (d == 1 or s[-2] > 1e-3), s[-3:]
    q = vh[-1].reshape(d, d)
    return q / q[0].norm()


@pytest.mark.parametrize("order", ORDERS)
def test_same_representation_as_escnn_so3(order):
    so3, esc = get("so3"), so3_group()
    gen = torch.Generator().manual_seed(order)
    mats = [so3.matrix(so3.random_element(gen)) for _ in range(4)]
    q = _change_of_basis(order, mats, lambda m: _escnn_d(esc, order, m))
    torch.testing.assert_close(q @ q.T, torch.eye(2 * order + 1, dtype=D64), atol=1e-9,
                               rtol=0)
    for _ in range(3):  # fresh rotations
        m = so3.matrix(so3.random_element(gen))
        torch.testing.assert_close(wigner_d(order, m) @ q, q @ _escnn_d(esc, order, m),
                                   atol=1e-9, rtol=0)


@pytest.mark.parametrize("order", ORDERS)
def test_same_matrices_as_escnn(order):
    """No change of basis at all: the intertwiner is +-I, and the matrices agree."""
    so3, esc = get("so3"), so3_group()
    gen = torch.Generator().manual_seed(10 + order)
    mats = [so3.matrix(so3.random_element(gen)) for _ in range(4)]
    q = _change_of_basis(order, mats, lambda m: _escnn_d(esc, order, m))
    eye = torch.eye(2 * order + 1, dtype=D64)
    assert torch.allclose(q, eye, atol=1e-9) or torch.allclose(q, -eye, atol=1e-9), q
    for m in mats:
        torch.testing.assert_close(wigner_d(order, m), _escnn_d(esc, order, m), atol=1e-9,
                                   rtol=0)


@pytest.mark.parametrize("order", range(4))
def test_parity_matches_escnn_o3(order):
    """O(3): our order-l fields carry parity (-1)^l, escnn's irrep(l % 2, l)."""
    o3, esc = get("o3"), o3_group()
    gen = torch.Generator().manual_seed(20 + order)
    mats = [o3.matrix(o3.random_element(gen)) for _ in range(6)]
    mats.append(-torch.eye(3, dtype=D64))
    q = _change_of_basis(order, mats, lambda m: _escnn_d(esc, order, m, o3=True))
    torch.testing.assert_close(q @ q.T, torch.eye(2 * order + 1, dtype=D64), atol=1e-9,
                               rtol=0)
    for m in mats:
        torch.testing.assert_close(wigner_d(order, m), _escnn_d(esc, order, m, o3=True),
                                   atol=1e-9, rtol=0)
