"""equilayers.interop.from_escnn for escnn's ``IIDBatchNorm2d`` / ``IIDBatchNorm3d`` beyond
one-representation-per-field SO(2) fields (tests/test_escnn_so2.py): on regular fields (2-D and
the cube's) -> ``GroupBatchNorm2d`` / ``3d``, and on fields that list each irrep as its own
field (SO(2), SO(3), O(3)) -> ``HarmonicBatchNorm(statistics="order_centred")``
(``GNormBatchNorm``'s state and eval-mode map, escnn's training-mode variances). Eval mode gives
escnn's outputs after training steps moved the running statistics and the affine parameters were
drawn at random; the refusals name the layer.

Needs escnn (run in the peers venv: ``make test-peers``); skipped elsewhere."""

import pytest
import torch
from _interop_common import _escnn

from equilayers.interop import escnn_field_signs, escnn_slot_order, from_escnn


def _esc():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc
    return gspaces, esc


def _trained(m, t, shape, gen):
    """escnn's batch norm after two training steps and with random affine parameters, in eval
    mode: its running statistics and affine map away from their init."""
    from escnn import nn as esc
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(esc.GeometricTensor(3 * torch.randn(shape, generator=gen) + 1, t))
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return m.eval()


@pytest.mark.parametrize("space", ["c4", "d4", "octa", "full_octa"])
def test_iid_batch_norm_on_regular_fields_matches_escnn(space, gen):
    gspaces, esc = _esc()
    gs = {"c4": lambda: gspaces.rot2dOnR2(4), "d4": lambda: gspaces.flipRot2dOnR2(4),
          "octa": gspaces.octaOnR3, "full_octa": gspaces.fullOctaOnR3}[space]()
    n, three = gs.fibergroup.order(), gs.dimensionality == 3
    t = esc.FieldType(gs, 3 * [gs.regular_repr])
    spatial = (4, 5, 3) if three else (6, 7)
    m = (esc.IIDBatchNorm3d if three else esc.IIDBatchNorm2d)(t)
    m = _trained(m, t, (4, t.size, *spatial), gen)
    ours = from_escnn(m)
    assert type(ours).__name__ == ("GroupBatchNorm3d" if three else "GroupBatchNorm2d")
    assert not ours.training and int(ours.num_batches_tracked) == 2
    x = torch.randn(2, t.size, *spatial, generator=gen)
    with torch.no_grad():
        want = m(esc.GeometricTensor(x, t)).tensor
        if three:
            perm = escnn_slot_order(gs)
            got = ours(x.unflatten(1, (3, n))[:, :, perm])[:, :, perm.argsort()]
        else:
            got = ours(x.unflatten(1, (3, n)))
    torch.testing.assert_close(got.flatten(1, 2), want, rtol=1e-5, atol=1e-5)
    # the control: the running mean matters (a fresh batch norm with only the affine state)
    fresh = type(ours)(3)
    fresh.load_state_dict({**ours.state_dict(), "running_mean": torch.zeros(3)})
    with torch.no_grad():
        off = fresh.eval()(x.unflatten(1, (3, n)))
    assert not torch.allclose(off.flatten(1, 2), want, atol=1e-3)


@pytest.mark.parametrize("space", ["so2", "so3", "o3"])
def test_iid_batch_norm_on_separate_irreps_matches_escnn(space, gen):
    """Each irrep its own field: escnn's state is GNormBatchNorm's, so the conversion and the
    eval-mode map are too (SO(3)/O(3): escnn's tensor is ours times the field signs)."""
    gspaces, esc = _esc()
    if space == "so2":
        gs = gspaces.rot2dOnR2(-1, maximum_frequency=2)
        irreps, shape = [gs.irrep(ell) for ell in range(3)], (6, 7)
    else:
        gs = gspaces.rot3dOnR3() if space == "so3" else gspaces.flipRot3dOnR3()
        fg = gs.fibergroup
        irreps = ([fg.irrep(ell) for ell in range(3)] if space == "so3"
                  else [fg.irrep(ell % 2, ell) for ell in range(3)])
        shape = (4, 5, 3)
    t = esc.FieldType(gs, 2 * irreps)
    m = (esc.IIDBatchNorm2d if space == "so2" else esc.IIDBatchNorm3d)(t)
    m = _trained(m, t, (4, t.size, *shape), gen)
    ours = from_escnn(m)
    assert type(ours).__name__ == "HarmonicBatchNorm" and not ours.training
    x = torch.randn(2, t.size, *shape, generator=gen)
    signs = (torch.ones(t.size) if space == "so2"
             else escnn_field_signs(2).repeat(2).float()).view(1, -1, *([1] * len(shape)))
    with torch.no_grad():
        want = m(esc.GeometricTensor(x * signs, t)).tensor * signs
        got = ours(x.unflatten(1, (2, -1)))
    torch.testing.assert_close(got.flatten(1, 2), want, rtol=1e-5, atol=1e-5)
    # training mode on a batch with a mean vector: escnn takes every irrep's variance about
    # its batch mean (statistics="order_centred"); the rest is Bessel's N / (N - 1), about
    # 1 / (2N) of the output. The control: GNormBatchNorm's E|v|^2 ("order") is far off.
    assert ours.statistics == "order_centred"
    x = x + 1
    n = x.shape[0] * x[0, 0].numel()
    with torch.no_grad():
        want = m.train()(esc.GeometricTensor(x * signs, t)).tensor * signs
        got = ours.train()(x.unflatten(1, (2, -1))).flatten(1, 2)
        ours.statistics = "order"
        far = ours(x.unflatten(1, (2, -1))).flatten(1, 2)
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=1.5 / n * scale)
    assert float((far - want).abs().max()) > 0.1 * scale


def test_iid_batch_norm_refusals_name_the_layer():
    gspaces, esc = _esc()
    gs = gspaces.octaOnR3()
    t = esc.FieldType(gs, 2 * [gs.regular_repr])
    with pytest.raises(ValueError, match=r"IIDBatchNorm3d with track_running_stats=False "
                                         r"normalizes by escnn's batch statistics"):
        from_escnn(esc.IIDBatchNorm3d(t, track_running_stats=False))
    irrep = esc.FieldType(gs, [gs.fibergroup.irrep(*gs.fibergroup.irreps()[1].id)])
    with pytest.raises(ValueError, match=r"IIDBatchNorm3d on .* non-regular fields"):
        from_escnn(esc.IIDBatchNorm3d(irrep))
