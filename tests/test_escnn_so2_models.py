"""``from_escnn`` of whole SO(2)/O(2) and C_N/D_N models: escnn's own SO(2) tutorial model (a
disk mask, Fourier-ELU blocks with IID batch norm, an antialiased pool, a 1x1 conv to
invariants) and its C8 twin, restrictions of irreps fields D_N -> C_N (O(2) -> SO(2)), a D8 ->
C8 Fourier model and its export, converted and compared with escnn output for output; the
converted models fine-tune and checkpoint.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_so2_models.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from _escnn_so2_common import _fields, _space  # noqa: E402
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import from_escnn  # noqa: E402


def _tutorial_model(gen):
    """escnn's SO(2) tutorial model, smaller: disk mask, two Fourier-ELU blocks (R2Conv
    without bias, IIDBatchNorm2d, FourierELU on orders 0..3 sampled at 16 rotations), an
    antialiased pool, a 1x1 R2Conv to invariant fields; batch statistics moved by training
    forwards, affine parameters moved off their init."""
    gs = gspaces.rot2dOnR2(-1, maximum_frequency=8)
    g = gs.fibergroup
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        a1 = esc.FourierELU(gs, 4, irreps=g.bl_irreps(3), N=16, inplace=True)
        a2 = esc.FourierELU(gs, 6, irreps=g.bl_irreps(3), N=16, inplace=True)
        model = esc.SequentialModule(
            esc.MaskModule(t_in, 29, margin=1),
            esc.R2Conv(t_in, a1.in_type, 7, padding=1, bias=False),
            esc.IIDBatchNorm2d(a1.in_type), a1,
            esc.R2Conv(a1.in_type, a2.in_type, 5, padding=2, bias=False),
            esc.IIDBatchNorm2d(a2.in_type), a2,
            esc.PointwiseAvgPoolAntialiased2D(a2.in_type, sigma=0.66, stride=2),
            esc.R2Conv(a2.in_type, esc.FieldType(gs, 8 * [gs.trivial_repr]), 1, bias=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight" in name or "bias" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.train()
    for _ in range(2):
        model(esc.GeometricTensor(torch.randn(8, 1, 29, 29, generator=gen), t_in))
    return model.eval(), t_in


def test_escnn_so2_tutorial_model_same_outputs(gen):
    model, t_in = _tutorial_model(gen)
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours] == [
        "DiskMask", "LiftingConv2d", "HarmonicBatchNorm", "FourierNonlinearity", "GroupConv2d",
        "HarmonicBatchNorm", "FourierNonlinearity", "GaussianBlurPool2d", "GroupConv2d"]
    assert ours[2].statistics == "field" and ours[3].samples == 16
    x = torch.randn(3, 1, 29, 29, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x)
    assert got.shape == (3, 8, 1, 13, 13)
    torch.testing.assert_close(got.flatten(1, 2), want, rtol=0, atol=2e-5)


def test_escnn_c8_fourier_model_same_outputs(gen):
    """The tutorial model's shape on C8 fields of orders 0..3 (Fourier ELU on the 8 rotations,
    IID batch norm, antialiased pool, 1x1 conv to invariants): converted whole, equal."""
    gs, _ = _space("c8")
    g = gs.fibergroup
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        a1 = esc.FourierELU(gs, 4, irreps=g.bl_irreps(3), type="regular", N=8)
        model = esc.SequentialModule(
            esc.MaskModule(t_in, 21, margin=1),
            esc.R2Conv(t_in, a1.in_type, 5, padding=2, bias=False),
            esc.IIDBatchNorm2d(a1.in_type), a1,
            esc.PointwiseAvgPoolAntialiased2D(a1.in_type, sigma=0.66, stride=2),
            esc.R2Conv(a1.in_type, esc.FieldType(gs, 6 * [gs.trivial_repr]), 1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight" in name or "bias" in name:  # not the mask (a parameter in escnn)
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.train()
    model(esc.GeometricTensor(torch.randn(8, 1, 21, 21, generator=gen), t_in))
    model.eval()
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours] == [
        "DiskMask", "LiftingConv2d", "HarmonicBatchNorm", "FourierNonlinearity",
        "GaussianBlurPool2d", "GroupConv2d"]
    assert ours[1].group.name == "c8" and ours[3].samples == 8
    x = torch.randn(3, 1, 21, 21, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).flatten(1, 2),
                                   model(esc.GeometricTensor(x, t_in)).tensor, rtol=0,
                                   atol=2e-5)


@pytest.mark.parametrize("which", ["so2 tutorial", "d8 to c8"])
def test_converted_model_fine_tunes_and_checkpoints(which, gen):
    """The converted model in a training loop: Adam steps in train mode lower the loss on a
    fixed batch (every parameter gets a finite gradient), and a checkpoint of the fine-tuned
    model loads into a fresh conversion of escnn's model with the same eval outputs."""
    model, _ = _tutorial_model(gen) if which == "so2 tutorial" else _d8_to_c8_model()
    ours = from_escnn(model)
    head = torch.nn.Linear(8, 3)
    net = torch.nn.Sequential(ours, torch.nn.Flatten(1, 2), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), head).train()
    x = torch.randn(16, 1, 29, 29, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses[:-1], losses[1:], strict=True)), losses
    # the small D8 model starts near chance (norm-ReLU thresholds at 1 on unit-norm fields)
    assert losses[-1] < (0.85 if which == "so2 tutorial" else 0.95) * losses[0], losses
    fresh = from_escnn(model)
    fresh.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), ours.eval()(x))


@pytest.mark.parametrize("space", ["d8", "o2"])
def test_restriction_of_irreps_fields_to_the_rotations(space, monkeypatch, gen):
    """escnn's shape D_N -> C_N (O(2) -> SO(2)) on fields of irreps: conv, norm batch norm,
    norm-ReLU, restriction, conv on the restricted fields, norm pool; converted whole, equal.
    The control: without the quarter turns undone after the restriction (escnn's restricted
    tensor keeps its basis) the outputs differ."""
    gs, irreps = _space(space)
    sub_id = (None, 8) if space == "d8" else (None, -1)
    t0 = esc.FieldType(gs, [gs.trivial_repr])
    t1 = _fields(gs, irreps, 3, 2, False)
    with seeded_rng(0):
        res = esc.RestrictionModule(t1, sub_id)
        sub_gs = res.out_type.gspace  # escnn's convs need this very gspace
        t2 = _fields(sub_gs, [sub_gs.fibergroup.irrep(m) for m in range(3)], 2, 2, False)
        model = esc.SequentialModule(
            esc.R2Conv(t0, t1, 5, padding=2), esc.GNormBatchNorm(t1),
            esc.NormNonLinearity(t1, "n_relu"), res,
            esc.R2Conv(res.out_type, t2, 5, padding=2), esc.NormPool(t2)).eval()
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours[3]] == ["Restrict", "EscnnRestrictedBasis"]
    x = torch.randn(2, 1, 13, 13, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t0)).tensor
        torch.testing.assert_close(ours(x), want, rtol=0, atol=2e-5)
        ours[3][1] = torch.nn.Identity()
        assert not torch.allclose(ours(x), want, atol=1e-3)


def _d8_to_c8_model():
    """escnn's published shape in small: D8 fields of irreps (norm batch norm, norm-ReLU),
    restricted to C8, a Fourier-ELU block with IID batch norm, a 1x1 conv to invariants."""
    gs, irreps = _space("d8")
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    t1 = _fields(gs, irreps, 3, 2, False)
    with seeded_rng(0):
        res = esc.RestrictionModule(t1, (None, 8))
        sub = res.out_type.gspace
        act = esc.FourierELU(sub, 4, irreps=sub.fibergroup.bl_irreps(2), type="regular", N=8)
        model = esc.SequentialModule(
            esc.R2Conv(t_in, t1, 5, padding=2), esc.GNormBatchNorm(t1),
            esc.NormNonLinearity(t1), res, esc.R2Conv(res.out_type, act.in_type, 5, padding=2),
            esc.IIDBatchNorm2d(act.in_type), act,
            esc.R2Conv(act.in_type, esc.FieldType(sub, 8 * [sub.trivial_repr]), 1)).eval()
    return model, t_in


def test_escnn_style_d8_to_c8_fourier_model_converts_and_exports(gen):
    """The D8 -> C8 model converts whole, equal to escnn's outputs, and
    ``equilayers.export`` of the conversion too."""
    import equilayers

    model, t_in = _d8_to_c8_model()
    ours = from_escnn(model).eval()
    x = torch.randn(2, 1, 15, 15, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        torch.testing.assert_close(ours(x).flatten(1, 2), want, rtol=0, atol=2e-5)
        torch.testing.assert_close(equilayers.export(ours)(x).flatten(1, 2), want, rtol=0,
                                   atol=2e-5)


def test_the_segmentation_benchmarks_escnn_so2_unet_matches_ours():
    """The segmentation family's side-by-side pair: escnn's max-pool SO(2) U-Net
    (``benchmarks/_escnn_unet.py``) has the parameter count of ``UNet(group="so2",
    down="max")`` at the same width (the same bases: escnn's), logits of the same shape, and
    is exact under rot90 in eval mode, as ours."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from benchmarks import bench_segmentation as seg
    finally:
        sys.path.pop(0)
    rows = {m.name: m for m in seg.models(False, "SO(2) U-Net, max pool")}
    with seeded_rng(0):
        ours, theirs = (rows[f"SO(2) U-Net, max pool ({lib})"].build()
                        for lib in ("equilayers", "escnn"))
    assert seg.n_params(ours) == seg.n_params(theirs) > 0
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    for net in (ours, theirs):
        with torch.no_grad():
            net.train()(x)
            net.eval()
            y = net(x)
            assert y.shape == (2, seg.CLASSES, 32, 32)
            torch.testing.assert_close(net(x.rot90(1, (2, 3))), y.rot90(1, (2, 3)),
                                       atol=1e-4, rtol=1e-4)
