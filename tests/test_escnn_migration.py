"""``from_escnn`` on what a user migrating a trained escnn model has: escnn's C8 tutorial
model trained a few steps (train and eval mode, rotated inputs), pixel-group convs with a
dilation or a high frequency cutoff, the source's dtype and frozen parameters kept, the pools
around ``GroupPooling`` and ``NormMaxPool``, ``torch.nn`` containers of escnn modules, and
the refusals that say what to do instead.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_migration.py``);
skipped where escnn is missing.
"""

import warnings
from collections import OrderedDict

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import group as eg  # noqa: E402
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import escnn_field_matrix, from_escnn  # noqa: E402
from equilayers.nn import GroupConv2d, LiftingConv2d, NormMaxPool  # noqa: E402


def _regular(gs, c):
    return esc.FieldType(gs, c * [gs.regular_repr])


def _trivial(gs, c):
    return esc.FieldType(gs, c * [gs.trivial_repr])


def _rel(got, want):
    return float((got - want).abs().max() / want.abs().max())


def _tutorial(gs):
    """escnn's MNIST-rot steerable CNN (its tutorial's blocks, fewer fields)."""
    t_in, t1, t2 = _trivial(gs, 1), _regular(gs, 3), _regular(gs, 4)
    return esc.SequentialModule(
        esc.MaskModule(t_in, 29, margin=1),
        esc.R2Conv(t_in, t1, 7, padding=1, bias=False), esc.InnerBatchNorm(t1),
        esc.ReLU(t1, inplace=True),
        esc.R2Conv(t1, t2, 5, padding=2, bias=False), esc.InnerBatchNorm(t2),
        esc.ReLU(t2, inplace=True),
        esc.PointwiseAvgPoolAntialiased(t2, sigma=0.66, stride=2),
        esc.R2Conv(t2, t2, 5, padding=1, stride=2), esc.InnerBatchNorm(t2, momentum=0.3),
        esc.ReLU(t2, inplace=True), esc.GroupPooling(t2)), t_in


def _train(model, t_in, gen, steps=3):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        y = model(esc.GeometricTensor(torch.randn(4, 1, 29, 29, generator=gen), t_in)).tensor
        loss = (y ** 2).mean() + y.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("space", ["c8", "d8"])
def test_trained_tutorial_model_same_outputs_in_both_modes_and_on_rotated_inputs(space, gen):
    gs = gspaces.rot2dOnR2(8) if space == "c8" else gspaces.flipRot2dOnR2(8)
    with seeded_rng(0):
        model, t_in = _tutorial(gs)
    _train(model, t_in, gen)
    x = torch.randn(2, 1, 29, 29, generator=gen)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        ours = from_escnn(model)
        assert ours.training == model.training
        for k in range(2):
            xk = torch.rot90(x, k, (-2, -1))
            with torch.no_grad():
                want = model(esc.GeometricTensor(xk, t_in)).tensor
                assert _rel(ours(xk), want) < 1e-5, (mode, k)


@pytest.mark.parametrize("space", ["c4", "d4"])
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("kw", [dict(padding=4, dilation=2),
                                dict(padding=2, frequencies_cutoff=lambda r: 3 * r)],
                         ids=["dilation", "high_cutoff"])
def test_pixel_group_conv_with_many_basis_elements_converts(space, lifting, kw, monkeypatch):
    """escnn samples each output slot's filter on its own in float32; with a dilation or a high
    frequency cutoff its slots agree only to ~2e-6 of the largest entry, which the pixel
    conversion refused as a convention mismatch. The control: a filter off by 1e-3 in one
    slot is still refused."""
    gs = gspaces.rot2dOnR2(4) if space == "c4" else gspaces.flipRot2dOnR2(4)
    t_in = _trivial(gs, 2) if lifting else _regular(gs, 2)
    with seeded_rng(0):
        conv = esc.R2Conv(t_in, _regular(gs, 3), 5, **kw).eval()
    ours = from_escnn(conv)
    assert isinstance(ours, LiftingConv2d if lifting else GroupConv2d)
    x = torch.randn(2, t_in.size, 15, 15, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours(x if lifting else x.unflatten(1, (2, -1))).flatten(1, 2)
        assert _rel(got, conv(esc.GeometricTensor(x, t_in)).tensor) < 1e-5
    expand = conv.expand_parameters

    def bent():
        filt, bias = expand()
        filt = filt.clone()
        filt[1] += 1e-3 * filt.abs().max()
        return filt, bias

    monkeypatch.setattr(conv, "expand_parameters", bent)
    conv.train()  # no filter cached at .eval() to compare with
    with pytest.raises(ValueError, match="is not reproduced by"):
        from_escnn(conv)


def test_converted_layers_keep_the_source_dtype(gen):
    """A float64 escnn model converts to float64 layers throughout (the disk mask, the
    antialiasing filter and the harmonic layers were built in float32). No escnn conv here:
    escnn shares one sampled basis between its convs of the same settings, so ``.double()``
    on one would turn the others in this process to float64 (docs/escnn.md)."""
    t1 = _regular(gspaces.rot2dOnR2(8), 2)
    so2 = gspaces.rot2dOnR2(-1, maximum_frequency=4)
    t2 = esc.FieldType(so2, 2 * [so2.irrep(0), so2.irrep(1)])
    t3 = esc.FieldType(so2, 2 * [so2.fibergroup.spectral_regular_representation((0,), (1,))])
    with seeded_rng(0):
        models = [esc.SequentialModule(
            esc.MaskModule(t1, 15, margin=1), esc.InnerBatchNorm(t1),
            esc.PointwiseAvgPoolAntialiased2D(t1, 0.66, 2)),
            esc.SequentialModule(esc.GNormBatchNorm(t2), esc.NormNonLinearity(t2)),
            esc.SequentialModule(esc.IIDBatchNorm2d(t3), esc.FourierELU(so2, 2, [(0,), (1,)],
                                                                        N=8))]
    for model in models:
        ours = from_escnn(model.double())
        tensors = [t for t in list(ours.parameters()) + list(ours.buffers())
                   if t.is_floating_point()]
        assert tensors and all(t.dtype == torch.float64 for t in tensors), ours
    with torch.no_grad():  # escnn samples its mask in float32, so ~1e-8 is escnn's rounding
        x = torch.randn(2, t1.size, 15, 15, dtype=torch.float64, generator=gen)
        want = models[0].eval()(esc.GeometricTensor(x, t1)).tensor
        got = from_escnn(models[0])(x.unflatten(1, (2, 8))).flatten(1, 2)
        assert got.dtype == torch.float64 and _rel(got, want) < 1e-6


def test_frozen_parameters_stay_frozen():
    """A partly frozen escnn model (a fine-tuning setup) converts with the same parameters
    frozen: by name (escnn's conv ``weights`` is our ``weight``), and all of a module whose
    escnn parameters are all frozen; trainable ones stay trainable."""
    gs = gspaces.rot2dOnR2(8)
    t_in, t1 = _trivial(gs, 1), _regular(gs, 2)
    so2 = gspaces.rot2dOnR2(-1, maximum_frequency=4)
    t2 = esc.FieldType(so2, 2 * [so2.irrep(0), so2.irrep(1)])
    with seeded_rng(0):
        model = esc.SequentialModule(esc.R2Conv(t_in, t1, 5, padding=2), esc.InnerBatchNorm(t1),
                                     esc.R2Conv(t1, t1, 5, padding=2))
        harmonic = esc.SequentialModule(esc.GNormBatchNorm(t2), esc.NormNonLinearity(t2))
    model[0].weights.requires_grad_(False)
    for p in model[1].parameters():
        p.requires_grad_(False)
    for p in harmonic.parameters():
        p.requires_grad_(False)
    ours = from_escnn(model)
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == {
        "0.weight": False, "0.bias": True, "1.weight": False, "1.bias": False,
        "2.weight": True, "2.bias": True}
    assert not any(p.requires_grad for p in from_escnn(harmonic).parameters())
    # escnn names these modules' parameters otherwise (per irrep); ours train where escnn's do
    with seeded_rng(0):
        trainable = esc.SequentialModule(esc.GNormBatchNorm(t2), esc.NormNonLinearity(t2))
    assert [n for n, p in from_escnn(trainable).named_parameters() if not p.requires_grad] == []


def test_partly_frozen_batch_norms_carry_or_refuse_by_parameter():
    """escnn names a ``GNormBatchNorm`` / ``IIDBatchNorm2d``'s parameters per irrep
    (``irrep_0_weight``, ...). Where one escnn parameter is one of ours (the order-0 bias,
    an ``IIDBatchNorm2d``'s weight), its ``requires_grad`` is carried; where several become
    one of ours (the per-order weights: our ``weight``) and only some are frozen, the
    conversion is refused by name (our parameter cannot be part frozen). Controls: all
    frozen and all trainable convert as before."""
    so2 = gspaces.rot2dOnR2(-1, maximum_frequency=4)
    t2 = esc.FieldType(so2, 2 * [so2.irrep(0), so2.irrep(1), so2.irrep(2)])
    c8 = gspaces.rot2dOnR2(8)
    whole = esc.FieldType(c8, 2 * [esc.FieldType(c8, [c8.irrep(0), c8.irrep(1)]).representation])

    def grads(m):
        return {n: p.requires_grad for n, p in from_escnn(m).named_parameters()}

    def frozen(m, *ends):
        for n, p in m.named_parameters():
            p.requires_grad_(not n.endswith(ends))
        return m

    with seeded_rng(0):
        gnorm, iid = esc.GNormBatchNorm(t2), esc.IIDBatchNorm2d(whole)
    assert grads(frozen(gnorm, "irrep_0_bias")) == {"weight": True, "bias": False}
    assert grads(frozen(iid, "_weight")) == {"weight": False, "bias": True}
    assert grads(frozen(iid, "_bias")) == {"weight": True, "bias": False}
    assert grads(frozen(gnorm, "_weight")) == {"weight": False, "bias": True}
    with pytest.raises(ValueError, match=r"module\.1: GNormBatchNorm's parameters irrep_0_weight "
                       r"\(frozen.*\) and irrep_1_weight, irrep_2_weight \(trainable\) all "
                       r"become our HarmonicBatchNorm's 'weight'.*freeze all of them or none"):
        from_escnn(esc.SequentialModule(esc.IdentityModule(t2), frozen(gnorm, "irrep_0_weight")))
    with pytest.raises(ValueError, match=r"module: GNormBatchNorm's parameters irrep_1_weight, "
                       r"irrep_2_weight \(frozen"):
        from_escnn(frozen(gnorm, "irrep_1_weight", "irrep_2_weight"))
    # an empty parameter (escnn's per-irrep bias of an order > 0 holds no values) is no part
    assert grads(frozen(gnorm, "_bias")) == {"weight": True, "bias": False}
    assert grads(frozen(gnorm, "irrep_1_bias")) == {"weight": True, "bias": True}
    # controls: all frozen, all trainable
    for m in (gnorm, iid):
        assert set(grads(frozen(m, ""))) == {"weight", "bias"}
        assert not any(grads(frozen(m, "")).values())
        assert all(grads(frozen(m, "no such name")).values())


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
@pytest.mark.parametrize("whole", [False, True])
def test_norm_max_pool_converts(space, whole, gen):
    """escnn's ``NormMaxPool`` -> our :class:`NormMaxPool`: ``per="order"`` on separate irreps,
    ``per="field"`` on one representation per field; exactly escnn's outputs."""
    flips = space in ("o2", "d8")
    n = -1 if space in ("so2", "o2") else 8
    gs = gspaces.flipRot2dOnR2(n, 4) if flips else gspaces.rot2dOnR2(n, 4)
    fg = gs.fibergroup
    irreps = ([fg.irrep(0, 0), fg.irrep(1, 1), fg.irrep(1, 2)] if flips
              else [fg.irrep(m) for m in range(3)])
    t = esc.FieldType(gs, 3 * ([eg.directsum(irreps)] if whole else irreps))
    m = esc.NormMaxPool(t, 3, 2, 1)
    ours = from_escnn(m)
    assert isinstance(ours, NormMaxPool) and ours.per == ("field" if whole else "order")
    x = torch.randn(2, t.size, 9, 9, generator=gen)
    q = escnn_field_matrix(space, 2).float()
    with torch.no_grad():
        got = torch.einsum("ji,bcjyx->bciyx", q,
                           ours(torch.einsum("ij,bcjyx->bciyx", q, x.unflatten(1, (3, 5)))))
        torch.testing.assert_close(got.flatten(1, 2), m(esc.GeometricTensor(x, t)).tensor)


# (size=(9, 11) on a D4 map is not exact: a quarter turn would need the 11 x 9 box; warned)
@pytest.mark.filterwarnings(r"ignore:GroupUpsample2d\(size=\(9, 11\).*not exactly equivariant")
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=3, mode="nearest"),
                                dict(size=(9, 11)), dict(scale_factor=2, align_corners=True)])
def test_upsampling_converts_on_every_field_type(kw, gen):
    """``R2Upsampling`` (escnn's default ``bilinear``) on regular, trivial and irrep fields
    -> ``GroupUpsample2d``: escnn's outputs in our layout."""
    gs = gspaces.flipRot2dOnR2(4)
    for t, ours_of in [(_regular(gs, 2), lambda x: x.flatten(1, 2)), (_trivial(gs, 3), None),
                       (esc.FieldType(gs, 2 * [gs.irrep(1, 1)]), lambda x: x.flatten(1, 2))]:
        m = esc.R2Upsampling(t, **kw)
        ours = from_escnn(m)
        x = torch.randn(2, t.size, 5, 6, generator=gen)
        want = m(esc.GeometricTensor(x, t)).tensor
        inp = x if ours_of is None else x.unflatten(1, (len(t), -1))
        got = ours(inp)
        torch.testing.assert_close(got if ours_of is None else ours_of(got), want)


def test_upsampling_converts_on_volumes(gen):
    t = _regular(gspaces.octaOnR3(), 1)
    m = esc.R3Upsampling(t, scale_factor=2, mode="trilinear")
    x = torch.randn(1, 24, 3, 4, 3, generator=gen)
    want = m(esc.GeometricTensor(x, t)).tensor
    got = from_escnn(m)(x.unflatten(1, (1, 24)))
    torch.testing.assert_close(got.flatten(1, 2), want)  # every slot alone: any slot order


def test_upsampling_with_a_fractional_factor_is_refused():
    m = esc.R2Upsampling(_regular(gspaces.rot2dOnR2(4), 1), scale_factor=1.5)
    with pytest.raises(ValueError, match="scale_factor=1.5: only integer factors"):
        from_escnn(m)


def test_pools_around_group_pooling_and_adaptive_pools_convert(gen):
    """The pools a model has after ``GroupPooling`` (trivial fields: ``torch.nn``'s) and the
    adaptive pools (regular or trivial fields), in an escnn ``SequentialModule`` whose names
    are kept."""
    gs = gspaces.rot2dOnR2(4)
    t_in, t1, t2 = _trivial(gs, 2), _regular(gs, 3), _trivial(gs, 3)
    with seeded_rng(0):
        model = esc.SequentialModule(OrderedDict([
            ("conv", esc.R2Conv(t_in, t1, 3, padding=1)),
            ("adapt", esc.PointwiseAdaptiveMaxPool2D(t1, (8, 6))),
            ("gpool", esc.GroupPooling(t1)), ("max", esc.PointwiseMaxPool2D(t2, 3, 2, 1)),
            ("avg", esc.PointwiseAvgPool2D(t2, 2, ceil_mode=True)),
            ("head", esc.PointwiseAdaptiveAvgPool2D(t2, 1))])).eval()
    ours = from_escnn(model)
    assert [n for n, _ in ours.named_children()] == ["conv", "adapt", "gpool", "max", "avg",
                                                     "head"]
    x = torch.randn(2, 2, 12, 12, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        assert _rel(ours(x), want) < 1e-6 and want.shape == (2, 3, 1, 1)
        assert _rel(ours[:2](x).flatten(1, 2), model[:2](esc.GeometricTensor(x, t_in)).tensor
                    ) < 1e-6


@pytest.mark.parametrize("fields", ["regular", "trivial"])
def test_max_pool_keeps_dilation_and_ceil_mode(fields, gen):
    """``PointwiseMaxPool2D`` with a dilation and ``ceil_mode=True`` on regular fields (our
    group pool) and on trivial ones (``nn.MaxPool2d``): escnn's outputs, shape included (on
    12 x 12, kernel 3 dilated to 5, stride 2: ceil gives 6 x 6, floor 5 x 5); our group pool
    warns that such a size is not tiled by the stride."""
    gs = gspaces.rot2dOnR2(4)
    t = _regular(gs, 2) if fields == "regular" else _trivial(gs, 3)
    pool = esc.PointwiseMaxPool2D(t, 3, 2, 1, dilation=2, ceil_mode=True)
    x = torch.randn(2, t.size, 12, 12, generator=gen)
    want = pool(esc.GeometricTensor(x, t)).tensor
    if fields == "trivial":
        got = from_escnn(pool)(x)
    else:  # ceil_mode matters where the stride does not tile: ours says so
        with pytest.warns(UserWarning, match="not exactly equivariant on input of size 12x12"):
            got = from_escnn(pool)(x.unflatten(1, (2, 4)))
    assert want.shape[-2:] == (6, 6) and _rel(got.flatten(1, -3), want) < 1e-6


def test_torch_containers_of_escnn_modules_convert():
    gs = gspaces.rot2dOnR2(4)
    t_in, t1 = _trivial(gs, 1), _regular(gs, 2)
    with seeded_rng(0):
        blocks = torch.nn.ModuleDict({
            "stem": torch.nn.Sequential(esc.R2Conv(t_in, t1, 3, padding=1), esc.ReLU(t1)),
            "pools": torch.nn.ModuleList([esc.GroupPooling(t1)])}).eval()
    ours = from_escnn(blocks)
    assert isinstance(ours, torch.nn.ModuleDict) and not ours.training
    assert [type(m).__name__ for m in ours["stem"]] == ["LiftingConv2d", "ReLU"]
    x = torch.randn(1, 1, 7, 7)
    with torch.no_grad():
        want = blocks["pools"][0](blocks["stem"](esc.GeometricTensor(x, t_in))).tensor
        assert _rel(ours["pools"][0](ours["stem"](x)), want) < 1e-6
    with pytest.raises(TypeError, match=r"got Linear \(at module.head\).*convert its escnn "
                                        "submodules"):
        from_escnn(torch.nn.ModuleDict({"stem": blocks["stem"],
                                        "head": torch.nn.Linear(2, 2)}))


@pytest.mark.parametrize("build,hint", [
    (lambda gs, t: esc.MultipleModule(t, ["a", "b"], [(esc.ReLU(_regular(gs, 1)), "a"),
                                                      (esc.ReLU(_regular(gs, 1)), "b")]),
     "convert each branch"),
    (lambda gs, t: esc.GatedNonLinearity1(esc.FieldType(gs, [gs.trivial_repr, gs.irrep(1)])),
     "port it by hand"),
    (lambda gs, t: esc.NormBatchNorm(esc.FieldType(gs, [gs.irrep(1)])), "use GNormBatchNorm"),
    (lambda gs, t: esc.VectorFieldNonLinearity(t), r"port it by hand \(docs/escnn.md"),
    # a hint's later names too
    (lambda gs, t: esc.BranchingModule(t, ["a", "b"]), "convert each branch"),
    (lambda gs, t: esc.GatedNonLinearity2((_trivial(gs, 1), esc.FieldType(gs, [gs.irrep(1)]))),
     "escnn's gates are separate scalar fields"),
    (lambda gs, t: esc.ReshuffleModule(t, [1, 0]), "permutes escnn's channels"),
], ids=["MultipleModule", "Gated", "NormBatchNorm", "other", "BranchingModule", "Gated2",
        "ReshuffleModule"])
def test_unsupported_modules_say_what_to_do(build, hint):
    gs = gspaces.rot2dOnR2(4)
    m = build(gs, esc.FieldType(gs, 2 * [gs.regular_repr]))
    with pytest.raises(TypeError, match=f"escnn.nn.{type(m).__name__} has no equilayers "
                                        f"equivalent: .*{hint}"):
        from_escnn(esc.SequentialModule(m))


@pytest.mark.parametrize("kind", ["gnorm_so2", "iid_c8", "gnorm_so3"])
def test_trained_batch_norms_keep_eps_momentum_and_statistics(kind, gen):
    """A ``GNormBatchNorm`` (SO(2), SO(3)) / ``IIDBatchNorm2d`` (C8) with another ``eps`` and
    ``momentum``, trained a few steps on inputs with a mean: ours has escnn's ``eps``,
    ``momentum``, running mean and ``num_batches_tracked``, and escnn's eval outputs."""
    if kind == "gnorm_so3":
        gs = gspaces.rot3dOnR3(maximum_frequency=2)
        t = esc.FieldType(gs, 2 * [gs.irrep(0), gs.irrep(1)])
        size, split = (5, 5, 5), (2, 4)
    elif kind == "gnorm_so2":
        gs = gspaces.rot2dOnR2(-1, maximum_frequency=4)
        t = esc.FieldType(gs, 2 * [gs.irrep(0), gs.irrep(1)])
        size, split = (6, 6), (2, 3)
    else:
        gs = gspaces.rot2dOnR2(8)
        rep = esc.FieldType(gs, [gs.irrep(0), gs.irrep(1)]).representation
        t = esc.FieldType(gs, 2 * [rep])
        size, split = (6, 6), (2, 3)
    cls = esc.IIDBatchNorm2d if kind == "iid_c8" else esc.GNormBatchNorm
    bn = cls(t, eps=1e-2, momentum=0.3).train()
    with torch.no_grad():
        for _ in range(3):
            bn(esc.GeometricTensor(torch.randn(4, t.size, *size, generator=gen) + 2.0, t))
    bn.eval()
    ours = from_escnn(bn)
    assert (ours.eps, ours.momentum, int(ours.num_batches_tracked)) == (1e-2, 0.3, 3)
    assert float(ours.running_mean.abs().min()) > 0.5  # moved by the trained steps
    x = torch.randn(2, t.size, *size, generator=gen) + 2.0
    with torch.no_grad():
        want = bn(esc.GeometricTensor(x, t)).tensor
        assert _rel(ours(x.unflatten(1, split)).flatten(1, 2), want) < 1e-5


def test_iid_batch_norm_without_running_stats_warns():
    """With ``track_running_stats=False`` escnn's IID batch norm uses the batch's unbiased
    variance in eval mode too: the converted layer differs there, and says so."""
    gs = gspaces.rot2dOnR2(-1, maximum_frequency=4)
    t = esc.FieldType(gs, 2 * [gs.fibergroup.spectral_regular_representation((0,), (1,))])
    with pytest.warns(UserWarning, match="track_running_stats=False .* differ"):
        from_escnn(esc.IIDBatchNorm2d(t, track_running_stats=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_escnn(esc.IIDBatchNorm2d(t))  # the control: with running statistics, silent


@pytest.mark.parametrize("space", ["c4", "c8", "so2"])
def test_eval_mode_conv_with_a_stale_cached_filter_is_refused(space, gen):
    """escnn's eval-mode conv convolves with the filter it cached at ``.eval()``: weights
    loaded afterwards (``load_state_dict(..., strict=False)``, the checkpoint having no
    ``filter``) leave escnn's outputs on the old filter, which converting the weights would
    silently not reproduce; refused, naming the fix, after which the conversion gives
    escnn's eval outputs."""
    if space == "so2":
        gs = gspaces.rot2dOnR2(-1, maximum_frequency=4)
        t_out = esc.FieldType(gs, 2 * [gs.irrep(0), gs.irrep(1)])
    else:
        gs = gspaces.rot2dOnR2(int(space[1:]))
        t_out = _regular(gs, 2)
    t_in = _trivial(gs, 1)
    with seeded_rng(0):
        conv = esc.R2Conv(t_in, t_out, 5, padding=2).eval()
    trained = {"weights": conv.weights.detach() + torch.randn(conv.weights.shape,
                                                              generator=gen)}
    conv.load_state_dict(trained, strict=False)
    with pytest.raises(ValueError, match=r"stale filters; call \.train\(\) then \.eval\(\)"):
        from_escnn(conv)
    conv.train().eval()
    bias = {"bias": conv.bias.detach() + 1.0}  # the bias alone loaded after .eval()
    conv.load_state_dict(bias, strict=False)
    with pytest.raises(ValueError, match=r"stale filters; call \.train\(\) then \.eval\(\)"):
        from_escnn(conv)
    conv.train().eval()
    ours = from_escnn(conv)
    x = torch.randn(2, 1, 9, 9, generator=gen)
    with torch.no_grad():
        assert _rel(ours(x).flatten(1, 2), conv(esc.GeometricTensor(x, t_in)).tensor) < 1e-5


def test_a_half_precision_eval_conv_with_a_zero_bias_converts(gen):
    """escnn's default zero bias in float16: the stale-filter check scaled by
    ``clamp_min(1e-30)``, 0 in float16, compared 0/0 and refused a fresh cache as stale. The
    control: a stale float16 cache is still refused. (C3 and k=7, sigma=0.7: settings no other
    test shares, as escnn shares one sampled basis between convs of the same settings.)"""
    gs = gspaces.rot2dOnR2(3)
    with seeded_rng(0):
        conv = esc.R2Conv(_trivial(gs, 1), _regular(gs, 2), 7, padding=3, sigma=0.7)
    conv = conv.half().train().eval()
    assert float(conv.bias.detach().abs().max()) == 0.0  # escnn's default
    ours = from_escnn(conv)
    assert ours.weight.dtype == torch.float16
    conv.load_state_dict({"weights": conv.weights.detach() + 1.0}, strict=False)
    with pytest.raises(ValueError, match=r"stale filters"):
        from_escnn(conv)


@pytest.mark.parametrize("n", [8, -1])
def test_norm_pool_after_a_dihedral_to_rotation_restriction_converts(n, gen):
    """D_N irreps restricted to C_N carry no ``frequency`` attribute in escnn (the irrep they
    restrict to does): ``NormPool`` after ``RestrictionModule(t, (None, N))`` was refused as
    "not fields of one trivial or 2-D irrep" while the O(2) -> SO(2) model converted."""
    gs = gspaces.flipRot2dOnR2(n) if n > 0 else gspaces.flipRot2dOnR2(-1, maximum_frequency=4)
    g = gs.fibergroup
    t = esc.FieldType(gs, 2 * [g.irrep(0, 0), g.irrep(1, 1), g.irrep(1, 2)])
    res = esc.RestrictionModule(t, (None, n))
    t_in = _trivial(gs, 1)
    with seeded_rng(0):
        model = esc.SequentialModule(esc.R2Conv(t_in, t, 5, padding=2), res,
                                     esc.NormPool(res.out_type)).eval()
    ours = from_escnn(model)
    x = torch.randn(2, 1, 7, 7, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x).flatten(1, -3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("space", ["c8", "d4"])
def test_layers_on_trivial_fields_are_refused_naming_the_port_by_hand(space):
    """C_N/D_N layers on trivial fields (after a GroupPooling) and a regular -> trivial conv
    have no converter: refused at conversion, naming the hand port (a conversion of the
    trivial-only layers as order-0 harmonic fields gave 5-D tensors that the pools and
    GroupPool around them, 4-D, refused at the call)."""
    gs = gspaces.rot2dOnR2(8) if space == "c8" else gspaces.flipRot2dOnR2(4)
    ti = _trivial(gs, 3)
    for layer in (esc.R2Conv(_regular(gs, 2), ti, 1), esc.R2Conv(ti, ti, 3),
                  esc.IIDBatchNorm2d(ti), esc.InnerBatchNorm(ti)):
        with pytest.raises(ValueError, match=r"non-regular fields .* by hand.*"
                                             r"GroupPool\(reduction='mean'\)"):
            from_escnn(layer)
