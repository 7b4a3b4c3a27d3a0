"""The Fourier basis of the cube's groups: orthonormal rows, the entries of their irreps."""

from __future__ import annotations

import pytest
import torch

from equilayers.groups import get, group_fourier_basis
from equilayers.groups._fourier_basis import fourier_row_dims

CUBE = ["o", "oh", "c4z", "d4z"]


def _homomorphism_error(f: torch.Tensor, group) -> float:
    """The rows of each irrep, read as ``rho(g)`` (``d x d``, scaled by ``sqrt(|G| / d)``):
    the largest ``|rho(g h) - rho(g) rho(h)|`` over all pairs."""
    n = int(group.order)
    table = group.cayley_table
    dims = fourier_row_dims(group).long().tolist()
    worst, i = 0.0, 0
    while i < n:
        d = dims[i]
        rho = (f[i:i + d * d] * (n / d) ** 0.5).T.reshape(n, d, d)
        prod = torch.einsum("gab,hbc->ghac", rho, rho)
        worst = max(worst, float((rho[table] - prod).abs().max()))
        i += d * d
    return worst


@pytest.mark.parametrize("name", CUBE)
def test_cubic_fourier_basis_is_orthonormal_irrep_entries(name):
    grp = get(name)
    f = group_fourier_basis(grp)
    n = int(grp.order)
    torch.testing.assert_close(f @ f.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(f[0], torch.full((n,), n ** -0.5, dtype=torch.float64))
    if name in ("o", "oh"):
        assert _homomorphism_error(f, grp) < 1e-12
        # control: the same rows with two elements' columns swapped are no irreps
        assert _homomorphism_error(f[:, [1, 0, *range(2, n)]], grp) > 0.1
    else:  # listed as the planar c4 / d4, slot for slot
        planar = group_fourier_basis("c4" if name == "c4z" else "d4")
        torch.testing.assert_close(f, planar, rtol=0, atol=0)
    assert fourier_row_dims(grp).numel() == n
