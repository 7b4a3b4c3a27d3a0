"""The 3-D group convs on the cube's groups: the exact equivariance of LiftingConv3d ->
GroupConv3d -> GroupPool stacks over every element, with negative controls; module ==
functional == the definition, gradients, shapes, init, repr and state; the identity's slot
as ``nn.Conv3d``; the exactness law's padding; group pooling and batch norm on volumes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _cubic_common import NAMES, ORDERS
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.groups import CubicGroup, FieldType, act, get
from equilayers.testing import assert_equivariant, equivariance_error


# --- the convolutions --------------------------------------------------------------------------
def _stack(group: str, c: int = 2, stride: int = 1) -> nn.Module:
    return nn.Sequential(enn.LiftingConv3d(2, c, 3, stride=stride, padding=1, group=group),
                         nn.ReLU(), enn.GroupConv3d(c, c, 3, padding=1, group=group),
                         enn.GroupPool())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_stack_equivariant_every_element(name, stride, gen):
    """Exact over all elements: float64 to 1e-10, float32 to 1e-5 (odd sizes, symmetric
    padding; stride 2 where (n + 2p - k) % 2 == 0)."""
    size = 7 if stride == 2 else 5
    model = _stack(name, stride=stride)
    x = torch.randn(1, 2, size, size, size, generator=gen, dtype=torch.float64)
    report = assert_equivariant(model.double(), x, name)
    assert report.error <= 1e-10 and len(report.errors) == ORDERS[name]
    assert_equivariant(model.float(), x.float(), name, tol=1e-5)
    # the regular fields in between as well
    assert_equivariant(model[0].double(), x, name)


def test_plain_conv3d_fails(gen):
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    conv = nn.Conv3d(2, 2, 3, padding=1).double()
    assert equivariance_error(conv, x, "o", in_rep="trivial", out_rep="trivial") > 1e-2
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, x, "c4z", in_rep="trivial", out_rep="trivial")


@pytest.mark.parametrize("layer", [0, 2])
def test_corrupted_table_fails(layer, gen, monkeypatch):
    """Two filter taps of one group element swapped in the gather table of the lifting or
    the group conv: the module refuses the table by name (nn/_tables.py), and with that check
    switched off the harness sees that the stack is no longer equivariant."""
    import equilayers.nn._group_conv3d as gc3

    model = _stack("o").double()
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert_equivariant(model, x, "o")
    table = model[layer].expansion_table.clone()
    table[3, 0, [0, 1]] = table[3, 0, [1, 0]]
    model[layer].expansion_table = table
    with pytest.raises(RuntimeError, match="integer table 'expansion_table'"):
        model(x)
    monkeypatch.setattr(gc3, "check_tables", lambda module, rebuild: None)
    assert equivariance_error(model, x, "o") > 1e-3


def test_wrong_fiber_permutation_fails(gen, monkeypatch):
    """The action on regular fields with g h in place of g^-1 h: the harness must notice (O is
    not abelian)."""
    lift = enn.LiftingConv3d(2, 2, 3, padding=1, group="o").double()
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert_equivariant(lift, x, "o")
    monkeypatch.setattr(CubicGroup, "regular_permutation",
                        lambda self, g: self.cayley_table[self.index(g)].clone())
    assert equivariance_error(lift, x, "o") > 1e-2


def _reference(x, weight, bias, group, lifting, padding):
    """The definition, one element at a time: slot g correlates with g . psi."""
    grp = get(group)
    outs = []
    for g in grp.elements():
        if lifting:
            w = act(weight, g, "trivial")
        else:
            w = act(weight, g, "regular").flatten(1, 2)
        outs.append(F.conv3d(x.flatten(1, -4), w, bias, padding=padding))
    return torch.stack(outs, 2)


@pytest.mark.parametrize("name", ["d4z", "o"])
def test_module_functional_and_reference_agree(name, gen):
    n = ORDERS[name]
    lift = enn.LiftingConv3d(2, 3, 3, padding=1, group=name).double()
    conv = enn.GroupConv3d(3, 2, 3, padding=1, group=name).double()
    nn.init.normal_(lift.bias)
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    y = lift(x)
    assert y.shape == (2, 3, n, 5, 5, 5)
    torch.testing.assert_close(y, EF.lifting_conv3d(x, lift.weight, lift.bias, padding=1,
                                                    group=name))
    torch.testing.assert_close(y, _reference(x, lift.weight, lift.bias, name, True, 1))
    z = conv(y)
    w = conv.voxel_filter()  # the group axis per element (the weight holds Fourier coefficients)
    torch.testing.assert_close(z, EF.group_conv3d(y, w, conv.bias, padding=1, group=name))
    torch.testing.assert_close(z, _reference(y, w, conv.bias, name, False, 1))
    # control: the Fourier coefficients read as per-element filters are other filters
    assert not torch.allclose(z, EF.group_conv3d(y, conv.weight, conv.bias, padding=1,
                                                 group=name))


def test_forward_backward_and_gradcheck(gen):
    model = _stack("c4z")
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, requires_grad=True)
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    assert x.grad is not None
    conv = enn.GroupConv3d(1, 1, 3, padding=1, group="c4z").double()
    xi = torch.randn(1, 1, 4, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: EF.group_conv3d(a, w, padding=1, group="c4z"),
                                    (xi, conv.weight.detach().clone().requires_grad_()))


def test_shapes_init_repr_and_state_dict(gen):
    lift = enn.LiftingConv3d(4, 3, 3, stride=2, padding=1, dilation=1, group="oh", bias=False)
    assert lift.weight.shape == (3, 4, 3, 3, 3) and lift.bias is None
    assert lift(torch.randn(1, 4, 7, 7, 7)).shape == (1, 3, 48, 4, 4, 4)
    conv = enn.GroupConv3d(3, 5, 3, dilation=2, groups=1, group="d4z")
    assert conv.weight.shape == (5, 3, 8, 3, 3, 3) and conv.bias.shape == (5,)
    assert conv(torch.randn(1, 3, 8, 7, 7, 7)).shape == (1, 5, 8, 3, 3, 3)
    assert conv.in_type == FieldType.regular("d4z") and lift.in_type == FieldType.trivial("oh")
    assert repr(lift) == "LiftingConv3d(4, 3, kernel_size=3, group='oh', stride=(2, 2, 2), " \
                         "padding=1, bias=False)"
    # second moment 1 per output slot on unit-variance input
    big = enn.GroupConv3d(8, 4, 3, group="c4z")
    y = big(torch.randn(4, 8, 4, 7, 7, 7, generator=gen))
    assert 0.7 < y.square().mean().item() < 1.3
    other = enn.GroupConv3d(3, 5, 3, dilation=2, group="d4z")
    other.load_state_dict(conv.state_dict())
    x = torch.randn(1, 3, 8, 7, 7, 7, generator=gen)
    torch.testing.assert_close(other(x), conv(x))
    assert "expansion_table" not in conv.state_dict()


def test_group_pool_and_batch_norm_on_volumes(gen):
    x = torch.randn(2, 3, 24, 3, 3, 3, generator=gen, dtype=torch.float64)
    assert enn.GroupPool()(x).shape == (2, 3, 3, 3, 3)
    assert_equivariant(enn.GroupPool(), x, "o")
    bn = enn.GroupBatchNorm3d(3).double()
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3, 4, 5)), torch.zeros(3, dtype=y.dtype))
    assert_equivariant(bn, x, "o")
    with pytest.raises(ValueError, match="6-D"):
        bn(x[:, :, :, 0])


@pytest.mark.parametrize("kwargs", [
    dict(padding=(0, 1, 2)),  # (D, H, W) as nn.Conv3d
    dict(padding="same"),  # k=4: 3 voxels per dim, the odd one on the high side
    dict(padding="same", dilation=(1, 2, 1)),
    dict(padding=(2, 0, 1), stride=(1, 2, 3)),
    dict(padding=(1, 0, 2), padding_mode="reflect"),
    dict(padding="same", padding_mode="circular"),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_identity_slot_is_nn_conv3d(kwargs, gen):
    """The identity's slot (slot 0) of the lifting and group convs on volumes is ``nn.Conv3d``
    with the unmoved filter and the same options, value for value: which dim each entry of a
    padding, stride or dilation triple goes to, and which side takes the odd voxel of
    ``'same'``. The equivariance tests cannot see a (D, H, W) triple read backwards when the
    options are alike on the dims the group moves."""
    x = torch.randn(2, 3, 9, 10, 11, generator=gen, dtype=torch.float64)
    w, b = (torch.randn(5, 3, 4, 4, 4, generator=gen, dtype=torch.float64),
            torch.randn(5, generator=gen, dtype=torch.float64))
    ref = nn.Conv3d(3, 5, 4, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    y = EF.lifting_conv3d(x, w, b, group="c4z", **kwargs)
    torch.testing.assert_close(y[:, :, 0], ref(x), rtol=0, atol=1e-12)
    xg = torch.randn(2, 3, 4, 9, 10, 11, generator=gen, dtype=torch.float64)
    wg = torch.randn(5, 3, 4, 4, 4, 4, generator=gen, dtype=torch.float64)
    ref = nn.Conv3d(12, 5, 4, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(wg.flatten(1, 2))
        ref.bias.copy_(b)
    y = EF.group_conv3d(xg, wg, b, group="c4z", **kwargs)
    torch.testing.assert_close(y[:, :, 0], ref(xg.flatten(1, 2)), rtol=0, atol=1e-12)


def test_exactness_law3d_reads_each_dims_own_padding(gen):
    """The pad is F.pad's ``(w_lo, w_hi, h_lo, h_hi, d_lo, d_hi)``: an asymmetric width pad
    is named as the width's, and c4z (which moves only H and W) ignores an asymmetric depth
    pad but not an asymmetric width or height one. The equivariance tests pad every dim
    alike, so a law that read the triple backwards passed them."""
    law = EF.exactness_problems3d
    assert [p for p in law("o", (9, 9, 9), 3, 1, (0, 2, 1, 1, 1, 1), 1)
            if p.startswith("asymmetric width padding (0, 2)")]
    assert [p for p in law("o", (9, 9, 9), 3, 1, (1, 1, 1, 1, 2, 0), 1)
            if p.startswith("asymmetric depth padding (2, 0)")]
    assert law("c4z", (9, 9, 9), 3, 1, (1, 1, 1, 1, 0, 2), 1) == []  # depth: not moved
    assert [p for p in law("c4z", (9, 9, 9), 3, 1, (0, 2, 1, 1, 1, 1), 1)
            if p.startswith("asymmetric width padding")]
    assert [p for p in law("c4z", (9, 9, 9), 3, 1, (1, 1, 2, 0, 1, 1), 1)
            if p.startswith("asymmetric height padding")]
    # control: the layer agrees with the law on the depth-only case (exact, measured)
    conv = enn.LiftingConv3d(2, 2, 3, group="c4z").double()
    x = torch.randn(1, 2, 9, 9, 9, generator=gen, dtype=torch.float64)

    def f(t):
        return conv(F.pad(t, (1, 1, 1, 1, 0, 2)))

    assert equivariance_error(f, x, "c4z", in_rep="trivial", out_rep="regular") < 1e-12


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
def test_group_batch_norm3d_gives_batch_norm_at_most_5_dims(gen, monkeypatch, momentum, track):
    """cuDNN's batch norm takes 2 to 5 dims: GroupBatchNorm3d on CUDA raised "Expected 2 to 5
    dimensions, but got 6-dimensional tensor" (seen on an H200). Its 6-D map is folded to 5
    dims; outputs, gradients, running statistics and the batch count equal torch's own
    BatchNorm3d forward on the 6-D map (CPU), over training and evaluation steps."""
    from equilayers.functional import group_batch_norm
    from equilayers.nn import GroupBatchNorm3d

    real = F.batch_norm
    dims = []

    def checked(x, *args, **kwargs):
        dims.append(x.dim())
        return real(x, *args, **kwargs)

    ours = GroupBatchNorm3d(3, momentum=momentum, track_running_stats=track)
    with torch.no_grad():
        ours.weight.normal_(generator=gen), ours.bias.normal_(generator=gen)
    theirs = copy.deepcopy(ours)
    for training in (True, True, False):
        ours.train(training), theirs.train(training)
        x = torch.randn(2, 3, 4, 3, 5, 4, generator=gen, requires_grad=True)
        monkeypatch.setattr(F, "batch_norm", checked)
        y = ours(x)
        monkeypatch.setattr(F, "batch_norm", real)
        y_ref = torch.nn.BatchNorm3d.forward(theirs, x)  # torch's forward, fine on CPU
        torch.testing.assert_close(y, y_ref, atol=0, rtol=0)
        g = torch.randn(y.shape, generator=gen)
        torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                                   torch.autograd.grad(y_ref, x, g)[0])
        for name, buf in theirs.named_buffers():
            assert torch.equal(dict(ours.named_buffers())[name], buf), name
    assert dims and max(dims) <= 5, dims
    x = torch.randn(2, 3, 4, 3, 5, 4, generator=gen)
    monkeypatch.setattr(F, "batch_norm", checked)
    dims.clear()
    y = group_batch_norm(x, None, None, training=True)
    assert dims == [5] and y.shape == x.shape


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", ["o", "oh", "t", "th", "c4z", "d4z"])
def test_gather_table_is_the_action_on_an_index_volume(name, k):
    """The layers' gather table, read off the matrices for all elements at once, is each
    element's action on an index volume (the definition; its negative control: the table of
    the inverses differs, except for the groups whose elements are all involutions)."""
    from equilayers.functional._gconv3d import _spatial_block
    grp = get(name)
    base = torch.arange(k ** 3).view(k, k, k)
    want = torch.stack([act(base, g, "trivial").reshape(-1) for g in grp.elements()])
    assert torch.equal(_spatial_block(grp, k), want)
    inverse = torch.stack([act(base, grp.inverse(g), "trivial").reshape(-1)
                           for g in grp.elements()])
    assert k < 3 or not torch.equal(inverse, want)
