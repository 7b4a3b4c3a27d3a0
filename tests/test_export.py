"""equilayers.export: standard torch.nn layers only, same outputs, whole models."""

import contextlib

import pytest
import torch
from conftest import doc_code, seeded_rng
from torch import nn

import equilayers
from equilayers.nn import (
    GroupAvgPool2d,
    GroupBatchNorm2d,
    GroupConv2d,
    GroupMaxPool2d,
    GroupPool,
    HarmonicToRegular,
    LiftingConv2d,
    Restrict,
)
from equilayers.testing import assert_equivariant


def _p4m_model():
    with seeded_rng(0):
        return nn.Sequential(
            LiftingConv2d(3, 6, 5, padding=2, group="p4m"), GroupBatchNorm2d(6), nn.ReLU(),
            GroupConv2d(6, 6, 3, stride=2, padding=1, group="p4m"), GroupBatchNorm2d(6), nn.ReLU(),
            GroupMaxPool2d(3, 2, 1),
            GroupConv2d(6, 6, 3, padding=1, groups=2, padding_mode="circular", group="p4m"),
            nn.ReLU(),
            GroupConv2d(6, 6, 2, padding="same", padding_mode="reflect", group="p4m"), nn.ReLU(),
            GroupAvgPool2d(1),
            GroupConv2d(6, 4, 3, padding=1, dilation=1, group="p4m"),
            GroupPool(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
        ).double()


#: the k=2 'same' layer of _p4m_model (and the k=4 one below) pads asymmetrically: inexact on
#: purpose (export must handle that padding), so the eager model's first forward says so
SAME = "not exactly equivariant .*asymmetric height padding"


def _only_torch_nn(model):
    for m in model.modules():
        assert type(m).__module__.startswith("torch.nn"), type(m)


def test_export_whole_model_same_outputs(gen):
    model = _p4m_model()
    x = torch.randn(4, 3, 17, 17, generator=gen, dtype=torch.float64)
    model.train()
    with pytest.warns(UserWarning, match=SAME):
        model(x)  # move BN running stats away from their init
    model.eval()
    exported = equilayers.export(model)
    _only_torch_nn(exported)
    torch.testing.assert_close(exported(x), model(x), rtol=1e-12, atol=1e-12)
    assert not exported.training
    # the original is untouched, and its nested structure was replaced recursively
    assert isinstance(model[0], LiftingConv2d)
    wrapped = nn.Sequential(nn.Sequential(model))
    torch.testing.assert_close(equilayers.export(wrapped)(x), model(x), rtol=1e-12, atol=1e-12)


def test_export_train_mode_batch_stats(gen):
    model = _p4m_model().train()
    exported = equilayers.export(model)
    x = torch.randn(4, 3, 17, 17, generator=gen, dtype=torch.float64)
    out = exported(x)
    with pytest.warns(UserWarning, match=SAME):
        torch.testing.assert_close(out, model(x), rtol=1e-12, atol=1e-12)


def test_exported_model_stays_invariant(gen):
    """Non-square exactness (asymmetric 'same' pad of the k=2 layer) aside, the d4 parts are
    exact: check an exported stack without that layer."""
    model = nn.Sequential(LiftingConv2d(2, 4, 3, padding=1, group="p4m"), GroupBatchNorm2d(4),
                          nn.ReLU(), GroupConv2d(4, 4, 3, stride=2, padding=1, group="p4m"),
                          GroupMaxPool2d(3, 2, 1), GroupPool("mean")).double().eval()
    exported = equilayers.export(model)
    x = torch.randn(2, 2, 17, 17, generator=gen, dtype=torch.float64)
    assert_equivariant(exported, x, "p4m", in_rep="trivial", out_rep="trivial")


@pytest.mark.parametrize("layer,shape,inexact", [
    (LiftingConv2d(3, 2, 4, padding="same", padding_mode="replicate", group="c4"),
     (1, 3, 8, 8), True),
    (GroupConv2d(2, 2, 3, padding=(1, 1), padding_mode="circular", group="d2"),
     (1, 2, 4, 7, 7), False),
    (GroupConv2d(2, 2, 3, bias=False, group="d1"), (1, 2, 2, 7, 7), False),
    (GroupPool("max"), (1, 2, 4, 5, 5), False),
])
def test_export_single_layers(layer, shape, inexact, gen):
    layer = layer.double().eval()
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    exported = equilayers.export(layer)
    _only_torch_nn(exported)
    with pytest.warns(UserWarning, match=SAME) if inexact else contextlib.nullcontext():
        torch.testing.assert_close(exported(x), layer(x), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:.* is not exactly equivariant:UserWarning")  # 9x9 on purpose
@pytest.mark.parametrize("layer", [GroupMaxPool2d(2, ceil_mode=True),
                                   GroupAvgPool2d(3, 2, 1, ceil_mode=True),
                                   GroupAvgPool2d(3, 2, 1, count_include_pad=False)], ids=repr)
def test_export_pools_keep_ceil_mode_and_count_include_pad(layer, gen):
    """The exported pool keeps the options that change its output: ceil_mode (an extra window
    at 9x9) and count_include_pad (the divisors of the border windows)."""
    x = torch.randn(1, 2, 4, 9, 9, generator=gen, dtype=torch.float64)
    exported = equilayers.export(layer)
    _only_torch_nn(exported)
    assert exported(x).shape == layer(x).shape
    torch.testing.assert_close(exported(x), layer(x), rtol=0, atol=0)


# exported models stay scriptable for users who still script: the check stays, torch 2.13's
# deprecation of torch.jit.script itself is not news here
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # 2.15
def test_export_scriptable(gen):
    model = _p4m_model().eval()
    scripted = torch.jit.script(equilayers.export(model))
    x = torch.randn(1, 3, 17, 17, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match=SAME):
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-12, atol=1e-12)


def test_export_bad_input():
    with pytest.raises(TypeError, match="expects an nn.Module"):
        equilayers.export(lambda x: x)


def test_readme_group_conv_example():
    """The group-conv snippet of docs/layers/group-convs.md runs and is as exact as it says."""
    ns: dict = {}
    exec(doc_code("docs/layers/group-convs.md", "The math"), ns)
    assert equilayers.testing.equivariance_error(
        ns["net"], ns["x"], "p4m", in_rep="trivial", out_rep="trivial") < 1e-5
    torch.testing.assert_close(ns["deploy"](ns["x"]), ns["net"](ns["x"]))


@pytest.mark.parametrize("between, group", [
    (lambda: HarmonicToRegular("c8", 2), "so2"),  # fiber 5 -> 8
    (lambda: Restrict("d8", "c8"), "d8"),          # fiber 16 -> 8
])
def test_export_pools_the_fiber_that_reaches_the_pool(between, group, gen):
    """A module between the last conv and the fiber pool changes the fiber size; the export
    must pool the fiber the pool receives, not the conv's. The control: the conv's fiber
    (5 or 16) is not the pooled one, so the old single-fiber form was wrong (a different
    output, or a raw torch error)."""
    kw = {"max_order": 2} if group == "so2" else {}
    net = nn.Sequential(LiftingConv2d(1, 4, 5, padding=2, group=group, **kw), between(),
                        GroupPool("max")).eval()
    x = torch.randn(2, 1, 9, 9, generator=gen)
    assert net[0].fiber_out != 8
    torch.testing.assert_close(equilayers.export(net)(x), net(x), rtol=0, atol=1e-6)


class _Tied(nn.Module):
    """One group conv and one block holding it, each used under two names."""

    def __init__(self):
        super().__init__()
        with seeded_rng(0):
            self.lift = LiftingConv2d(3, 4, 3, padding=1)
            self.conv = GroupConv2d(4, 4, 3, padding=1)
        self.again = self.conv  # the same module under a second name
        self.block = nn.Sequential(self.conv, nn.ReLU())
        self.block_again = self.block
        self.pool = GroupPool()

    def forward(self, x):
        y = self.again(self.conv(self.lift(x)))
        return self.pool(self.block_again(self.block(y)))


def test_export_keeps_shared_modules_shared(gen):
    """A group conv used under several names (tied weights) becomes one exported module at
    every name, its weight tied as before. It was converted once per parent into independent
    copies, and a second name in the same parent (``named_children`` yields a module once)
    kept the unconverted GroupConv2d."""
    model = _Tied().eval()
    x = torch.randn(2, 3, 7, 7, generator=gen)
    exported = equilayers.export(model)
    for child in exported.children():
        _only_torch_nn(child)
    torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)
    assert exported.again is exported.conv and exported.block is exported.block_again
    assert exported.block[0] is exported.conv
    convs = {id(m) for m in exported.modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 2  # the lifting conv's and the shared group conv's
    # a plain copy of the model (no sharing) exports to one conv per use: the control
    with seeded_rng(0):
        plain = nn.Sequential(LiftingConv2d(3, 4, 3), GroupConv2d(4, 4, 3),
                              GroupConv2d(4, 4, 3))
    assert len({id(m) for m in equilayers.export(plain).modules()
                if isinstance(m, nn.Conv2d)}) == 3


def test_export_carries_hooks_to_the_exported_layers():
    """A forward hook on a group conv fires on its exported replacement with the same output;
    exporting the conv itself copies its hooks (the user's conv keeps its own, untied). They
    were dropped in silence."""
    with seeded_rng(0):
        net = nn.Sequential(LiftingConv2d(3, 4, 3, padding=1, group="p4"),
                            GroupConv2d(4, 4, 3, padding=1, group="p4"))
    seen: list = []
    net[1].register_forward_hook(lambda m, a, y: seen.append(y.detach().clone()))
    x = torch.randn(2, 3, 9, 9)
    y = net(x)
    out = equilayers.export(net)
    assert not isinstance(out[1], GroupConv2d)
    torch.testing.assert_close(out(x), y, atol=1e-5, rtol=1e-5)
    assert len(seen) == 2
    torch.testing.assert_close(seen[1], seen[0], atol=1e-5, rtol=1e-5)
    alone = equilayers.export(net[1])
    alone(y)
    assert len(seen) == 3
    alone.register_forward_hook(lambda m, a, y: seen.append("alone only"))
    net[1](y)
    assert "alone only" not in seen


def test_hook_computed_weights_are_refused_and_parametrized_ones_read(gen):
    """A pruned group conv (or one under the legacy weight_norm): export baked the weight
    copy and carried the prune hook, and the plain layer failed at its first call ("no
    attribute 'weight_mask'"); refused naming the fix, which then exports. A parametrized
    GroupBatchNorm2d failed in export itself (its state-dict keys): its values are read."""
    from torch.nn.utils import parametrize, prune

    from equilayers.nn import GroupBatchNorm2d, LiftingConv2d

    x = torch.randn(2, 1, 9, 9, generator=gen)
    conv = LiftingConv2d(1, 2, 3, padding=1, group="p4")
    prune.l1_unstructured(conv, "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"recomputed by a forward pre-hook .*prune\.remove"):
        equilayers.export(nn.Sequential(conv))
    prune.remove(conv, "weight")
    net = nn.Sequential(conv).eval()
    torch.testing.assert_close(equilayers.export(net)(x), net(x), rtol=1e-5, atol=1e-6)

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    bn = GroupBatchNorm2d(2)
    parametrize.register_parametrization(bn, "weight", Doubled())
    net = nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"), bn).eval()
    torch.testing.assert_close(equilayers.export(net)(x), net(x), rtol=1e-5, atol=1e-6)
    assert net(x).abs().max() > 0  # (the doubled weight is in the exported output)


def test_a_fiber_changed_in_a_forward_of_ones_own_is_not_pooled_silently_wrong(gen):
    """An so2 lift (5 slots) whose fields a module of the user's own turns into c8's regular
    ones (8 slots, the functional ``harmonic_to_regular``): no declared type says so, and the
    exported ``GroupPool`` became ``MaxPool3d((5, 1, 1))``, the wrong slots (0.15 off, not
    invariant). The fixed window now has stride 1 on the fiber: a fiber changed unseen gives
    another shape (or torch's error, as a ``MaxPool3d((2, 1, 1))`` across the fiber does), not
    other values. The control: a model of declared layers exports exactly, scriptable."""
    from equilayers.functional import harmonic_to_regular
    from equilayers.nn import GroupPool, LiftingConv2d

    class ToRegular(nn.Module):
        def forward(self, x):
            return harmonic_to_regular(x, "c8", 2)

    x = torch.randn(2, 1, 9, 9, generator=gen)
    for middle in (ToRegular(), nn.MaxPool3d((2, 1, 1))):
        lift = LiftingConv2d(1, 4, 3, padding=1, group="so2" if isinstance(
            middle, ToRegular) else "p4m", max_order=2 if isinstance(middle, ToRegular) else None)
        net = nn.Sequential(lift, middle, GroupPool()).eval()
        try:
            out = equilayers.export(net)(x)
        except RuntimeError as e:  # torch's: the window is wider than the fiber
            assert "size" in str(e)
            continue
        assert out.shape != net(x).shape  # not the eager output's shape with other values
    plain = nn.Sequential(LiftingConv2d(1, 4, 3, group="p4"), GroupPool()).eval()
    assert isinstance(equilayers.export(plain)[1][0], nn.MaxPool3d)
    torch.testing.assert_close(equilayers.export(plain)(x), plain(x), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # 2.15
def test_jit_script_refuses_our_modules_by_name():
    """TorchScript's own errors ("Unknown type annotation: 'FieldType'", "Module 'BlurPool2d'
    has no attribute 'in_type'") named no way out; the refusal names trace, export and
    ``equilayers.export``. The control: the exported p4 model scripts."""
    from equilayers.nn import BlurPool2d, GroupPool, LiftingConv2d

    net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), GroupPool())
    for model in (net, nn.Sequential(BlurPool2d(), nn.ReLU())):
        with pytest.raises(TypeError, match=r"torch.jit.script cannot compile .*torch.jit.trace"):
            torch.jit.script(model)
    torch.jit.script(equilayers.export(net))


def test_a_pruned_torch_layer_kept_by_export_is_refused_by_name(gen):
    """A pruned plain ``nn.Conv2d`` beside the converted layers: torch's deepcopy error
    ("Only Tensors created explicitly by the user ...") came through; now named, with the fix,
    which then exports."""
    from torch.nn.utils import prune

    from equilayers.nn import GroupPool, LiftingConv2d

    conv = nn.Conv2d(2, 2, 3)
    prune.l1_unstructured(conv, "weight", amount=0.5)
    net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), GroupPool(), conv)
    net(torch.randn(1, 1, 9, 9, generator=gen)).sum().backward()  # a computed, non-leaf weight
    with pytest.raises(ValueError, match=r"export copies the model first.*prune\.remove"):
        equilayers.export(net)
    prune.remove(conv, "weight")
    equilayers.export(net)


class _Residual(GroupConv2d):
    def forward(self, x):
        return x + super().forward(x)


class _Scaled(GroupBatchNorm2d):
    def forward(self, x):
        return 2 * super().forward(x)


def test_a_subclass_with_its_own_forward_is_kept_not_converted():
    """export picked a converter by the MRO, so a user's subclass adding a residual or a
    scale in its forward became the plain layer without it (max diff 6.7, no warning). It is
    kept, with a warning; the control: its parent classes still convert."""
    with seeded_rng(0):
        net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4", padding=1),
                            _Residual(2, 2, 3, group="p4", padding=1), _Scaled(2),
                            GroupPool()).eval()
    x = torch.randn(2, 1, 9, 9)
    with pytest.warns(UserWarning) as got:
        ex = equilayers.export(net)
    assert [str(w.message)[:60] for w in got] == [
        "export: _Residual, a subclass of GroupConv2d, has a forward ",
        "export: _Scaled, a subclass of GroupBatchNorm2d, has a forwa"]
    assert type(ex[1]) is _Residual and type(ex[2]) is _Scaled
    assert isinstance(ex[0], nn.Sequential)  # the lifting conv converts
    torch.testing.assert_close(ex(x), net(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_an_exported_avg_pool_runs_in_half_precision_on_the_cpu(dtype, gen):
    """``GroupAvgPool2d`` ran in float16/bfloat16 and its export, an ``AvgPool3d``, raised
    "avg_pool3d_out_frame not implemented for 'Half'" at its first call: a 2-D pool now."""
    with seeded_rng(0):
        net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), GroupAvgPool2d(2)).to(dtype)
    x = torch.randn(1, 1, 10, 10, generator=gen).to(dtype)  # 8x8 maps: exact
    ex = equilayers.export(net)
    _only_torch_nn(ex)
    torch.testing.assert_close(ex(x), net(x))


def test_export_leaves_the_global_generator_alone():
    """The plain layers' initialisers drew from torch's global generator (their weights are
    then overwritten), by an amount growing with the model: a seeded script that exported a
    checkpoint mid-run drew other batches and dropout masks after. The control: building the
    model itself does draw."""
    net = nn.Sequential(LiftingConv2d(1, 4, 3, group="p4m"), GroupConv2d(4, 4, 3, group="p4m"),
                        GroupPool()).eval()
    before = torch.random.get_rng_state()
    equilayers.export(net)
    equilayers.export(model=net)  # (the keyword, as the signature names it)
    assert torch.equal(torch.random.get_rng_state(), before)
    LiftingConv2d(1, 4, 3, group="p4m")
    assert not torch.equal(torch.random.get_rng_state(), before)


class _DrawsWhenCopied(nn.Module):
    """Stands for another thread drawing from the global generator while ``export`` runs:
    ``export`` deep-copies it, and the copy draws once."""

    def __deepcopy__(self, memo):
        torch.rand(1)
        return _DrawsWhenCopied()

    def forward(self, x):
        return x


def test_export_does_not_rewind_draws_made_while_it_runs():
    """``export`` saved torch's global generator and restored it on return: a draw made
    meanwhile (a training thread's dropout mask while a background thread exported
    snapshots: 2,505 of 2,693 draws repeated) was rewound and drawn again. It now builds its
    layers without drawing. The control: the draw itself moves the generator."""
    net = nn.Sequential(LiftingConv2d(1, 4, 3, group="p4m"), _DrawsWhenCopied(),
                        GroupConv2d(4, 4, 3, group="p4m"), GroupPool()).eval()
    before = torch.random.get_rng_state()
    equilayers.export(net)
    after = torch.random.get_rng_state()
    one_draw = torch.Generator()
    one_draw.set_state(before)
    torch.rand(1, generator=one_draw)
    assert not torch.equal(after, before)
    assert torch.equal(after, one_draw.get_state())



class _ToSize(nn.Module):
    """A decoder step that upsamples ``nd`` spatial dims to ``2n`` with ``output_size``."""

    def __init__(self, up, nd):
        super().__init__()
        self.up, self.nd = up, nd

    def forward(self, x, output_size=True):
        return self.up(x, output_size=[2 * x.shape[-1]] * self.nd) if output_size else self.up(x)


_TRANSPOSED = [  # (the layer, its input shape, its spatial dims)
    (lambda **kw: equilayers.nn.LiftingConvTranspose2d(1, 2, 3, 2, 1, group="p4", **kw),
     (1, 1, 5, 5), 2),
    (lambda **kw: equilayers.nn.GroupConvTranspose2d(2, 2, 3, 2, 1, group="p4", **kw),
     (1, 2, 4, 5, 5), 2),
    (lambda **kw: equilayers.nn.GroupConvTranspose3d(1, 1, 3, 2, 1, group="c4z", **kw),
     (1, 1, 4, 3, 3, 3), 3),
    (lambda **kw: equilayers.nn.SteerableConvTranspose3d(1, 1, 3, 2, 1, max_order=1, **kw),
     (1, 1, 3, 3, 3), 3),
]


@pytest.mark.filterwarnings("ignore:.*not exactly equivariant")  # (output_padding 1)
@pytest.mark.parametrize("make,shape,nd", _TRANSPOSED, ids=["lift2d", "group2d", "group3d",
                                                             "steerable3d"])
def test_export_warns_where_a_transposed_conv_was_called_with_output_size(make, shape, nd,
                                                                          gen):
    """The exported layer is an nn.Sequential, which takes no output_size: the model's forward
    failed after export with torch's bare TypeError, and export said nothing. It now warns,
    naming the layer and the output_padding to build it with; built so and called without
    output_size, the export gives the same outputs. Never called with output_size (the
    control): no warning."""
    import warnings

    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    with seeded_rng(0):
        net = _ToSize(make().double(), nd)
    want = net(x)
    with pytest.warns(UserWarning, match=r"export: \w+ 'up' has been called with output_size"
                      r"=.*build it with output_padding=\(1, 1(, 1)?\)"):
        exported = equilayers.export(net)
    with pytest.raises(TypeError, match="output_size"):
        exported(x)  # (as documented: the exported layer takes no output_size)
    with seeded_rng(0):
        fixed = _ToSize(make(output_padding=1).double(), nd)
    fixed.load_state_dict(net.state_dict())
    torch.testing.assert_close(fixed(x, output_size=False), want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the control: never called with output_size
        exported = equilayers.export(fixed)
    torch.testing.assert_close(exported(x, output_size=False), want)
    fixed(x)  # with output_size, its own output_padding's size
    with pytest.warns(UserWarning, match=r"call it without output_size: its output_padding="
                      r"\(1, 1(, 1)?\) already gives that size"):
        equilayers.export(fixed)
