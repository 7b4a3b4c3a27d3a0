"""PolyphaseUpsample3d / polyphase_upsample3d: the 3-D polyphase pool's inverse placement (the
partner of PolyphasePool3d in a 3-D U-Net): placement, blur and mean, every integer circular
shift and every cube element of the round trip, adjointness, gradients, errors; negative
controls (a fixed component under shifts, an even blur under the cube's rotations)."""

from __future__ import annotations

import pytest
import torch

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.testing import assert_equivariant, equivariance_error

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8}


def _phases(index: torch.Tensor, s: int) -> list[tuple[int, int, int]]:
    return [(int(i) // (s * s), int(i) // s % s, int(i) % s) for i in index]


@pytest.mark.parametrize("stride", [2, 3])
def test_placement_and_zeros(stride, gen):
    """The samples land on component (a, b, c) of an s-times larger map, zeros elsewhere, on
    volumes and 6-D maps; the 2-D placement on each depth slice agrees where it applies."""
    s = stride
    for shape in ((3, 2, 2, 3, 4), (3, 2, 5, 2, 2, 3)):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        index = torch.randint(0, s**3, (shape[0],), generator=gen)
        y = EF.polyphase_upsample3d(x, index, s)
        assert y.shape == (*shape[:-3], *(n * s for n in shape[-3:]))
        for n, (a, b, c) in enumerate(_phases(index, s)):
            assert torch.equal(y[n][..., a::s, b::s, c::s], x[n])
            mask = torch.ones_like(y[n], dtype=torch.bool)
            mask[..., a::s, b::s, c::s] = False
            assert not y[n][mask].any()


def test_round_trip_keeps_the_chosen_samples(gen):
    x = torch.randn(2, 3, 24, 4, 6, 4, generator=gen, dtype=torch.float64)
    y, index = EF.polyphase_pool3d(x, return_index=True)
    z = enn.PolyphaseUpsample3d()(y, index)
    for n, (a, b, c) in enumerate(_phases(index, 2)):
        assert torch.equal(z[n][..., a::2, b::2, c::2], x[n][..., a::2, b::2, c::2])


@pytest.mark.parametrize("blur_size", [2, 3, 5])
def test_blur_keeps_the_mean(blur_size, gen):
    x = torch.randn(2, 3, 3, 4, 5, generator=gen, dtype=torch.float64)
    index = torch.tensor([0, 7])
    y = EF.polyphase_upsample3d(x, index, blur_size=blur_size)
    torch.testing.assert_close(y.mean(dim=(-3, -2, -1)), x.mean(dim=(-3, -2, -1)))
    plain = EF.polyphase_upsample3d(x, index)
    torch.testing.assert_close(y, EF.blur_pool3d(plain, blur_size, 1, "circular") * 8)


def test_adjoint_of_taking_the_component(gen):
    """<up(y, i), x> = <y, x[component i]>: the placement is the transpose of the gather."""
    x = torch.randn(2, 3, 4, 6, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 3, 2, 3, 2, generator=gen, dtype=torch.float64)
    index = torch.tensor([5, 2])
    lhs = (EF.polyphase_upsample3d(y, index) * x).sum()
    rhs = sum((y[n] * x[n][..., a::2, b::2, c::2]).sum()
              for n, (a, b, c) in enumerate(_phases(index, 2)))
    torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("stride", [2, 3])
def test_round_trip_every_integer_shift(stride, gen):
    """up(*pool(x)) commutes with all 216 circular shifts of a 6^3 volume, exactly; putting
    the samples back on a fixed component does not (negative control)."""
    n = 6
    x = torch.randn(2, 2, 4, n, n, n, generator=gen, dtype=torch.float64)

    def pair(v, fixed=False):
        y, index = EF.polyphase_pool3d(v, stride, return_index=True)
        return EF.polyphase_upsample3d(y, torch.zeros_like(index) if fixed else index, stride)

    ref = pair(x)
    control = 0
    for t in [(a, b, c) for a in range(n) for b in range(n) for c in range(n)]:
        rolled = torch.roll(x, t, dims=(-3, -2, -1))
        assert torch.equal(pair(rolled), torch.roll(ref, t, dims=(-3, -2, -1)))
        control += not torch.equal(pair(rolled, True), torch.roll(pair(x, True), t,
                                                                  dims=(-3, -2, -1)))
    assert control > 150  # (only the shifts that keep the chosen phase agree)


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_round_trip_every_cube_element(name, gen):
    """Every element of each cube group, on cubes and boxes, with and without an odd blur; an
    even blur (off centre) breaks the rotations (negative control)."""
    def pair(stride, blur_size):
        pool = enn.PolyphasePool3d(stride, return_index=True)
        up = enn.PolyphaseUpsample3d(stride, blur_size=blur_size)
        return lambda v: up(*pool(v))

    for stride, size, blur in ((2, (4, 4, 4), 1), (2, (4, 6, 8), 3), (3, (6, 6, 6), 3)):
        x = torch.randn(2, 2, ORDERS[name], *size, generator=gen, dtype=torch.float64)
        assert_equivariant(pair(stride, blur), x, name)
    x = torch.randn(2, 2, ORDERS[name], 4, 4, 4, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"PolyphaseUpsample3d\(blur_size=2\) on a group map"):
        assert equivariance_error(pair(2, 2), x, name) > 1e-2


def test_module_functional_repr_and_state(gen):
    x = torch.randn(2, 3, 2, 2, 2, generator=gen)
    index = torch.tensor([3, 6])
    up = enn.PolyphaseUpsample3d(2, blur_size=3, padding_mode="zeros")
    torch.testing.assert_close(up(x, index), EF.polyphase_upsample3d(
        x, index, 2, blur_size=3, padding_mode="zeros"), rtol=0, atol=0)
    assert repr(up) == "PolyphaseUpsample3d(stride=2, blur_size=3, padding_mode='zeros')"
    assert repr(enn.PolyphaseUpsample3d()) == "PolyphaseUpsample3d(stride=2)"
    assert up.state_dict() == {}
    assert up.in_type is None and up.out_type is None


def test_gradcheck(gen):
    x = torch.randn(2, 2, 2, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([1, 6])
    assert torch.autograd.gradcheck(
        lambda v: EF.polyphase_upsample3d(v, index, blur_size=3), (x,))


def test_errors_are_named(gen):
    x = torch.randn(2, 3, 2, 2, 2, generator=gen)
    with pytest.raises(TypeError, match=r"index must be an integer tensor of shape \(2,\).*"
                       r"a\*stride\*\*2\+b\*stride\+c.*polyphase_pool3d"):
        EF.polyphase_upsample3d(x, torch.tensor([1.0, 2.0]))  # a dtype: TypeError
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        EF.polyphase_upsample3d(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"0\.\.stride\*\*3-1 = 0\.\.7.*got \[1, 8\]"):
        EF.polyphase_upsample3d(x, torch.tensor([1, 8]))
    with pytest.raises(ValueError, match=r"0\.\.26.*got \[-1, 0\]"):
        EF.polyphase_upsample3d(x, torch.tensor([-1, 0]), 3)
    with pytest.raises(ValueError, match="stride"):
        enn.PolyphaseUpsample3d(1)
    with pytest.raises(ValueError, match="blur_size"):
        enn.PolyphaseUpsample3d(blur_size=0)
    with pytest.raises(ValueError, match="padding_mode"):
        enn.PolyphaseUpsample3d(padding_mode="wrap")
    with pytest.raises(ValueError, match=r"at least 4-D \(B, C, D, H, W\).*unbatched \(C, D, "
                       r"H, W\); got a 3-D"):
        EF.polyphase_upsample3d(torch.randn(2, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(\).*a 0-d tensor for an unbatched x"):
        EF.polyphase_upsample3d(x[0], torch.tensor([1]))  # (C, D, H, W): a 0-d index
