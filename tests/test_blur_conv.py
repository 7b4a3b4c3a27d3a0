"""``blur_conv2d``'s exact rewrites (pool first, blur first, folded weight, each with its border
ring) against the composition they rewrite: the whole output and the gradients, to float
rounding, on random configurations."""

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers import antialias
from equilayers.functional import _blur_conv as BC
from equilayers.nn import BlurConv2d

MODES = ["zeros", "reflect", "replicate", "circular"]


def _composition(x, w, b, stride, pad, dil, groups, blur, mode, bmode):
    """The specification, written out: conv at stride 1 (padded by ``mode``), then pad with
    ``bmode`` (reflect on a dim of size <= the right pad: replicate) and correlate with the
    binomial at ``stride``."""
    ph, pw = pad
    if mode != "zeros":
        x, ph, pw = F.pad(x, (pw, pw, ph, ph), mode=mode), 0, 0
    y = F.conv2d(x, w, b, 1, (ph, pw), dil, groups)
    left = (blur - 1) // 2
    right = blur - 1 - left
    if bmode == "zeros":
        y = F.pad(y, (left, right, left, right))
    else:
        modes = ["replicate" if bmode == "reflect" and n <= right else bmode for n in y.shape[-2:]]
        y = F.pad(F.pad(y, (left, right, 0, 0), mode=modes[1]), (0, 0, left, right), mode=modes[0])
    f = EF.binomial_filter(blur, dtype=x.dtype)
    taps = torch.outer(f, f)[None, None].expand(y.shape[1], 1, blur, blur)
    return F.conv2d(y, taps, stride=stride, groups=y.shape[1])


@st.composite
def configs(draw, kernels=((1, 1), (2, 2), (3, 3), (5, 5), (1, 3), (4, 3), (7, 7))):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kh, kw = draw(st.sampled_from(kernels))
    cfg = dict(
        groups=groups, c_in=groups * draw(st.integers(1, 3)),
        c_out=groups * draw(st.integers(1, 3)), kernel=(kh, kw),
        dil=draw(st.sampled_from([(1, 1), (1, 1), (2, 1), (2, 2)])),
        stride=draw(st.integers(1, 4)), blur=draw(st.integers(1, 7)),
        mode=draw(st.sampled_from(MODES)), bmode=draw(st.sampled_from(MODES)),
        pad=(draw(st.integers(0, 3)), draw(st.integers(0, 3))),
        size=(draw(st.integers(4, 21)), draw(st.integers(4, 21))),
        bias=draw(st.booleans()), channels_last=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)))
    return cfg


def _tensors(cfg, dtype=torch.float64, grad=False):
    gen = torch.Generator().manual_seed(cfg["seed"])
    x = torch.randn(2, cfg["c_in"], *cfg["size"], generator=gen, dtype=dtype)
    if cfg["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cfg["c_out"], cfg["c_in"] // cfg["groups"], *cfg["kernel"], generator=gen,
                    dtype=dtype)
    b = torch.randn(cfg["c_out"], generator=gen, dtype=dtype) if cfg["bias"] else None
    if grad:
        x, w = x.requires_grad_(), w.requires_grad_()
        b = b.requires_grad_() if b is not None else None
    return x, w, b


def _args(cfg):
    return (cfg["stride"], cfg["pad"], cfg["dil"], cfg["groups"], cfg["blur"], cfg["mode"],
            cfg["bmode"])


def _run(cfg, x, w, b, path):
    stride, pad, dil, groups, blur, mode, bmode = _args(cfg)
    return BC._run(x, w, b, stride, pad, dil, groups, blur, mode, bmode, None, path)


def _valid(cfg, x, w, b) -> bool:
    stride, pad, dil, groups, blur, mode, bmode = _args(cfg)
    try:
        EF.blur_conv2d_path(x, w, b, stride, pad, dil, groups, blur_size=blur,
                            padding_mode=mode, blur_padding_mode=bmode)
    except ValueError:
        return False
    return True


def _paths(cfg, x, w):
    stride, pad, dil, groups, blur, mode, _ = _args(cfg)
    if mode != "zeros":
        shape = (*x.shape[:2], x.shape[2] + 2 * pad[0], x.shape[3] + 2 * pad[1])
        pad = (0, 0)
    else:
        shape = x.shape
    return list(BC._plan(shape, w.shape, pad, dil, groups, stride, blur, cfg["bmode"]))


# --- every path equals the composition ----------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(cfg=configs())
def test_every_path_equals_the_composition(cfg):
    x, w, b = _tensors(cfg)
    assume(_valid(cfg, x, w, b))
    ref = _composition(x, w, b, *_args(cfg))
    for path in _paths(cfg, x, w):
        out = _run(cfg, x, w, b, path)
        assert out.shape == ref.shape, path
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12, msg=path)
    stride, pad, dil, groups, blur, mode, bmode = _args(cfg)
    for fold in (None, True, False):  # the public entry points, each path they pick
        out = EF.blur_conv2d(x, w, b, stride, pad, dil, groups, blur_size=blur,
                             padding_mode=mode, blur_padding_mode=bmode, fold=fold)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(cfg=configs(kernels=((1, 1), (3, 3), (2, 3), (5, 5))))
def test_every_path_has_the_compositions_gradients(cfg):
    x, w, b = _tensors(cfg, grad=True)
    assume(_valid(cfg, x, w, b))
    leaves = [t for t in (x, w, b) if t is not None]
    ref = _composition(x, w, b, *_args(cfg))
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=ref.dtype)
    want = torch.autograd.grad(ref, leaves, g)
    for path in _paths(cfg, x, w):
        got = torch.autograd.grad(_run(cfg, x, w, b, path), leaves, g)
        for a, e in zip(got, want, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11, msg=path)


@pytest.mark.parametrize("path,kernel,groups", [("pool_first", 1, 1), ("blur_first", 3, 1),
                                                ("folded", 3, 2), ("folded", 4, 1)])
def test_gradcheck(path, kernel, groups, gen):
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2 // groups, kernel, kernel, generator=gen, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    for bmode in ("reflect", "zeros"):
        assert torch.autograd.gradcheck(
            lambda *t, bmode=bmode: BC._run(*t, 2, (1, 1), (1, 1), groups, 3, "zeros", bmode,
                                            None, path), (x, w, b), fast_mode=True)


def _nodes(t):
    """The names of every autograd node behind ``t``."""
    seen, todo = set(), [t.grad_fn]
    while todo:
        n = todo.pop()
        if n is not None and n not in seen:
            seen.add(n)
            todo += [f for f, _ in n.next_functions]
    return {type(n).__name__ for n in seen}


@pytest.mark.parametrize("path", ["blur_first", "folded"])
def test_ring_inputs_node_double_backward_and_torch_func(path, gen):
    """The ring's row gathers (and blur first's blur) run in one autograd node with one
    input-sized gradient; a gradient penalty differentiates through it (create_graph) and
    ``torch.func.grad``, which takes the plain ops instead, gives the same gradient."""
    x = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(t, wt=w):
        return BC._run(t, wt, None, 2, (1, 1), (1, 1), 1, 3, "zeros", "reflect", None, path)

    assert "_RingInputsBackward" in _nodes(f(x))
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)
    ref = _composition(x, w, None, 2, (1, 1), (1, 1), 1, 3, "zeros", "reflect")
    pen = []
    for fn in (f, lambda t: _composition(t, w, None, 2, (1, 1), (1, 1), 1, 3, "zeros",
                                         "reflect")):
        (g,) = torch.autograd.grad((fn(x) ** 2).sum(), x, create_graph=True)
        pen.append(torch.autograd.grad((g ** 2).sum(), (x, w)))
    for a, e in zip(*pen, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    want = torch.autograd.grad((ref ** 2).sum(), x)[0]
    got = torch.func.grad(lambda t: (f(t) ** 2).sum())(x.detach())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_float32_and_channels_last(gen):
    x = torch.randn(4, 16, 33, 32, generator=gen)
    conv = nn.Conv2d(16, 32, 3, 2, 1)
    ref = _composition(x.double(), conv.weight.double(), conv.bias.double(), 2, (1, 1), (1, 1),
                       1, 3, "zeros", "reflect")
    for fold in (None, True, False):
        m = BlurConv2d(16, 32, 3, 2, 1, fold=fold)
        m.load_state_dict(conv.state_dict())
        for fmt in (torch.contiguous_format, torch.channels_last):
            out = m(x.contiguous(memory_format=fmt))
            torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


# --- which path, and the 1x1 rewrite ------------------------------------------------------------
def test_path_choice():
    def path(c_in, c_out, k, n, groups=1, pad=None, batch=2, **kw):
        x = torch.empty(batch, c_in, n, n)
        w = torch.empty(c_out, c_in // groups, k, k)
        return EF.blur_conv2d_path(x, w, None, 2, k // 2 if pad is None else pad, 1, groups, **kw)

    # a ResNet-18 at 160x160: stem, strided 3x3s, strided 1x1 shortcuts
    assert path(3, 64, 7, 160, batch=16) == "blur_first"
    assert path(64, 128, 3, 40, batch=16) == path(128, 256, 3, 20, batch=16) == "blur_first"
    assert path(64, 128, 1, 40, pad=0) == "pool_first"
    # 9 of the 25 outputs are border: blur first still wins (measured 15-35%), at 5x5 (8 of 9
    # outputs) the composition does (2.5-4x)
    assert path(256, 512, 3, 10, batch=16) == "blur_first"
    assert path(512, 512, 3, 5, batch=16) == "reference"
    assert path(96, 96, 3, 40, groups=96) == "reference"  # depthwise: memory-bound
    assert path(64, 128, 3, 40, fold=True) == path(96, 96, 3, 40, 96, fold=True) == "folded"
    assert path(64, 128, 1, 40, pad=0, fold=True) == "pool_first"
    assert path(64, 128, 3, 40, fold=False) == "reference"
    assert path(8, 16, 3, 2, fold=True) == "reference"  # no output away from the border
    assert path(8, 16, 3, 12) == "reference"  # tiny: the rewrites' extra ops cost more


@pytest.mark.parametrize("bmode", MODES)
@pytest.mark.parametrize("pad", [0, 1])
def test_strided_1x1_is_pool_then_conv(bmode, pad, gen):
    """A strided 1x1 conv followed by the blur pool is the blur pool, then the 1x1 conv at a
    quarter of the pixels; with zero blur padding the bias is blurred too."""
    conv = nn.Conv2d(6, 8, 1, 2, pad, groups=2, dtype=torch.float64)
    x = torch.randn(2, 6, 13, 10, generator=gen, dtype=torch.float64)
    assert EF.blur_conv2d_path(x, conv.weight, conv.bias, 2, pad, groups=2,
                               blur_padding_mode=bmode, fold=True) == "pool_first"
    got = EF.blur_conv2d(x, conv.weight, conv.bias, 2, pad, groups=2, blur_padding_mode=bmode,
                         fold=True)
    ref = EF.blur_conv2d(x, conv.weight, conv.bias, 2, pad, groups=2, blur_padding_mode=bmode,
                         fold=False)
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)
    if pad == 0 and bmode != "zeros":  # spelled out: pool, then conv (bias unchanged)
        pooled = EF.blur_pool2d(x, 3, 2, bmode)
        torch.testing.assert_close(got, F.conv2d(pooled, conv.weight, conv.bias, groups=2))


# --- the module and antialias(mode="folded") -------------------------------------------------
def test_module_fold_argument(gen):
    conv = nn.Conv2d(3, 5, 3, 2, 1, dtype=torch.float64)
    x = torch.randn(2, 3, 12, 11, generator=gen, dtype=torch.float64)
    outs = []
    for fold in (None, True, False):
        m = BlurConv2d(3, 5, 3, 2, 1, dtype=torch.float64, fold=fold)
        m.load_state_dict(conv.state_dict())  # the weight stays the k x k weight
        assert m.weight.shape == conv.weight.shape and set(m.state_dict()) == {"weight", "bias"}
        outs.append(m(x))
        torch.testing.assert_close(m(x), EF.blur_conv2d(x, m.weight, m.bias, 2, 1, fold=fold))
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(outs[1], outs[2], rtol=1e-13, atol=1e-13)
    assert repr(BlurConv2d(3, 5, 3)).endswith("stride=2)")
    assert "fold=True" in repr(BlurConv2d(3, 5, 3, fold=True))
    with pytest.raises(TypeError, match="fold=1"):
        BlurConv2d(3, 5, 3, fold=1)


def test_fold_follows_weight_edits(gen):
    """The fold is recomputed in every forward: in-place weight changes are seen."""
    m = BlurConv2d(3, 4, 3, 2, 1, fold=True)
    x = torch.randn(1, 3, 10, 10, generator=gen)
    before = m(x)
    with torch.no_grad():
        m.weight.mul_(2)
    torch.testing.assert_close(m(x) - m.bias[:, None, None],
                               2 * (before - m.bias[:, None, None]))


@pytest.mark.parametrize("fold", [None, True])
def test_circular_shift_equivariance_is_exact(fold, gen):
    m = BlurConv2d(3, 4, 3, 2, 1, padding_mode="circular", dtype=torch.float64, fold=fold)
    x = torch.randn(2, 3, 12, 10, generator=gen, dtype=torch.float64)
    shifted = m(torch.roll(x, (4, -2), (-2, -1)))
    torch.testing.assert_close(shifted, torch.roll(m(x), (2, -1), (-2, -1)), rtol=1e-13,
                               atol=1e-13)


@pytest.mark.parametrize("fold", [None, True, False])
def test_circular_shift_needs_a_size_keeping_conv_and_divisible_sizes(fold, gen):
    # the docstring's conditions, both ways: a size-keeping stride-1 conv (padding =
    # dilation (k - 1) / 2, dilation 2 here) on sizes the stride divides is exact; padding 0
    # (the conv shrinks the map) or a size the stride does not divide is not
    x12 = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
    x13 = torch.randn(2, 3, 13, 13, generator=gen, dtype=torch.float64)
    for padding, x, exact in [(2, x12, True), (0, x12, False), (2, x13, False)]:
        m = BlurConv2d(3, 4, 3, 2, padding, dilation=2, padding_mode="circular",
                       dtype=torch.float64, fold=fold)
        lhs, rhs = m(torch.roll(x, (2, 4), (-2, -1))), torch.roll(m(x), (1, 2), (-2, -1))
        err = ((lhs - rhs).norm() / rhs.norm()).item()
        assert (err < 1e-13) if exact else (err > 0.05), (padding, x.shape, err)


def _model():
    with seeded_rng(0):
        return nn.Sequential(
            nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1, groups=32), nn.Conv2d(32, 48, 1, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10)).double().eval()


def test_antialias_folded_mode():
    model = _model()
    blur, blur_report = antialias(model, return_report=True)
    folded, report = antialias(model, mode="folded", return_report=True)
    assert [r.name for r in report] == [r.name for r in blur_report] == ["0", "3", "4", "6",
                                                                          "7"]
    for r in report:
        assert type(r.new) is type(blur.get_submodule(r.name))
        if isinstance(r.new, BlurConv2d):
            assert r.new.fold is True and blur.get_submodule(r.name).fold is None
            assert torch.equal(r.new.weight, r.old.weight)
    # the plain model's state_dict loads into the folded one (same keys and shapes)
    folded.load_state_dict(model.state_dict())
    for n in (64, 65):
        x = torch.randn(2, 3, n, n, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), blur(x), rtol=1e-11, atol=1e-11)
            assert folded(x).shape == model(x).shape


def test_antialias_folded_mode_shift_consistency_equals_blur():
    """The fold is exact, so its predictions under shifts are blur's."""
    model = _model().float()
    blur, folded = antialias(model), antialias(model, mode="folded")
    x = torch.randn(16, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for shift in range(1, 5):
            xs = torch.roll(x, shift, -1)
            assert torch.equal(blur(xs).argmax(1), folded(xs).argmax(1))


# --- torch.export with dynamic sizes -------------------------------------------------------------
def _blur_conv_cases():
    with seeded_rng(0):
        return {"3x3": (BlurConv2d(4, 8, 3, stride=2, padding=1), 4),
                "1x1": (BlurConv2d(4, 8, 1, stride=2), 4),
                "7x7-stem": (BlurConv2d(4, 8, 7, stride=2, padding=3), 4),
                "antialiased-resnet": (antialias(_model()), 3)}


@pytest.mark.parametrize("case", ["3x3", "1x1", "7x7-stem", "antialiased-resnet"])
def test_export_with_a_dynamic_batch(case, gen):
    """The path choice reads the example's batch size, not the symbolic one: no guard on the
    batch (the cost comparison was one, and failed the export), and the exported program
    equals eager at other batch sizes."""
    m, c = _blur_conv_cases()[case]
    m = m.double().eval()
    x = torch.randn(4, c, 28, 28, generator=gen, dtype=torch.float64)
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("b", max=64)},))
    for batch in (1, 3, 17):
        x = torch.randn(batch, c, 28, 28, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["3x3", "1x1", "7x7-stem", "antialiased-resnet"])
def test_export_with_a_dynamic_height_and_width(case, gen):
    """A symbolic height or width takes the composition (the border ring of the other paths
    depends on the sizes' parity): every size, odd or even, runs the exported program."""
    m, c = _blur_conv_cases()[case]
    m = m.double().eval()
    x = torch.randn(2, c, 72, 72, generator=gen, dtype=torch.float64)
    # from 33 px on, no blur of the ResNet (five stride-2 layers) meets a side of 1, too short
    # to reflect (replicated instead: a branch on the size, which export guards)
    dims = {2: torch.export.Dim("h", min=33, max=256), 3: torch.export.Dim("w", min=33, max=256)}
    ep = torch.export.export(m, (x,), dynamic_shapes=(dims,))
    for h, w in ((72, 72), (33, 47), (100, 131)):
        x = torch.randn(2, c, h, w, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-12, atol=1e-12)



def test_valid_padding_as_nn_conv2d(gen):
    """``padding="valid"`` is ``nn.Conv2d``'s no padding (it was a TypeError); ``"same"`` is
    refused as ``nn.Conv2d`` refuses it for strided convs, naming the int to pass."""
    conv = nn.Conv2d(3, 5, 3, 2, "valid", dtype=torch.float64)
    x = torch.randn(2, 3, 12, 11, generator=gen, dtype=torch.float64)
    m = BlurConv2d(3, 5, 3, 2, "valid", dtype=torch.float64)
    m.load_state_dict(conv.state_dict())
    zero = BlurConv2d(3, 5, 3, 2, 0, dtype=torch.float64)
    zero.load_state_dict(conv.state_dict())
    assert m.padding == (0, 0)
    torch.testing.assert_close(m(x), zero(x), rtol=0, atol=0)
    assert m(x).shape == conv(x).shape
    torch.testing.assert_close(EF.blur_conv2d(x, m.weight, m.bias, 2, "valid"), zero(x))
    with pytest.raises(ValueError, match=r"padding='same'.*padding=dilation \* \(kernel_size"):
        BlurConv2d(3, 5, 3, padding="same")
    with pytest.raises(ValueError, match="padding='full'"):
        EF.blur_conv2d(x, m.weight, padding="full")


def test_gpu_costs_launches_higher():
    """On a GPU (a meta tensor stands in for the plan's device rule here) the ring paths'
    launches outweigh their saved multiply-adds at ResNet-18's sizes: the composition; on the
    CPU the fold (the negative control: the same call)."""
    from equilayers.functional import _blur_conv as BC

    w = torch.zeros(128, 64, 3, 3)
    args = ((16, 64, 40, 40), w.shape, (1, 1), (1, 1), 1, 2, 3, "reflect")
    assert BC._choose(BC._plan(*args, BC.DEVICE_OP_COST), None) == "reference"
    assert BC._choose(BC._plan(*args), None) != "reference"


def test_ring_tables_are_bounded_in_bytes_and_held_in_the_input_dtype(gen):
    """The border ring's tables are keyed on the input size and grow as ``W^2``: bounded by
    count alone, a model fed variable-size inputs held 0.8-3.6 GB of them. The cache now
    evicts by bytes too, and holds them in the input's dtype (a float32 call copied 12 MB of
    float64 tables per forward at 1024 px)."""
    from equilayers._cpu_cache import _nbytes, cpu_cache
    from equilayers.functional import _blur_conv_ring as R

    @cpu_cache(maxsize=100, max_bytes=1000)
    def table(n):
        return torch.zeros(n, dtype=torch.float64)  # 8 n bytes

    for n in (50, 50, 60, 70, 200):  # 400, hit, 880 (evicts 50), 1440 (evicts 60), too big
        table(n)
    assert table.cache_info().currsize == 1 and table.cache_info().hits == 1
    table(10)
    assert table.cache_info().currsize == 2  # 70 and 10: 640 bytes
    table.cache_clear()

    R._ring_tables.cache_clear()
    conv = enn.BlurConv2d(8, 16, 3, stride=2, padding=1, fold=True)
    for s in (40, 41, 60):
        with torch.no_grad():
            conv(torch.randn(1, 8, s, s, generator=gen))
    info = R._ring_tables.cache_info()
    assert info.currsize > 0  # the folded path's ring ran, and its tables are held
    args = ((0, 1), (0, 20), (40, 40), (40, 40), (1, 1), (1, 1), (3, 3),
            2, 3, "zeros")
    assert all(t.dtype in (torch.long, torch.float32)
               for t in R._ring_tables(*args, torch.float32))
    assert _nbytes(R._ring_tables(*args, torch.float32)) < _nbytes(
        R._ring_tables(*args, torch.float64))
    assert R.RING_CACHE_BYTES <= 64 * 2**20
