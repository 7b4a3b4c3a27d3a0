import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import doc_code, seeded_rng
from torch import nn

import equilayers
from equilayers import antialias
from equilayers.nn import BlurConv2d, BlurPool2d, MaxBlurPool2d, PolyphasePool2d


class Block(nn.Module):
    def __init__(self, cin, cout, stride, padding_mode="zeros"):
        super().__init__()
        pm = {"padding_mode": padding_mode, "bias": False}
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, **pm)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, **pm)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


def resnet(padding_mode="zeros"):
    """A small ResNet: strided 7x7 stem, 3x3/2 max-pool, two strided residual stages."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 7, 2, 3, bias=False, padding_mode=padding_mode), nn.BatchNorm2d(16),
        nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        Block(16, 16, 1, padding_mode), Block(16, 32, 2, padding_mode),
        Block(32, 64, 2, padding_mode),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


STRIDED = ["0", "3", "5.conv1", "5.down.0", "6.conv1", "6.down.0"]


def test_blur_mode_replacements_and_weights():
    model = resnet().eval()
    new, report = antialias(model, return_report=True)
    assert [r.name for r in report] == STRIDED
    kinds = {r.name: type(r.new) for r in report}
    assert kinds["3"] is MaxBlurPool2d and kinds["0"] is BlurConv2d
    assert all(isinstance(r.old, (nn.Conv2d, nn.MaxPool2d)) for r in report)
    for r in report:
        assert new.get_submodule(r.name) is r.new
        assert type(model.get_submodule(r.name)) is type(r.old)  # not in place: original kept
        if isinstance(r.new, BlurConv2d):
            assert torch.equal(r.new.weight, r.old.weight)
            assert r.new.stride == r.old.stride[0]
    # the old state_dict loads into the converted model (same keys)
    new.load_state_dict(model.state_dict())
    for n in [32, 33, 45, 64]:
        x = torch.randn(2, 3, n, n)
        assert new(x).shape == model(x).shape
        h = x
        for a, b in zip(model[:4], new[:4], strict=True):  # intermediate shapes too
            assert b(h).shape == a(h).shape
            h = a(h)


def test_polyphase_mode_resnet_shapes():
    model = resnet().eval()
    new, report = antialias(model, mode="polyphase", return_report=True)
    assert [r.name for r in report] == STRIDED
    assert all(isinstance(r.new[-1], PolyphasePool2d) for r in report)
    assert torch.equal(new[0][0].weight, model[0].weight)
    for n in [32, 64]:
        x = torch.randn(2, 3, n, n)
        assert new(x).shape == model(x).shape


def test_polyphase_mode_plain_chain_is_exactly_shift_invariant():
    conv = {"padding_mode": "circular", "dtype": torch.float64}
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, **conv), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, 1, 1, **conv), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(8, 8, 3, 2, 1, **conv), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten()).eval()
    new = antialias(model, mode="polyphase", blur_size=3)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        y = new(x)
        assert y.shape == model(x).shape
        for shift in [(1, 0), (0, 1), (5, 3), (-7, 11)]:
            ys = new(torch.roll(x, shift, (-2, -1)))
            torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-10)
        # the original model is not invariant (negative control)
        e = (model(torch.roll(x, (1, 0), (-2, -1))) - model(x)).norm() / model(x).norm()
        assert e > 1e-3


def test_avgpool_and_skip_and_inplace():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, 1, 1),
                          nn.Sequential(nn.Conv2d(4, 4, 3, 2, 1)), nn.MaxPool2d(2, 1))
    new, report = antialias(model, skip=["3"], return_report=True)
    assert [r.name for r in report] == ["0", "1"]
    assert isinstance(new[1][1], BlurPool2d) and type(new[3][0]) is nn.Conv2d
    for n in [16, 17, 23]:
        x = torch.randn(1, 3, n, n)
        assert new(x).shape == model(x).shape
    _, report = antialias(model, skip=lambda name, m: isinstance(m, nn.AvgPool2d),
                          return_report=True)
    assert [r.name for r in report] == ["0", "3.0"]
    same = antialias(model, inplace=True)
    assert same is model and isinstance(model[0], BlurConv2d)
    # idempotent: converted layers are not converted again
    _, report = antialias(model, return_report=True)
    assert report == []


def test_every_use_of_a_shared_module_is_converted_and_stays_shared():
    pool = nn.MaxPool2d(2)
    conv = nn.Conv2d(4, 4, 3, 2, 1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool, conv, pool, conv)
    new, report = antialias(model, return_report=True)
    assert [r.name for r in report] == ["1", "2", "3", "4"]
    assert type(new[1]) is MaxBlurPool2d and new[3] is new[1]
    assert type(new[2]) is BlurConv2d and new[4] is new[2]  # one conv: the weight stays tied
    x = torch.randn(1, 3, 32, 32)
    assert new(x).shape == model(x).shape
    # a skipped use is left alone, the others converted
    new = antialias(model, skip=["3"])
    assert type(new[1]) is MaxBlurPool2d and type(new[3]) is nn.MaxPool2d


def test_the_model_itself_is_converted():
    conv = nn.Conv2d(3, 8, 3, 2, 1)
    new, report = antialias(conv, return_report=True)
    assert type(new) is BlurConv2d and [r.name for r in report] == [""]
    assert torch.equal(new.weight, conv.weight)
    assert type(antialias(nn.MaxPool2d(2))) is MaxBlurPool2d
    assert type(antialias(nn.MaxPool2d(2), skip=[""])) is nn.MaxPool2d
    assert type(antialias(nn.Conv2d(3, 8, 3, 2, 1), mode="polyphase")[-1]) is PolyphasePool2d


def test_frozen_weights_stay_frozen_and_parameters_are_kept():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1))
    model[0].requires_grad_(False)
    for mode in ["blur", "folded", "polyphase"]:
        new = antialias(model, mode=mode)
        assert [p.requires_grad for p in new.parameters()] == [False, False, True, True]
    old = list(model.parameters())
    new = antialias(model, inplace=True)  # the same parameter objects: an optimizer keeps them
    assert all(a is b for a, b in zip(new.parameters(), old, strict=True))


def test_new_modules_take_the_models_training_mode_device_and_dtype():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.MaxPool2d(2), nn.AvgPool2d(2)).double()
    new = antialias(model.eval())
    assert not any(m.training for m in new.modules())
    assert new[1].filter.dtype == new[2][1].filter.dtype == torch.float64
    assert new[0].weight.dtype == torch.float64
    assert all(m.training for m in antialias(model.train()).modules())
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.MaxPool2d(2))
    new = antialias(meta)
    assert new[0].weight.is_meta and new[1].filter.is_meta
    # the nearest enclosing module with a parameter decides: a half block in a float model
    mixed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2),
                          nn.Sequential(nn.Conv2d(4, 4, 3), nn.MaxPool2d(2)).half())
    new = antialias(mixed)
    assert new[1].filter.dtype == torch.float32 and new[2][1].filter.dtype == torch.float16


def test_which_modes_load_a_plain_state_dict():
    """As docs/layers/antialias.md says: blur and folded keep the names, polyphase adds a .0."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.MaxPool2d(2))
    for mode in ["blur", "folded"]:
        antialias(model, mode=mode).load_state_dict(model.state_dict())
    new = antialias(model, mode="polyphase")
    assert list(new.state_dict()) == ["0.0.weight", "0.0.bias"]
    with pytest.raises(RuntimeError, match="Missing key"):
        new.load_state_dict(model.state_dict())


def test_a_valid_padded_strided_conv_is_converted(gen):
    """``nn.Conv2d(..., stride=2, padding="valid")`` (torch's no padding) is converted like
    ``padding=0`` in the blur modes (it was left alone as a string padding)."""
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, 2, "valid"))
    zero = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 0))
    zero.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 13, 13, generator=gen)
    for mode in ("blur", "folded"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing left alone
            model = antialias(plain, mode=mode)
        assert isinstance(model[0], BlurConv2d)
        torch.testing.assert_close(model(x), antialias(zero, mode=mode)(x), rtol=0, atol=0)


def test_unsupported_layers_are_left_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, (2, 1)), nn.MaxPool2d(2, return_indices=True))
    with pytest.warns(UserWarning, match="left these strided layers alone"):
        _, report = antialias(model, return_report=True)
    assert report == []
    # polyphase: a conv whose stride-1 copy would not keep the size (3x3, no padding)
    with pytest.warns(UserWarning, match="does not keep the size"):
        _, report = antialias(nn.Sequential(nn.Conv2d(3, 4, 3, 2)), mode="polyphase",
                              return_report=True)
    assert report == []


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(4, 2, 1)],
                         ids=repr)
def test_polyphase_pools_keep_the_windows_of_the_original(pool):
    """In polyphase mode a pool becomes a circular pad, the window op at stride 1 and a
    PolyphasePool2d: the pad is (k-1)//2 before and the rest after, so component (0, 0) of the
    stride-1 map holds the original pool's windows (away from its padding), on a non-square
    input in both dims."""
    new = antialias(pool, mode="polyphase")
    x = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    y = new[1](new[0](x))[..., ::2, ::2]
    if pool.padding:  # inner windows only: circular padding instead of torch's
        y, ref = y[..., 1:-1, 1:-1], pool(x)[..., 1:-1, 1:-1]
    else:
        ref = pool(x)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_bad_arguments():
    model = resnet()
    with pytest.raises(ValueError, match="mode='fancy'"):
        antialias(model, mode="fancy")
    with pytest.raises(ValueError, match="blur_size=9"):
        antialias(model, blur_size=9)
    with pytest.raises(ValueError, match="layer9"):
        antialias(model, skip=["layer9"])
    with pytest.raises(TypeError, match="skip="):
        antialias(model, skip="0")
    with pytest.raises(TypeError, match="nn.Module"):
        antialias(lambda x: x)


def _images(size):
    from skimage import data, transform

    out = []
    for im in [data.astronaut(), data.camera(), data.coffee(), data.chelsea()]:
        im = im.astype(np.float64) / 255.0
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        im = transform.resize(im, (size + 4, size + 4), anti_aliasing=True)
        out.append(torch.tensor(im, dtype=torch.float32).permute(2, 0, 1))
    return torch.stack(out)


def _change(model, x, size):
    """Mean relative change of the logits under 1-px crop shifts and circular shifts."""
    base = model(x[..., :size, :size])
    crop, circ = [], []
    for dy, dx in [(1, 0), (0, 1), (1, 1)]:
        shifted = model(x[..., dy:dy + size, dx:dx + size])
        crop.append(((shifted - base).norm(dim=1) / base.norm(dim=1)).mean())
        rolled = model(torch.roll(x[..., :size, :size], (dy, dx), (-2, -1)))
        circ.append(((rolled - base).norm(dim=1) / base.norm(dim=1)).mean())
    return float(torch.stack(crop).mean()), float(torch.stack(circ).mean())


def test_real_images_one_pixel_shift_change_drops():
    pytest.importorskip("skimage")
    x = _images(64)
    model = resnet().eval()
    with torch.no_grad():
        crop0, circ0 = _change(model, x, 64)
        crop1, circ1 = _change(antialias(model), x, 64)
        crop2, circ2 = _change(antialias(model, mode="polyphase"), x, 64)
    # measured here (seed 0): original 8.7e-3 / 1.1e-2, blur 1.8e-3 / 2.9e-3
    assert crop1 < 0.5 * crop0 and circ1 < 0.5 * circ0, (crop0, crop1, circ0, circ1)
    assert crop2 < 0.5 * crop0 and circ2 < 0.5 * circ0, (crop0, crop2, circ0, circ2)


def test_exported_at_top_level():
    assert equilayers.antialias is antialias and "antialias" in equilayers.__all__


def test_readme_snippet_runs():
    scope: dict = {}
    exec(doc_code("docs/layers/antialias.md", "The math"), scope)
    assert [r.name for r in scope["report"]] == ["0", "1"]


@pytest.mark.parametrize("layer", [nn.Conv1d(2, 2, 3, stride=2), nn.MaxPool1d(2),
                                   nn.AvgPool3d(2), nn.Conv3d(2, 2, 3, stride=(1, 2, 2))])
def test_strided_1d_and_3d_layers_are_named_not_skipped_silently(layer):
    """antialias() rewrites 2-D layers; a strided 1-D or 3-D one is left with a warning naming
    it and the by-hand fix (it was left without a word). The control: stride 1 stays silent."""
    with pytest.warns(UserWarning, match=rf"a strided \d-D {type(layer).__name__}.*BlurPool"):
        out = antialias(nn.Sequential(layer))
    assert type(out[0]) is type(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        antialias(nn.Sequential(nn.Conv1d(2, 2, 3), nn.MaxPool3d(2, stride=1)))


class CeilModeNet(nn.Module):
    """The ceil_mode pools of real models, by hand: torchvision's GoogLeNet and SqueezeNet
    (``MaxPool2d(3, 2, ceil_mode=True)``) and timm's ResNet-D shortcut
    (``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`` before a 1x1 conv)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.short = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                                   nn.Conv2d(8, 8, 1))
        self.pad_avg = nn.AvgPool2d(3, 2, 1, ceil_mode=True)  # count_include_pad=True
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        y = self.pool(self.stem(x))
        return self.head(self.pad_avg(self.short(y)))


@pytest.mark.parametrize("size", [(16, 16), (17, 17), (15, 18), (5, 6), (3, 4)])
def test_ceil_mode_pools_are_converted_with_their_output_size(size, gen):
    """ceil_mode=True pools were left alone with a warning, so antialias() did not touch
    GoogLeNet's or SqueezeNet's max pools nor timm's ResNet-D shortcuts. Now each gets torch's
    ceil_mode size: with blur_size=1 (no blur) the converted model equals the original at
    every size, and the default blur keeps every intermediate shape."""
    model = CeilModeNet().double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left alone
        same, report = antialias(model, blur_size=1, return_report=True)
        blurred = antialias(model)
    assert [r.name for r in report] == ["pool", "short.0", "pad_avg"]
    torch.testing.assert_close(same(x), model(x), rtol=0, atol=1e-12)
    # the control: without ceil_mode the converted max pool is a size short where ceil_mode
    # adds a window (even sizes here)
    floor = antialias(model, blur_size=1)
    floor.pool.ceil_mode = False
    if nn.MaxPool2d(3, 2)(x).shape != model.pool(x).shape:
        with pytest.raises(AssertionError):
            torch.testing.assert_close(floor(x), model(x), rtol=0, atol=1e-12)
    shapes = {}
    for net in (model, blurred):
        hooks = [net.get_submodule(n).register_forward_hook(
            lambda m, a, out, n=n, net=net: shapes.setdefault(id(net), []).append(out.shape))
            for n in ("pool", "short", "pad_avg")]
        y = net(x)
        for h in hooks:
            h.remove()
    assert shapes[id(model)] == shapes[id(blurred)]
    assert isinstance(blurred.pool, MaxBlurPool2d) and blurred.pool.ceil_mode
    assert torch.isfinite(y).all()
    blurred.train()(x).square().sum().backward()  # the ceil_mode padding: finite gradients
    assert all(torch.isfinite(p.grad).all() for p in blurred.parameters())


class _OldCeilPad(nn.Module):
    """What antialias() put before a ceil_mode max pool's MaxBlurPool2d until it took
    ceil_mode itself: -inf at the bottom and right by what torch's extra window reaches past
    the input, read here off torch's own ceil_mode output size."""

    def __init__(self, k, s, p):
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x):
        k, s, p = self.k, self.s, self.p
        out = F.max_pool2d(x, k, s, p, ceil_mode=True).shape[-2:]
        eh, ew = (max(0, (o - 1) * s + k - (n + 2 * p)) for o, n in
                  zip(out, x.shape[-2:], strict=True))
        return F.pad(x, (0, ew, 0, eh), value=-float("inf"))


@pytest.mark.parametrize("k, s, p", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (4, 3, 1)])
def test_a_ceil_mode_max_pool_becomes_one_max_blur_pool_with_the_old_output(k, s, p, gen):
    """antialias() turns nn.MaxPool2d(..., ceil_mode=True) into MaxBlurPool2d(...,
    ceil_mode=True) itself (it was Sequential(pad, MaxBlurPool2d)): the output equals the old
    conversion's bit for bit at sizes where ceil_mode adds a window and where it does not (its
    input gradient too, to rounding), the state_dict keys are the original model's (the blur
    filter is a non-persistent buffer), and the shape is torch's. The control: the old
    conversion without its pad differs in shape where ceil_mode adds a window."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(k, s, p, ceil_mode=True)).double()
    new = antialias(model)
    assert isinstance(new[1], MaxBlurPool2d) and new[1].ceil_mode
    assert list(new.state_dict()) == list(model.state_dict()) == ["0.weight", "0.bias"]
    old = nn.Sequential(new[0], _OldCeilPad(k, s, p), MaxBlurPool2d(k, s, p).double())
    added = 0
    for size in [(16, 16), (17, 17), (15, 18), (5, 6), (3, 4), (1, 2)]:
        if size[0] + 2 * p < k - 1:  # too small for torch as well
            continue
        x = torch.randn(2, 3, *size, dtype=torch.float64, generator=gen, requires_grad=True)
        y, y_old = new(x), old(x)
        assert y.shape == model(x).shape
        assert torch.equal(y, y_old), size
        # and the same input gradient: the edge copies never win over the pixels they copy
        gy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0],
                                   torch.autograd.grad(y_old, x, gy)[0], rtol=0, atol=1e-12)
        added += y.shape[-2:] != tuple((n + 2 * p - k) // s + 1 for n in size)  # floor's
    assert added >= 2  # ceil_mode added a window at some of these sizes


def test_a_model_pickled_whole_with_the_old_ceil_mode_conversion_still_loads(gen):
    """Earlier versions converted MaxPool2d(ceil_mode=True) to Sequential(_CeilModePad,
    MaxBlurPool2d); a model saved whole (torch.save(model)) names that class, so it stays
    importable: the pickle of such a model (the class's __module__ and attributes as saved
    then) loads, and its output equals today's conversion's; check_grid still reads it."""
    from equilayers import check_grid
    from equilayers._surgery import _CeilModePad

    assert _CeilModePad.__module__ == "equilayers._surgery"
    old = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(
        _CeilModePad(3, 2, 0, -float("inf")), MaxBlurPool2d(3, 2, 0))).double()
    buf = io.BytesIO()
    torch.save(old, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    new = antialias(nn.Sequential(old[0], nn.MaxPool2d(3, 2, ceil_mode=True)))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=gen)
    assert torch.equal(loaded(x), new(x)) and loaded(x).shape[-2:] == (8, 8)
    assert [f.problem for f in check_grid(loaded, (1, 3, 16, 16), "d4", shifts=False)] == [
        f.problem for f in check_grid(new, (1, 3, 16, 16), "d4", shifts=False)]


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(2, 2, ceil_mode=True),
    nn.AvgPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(2, 2, ceil_mode=True),
    nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)], ids=repr)
@pytest.mark.parametrize("n", [32, 33])
def test_check_grid_reads_the_converted_ceil_mode_pools(pool, n, gen):
    """check_grid on a converted ceil_mode pool: a rotation finding exactly where the measured
    p4 error is O(1) (the extra window pads the bottom and right only), none where it is exact.
    Before, the pad module was read as a strided pool of the original window: a padding
    finding where it padded nothing, with a fix naming an argument it does not have."""
    model = antialias(nn.Sequential(nn.Conv2d(3, 4, 1), pool).double())
    findings = equilayers.check_grid(model, (1, 3, n, n), group="p4")
    rotation = [f for f in findings if f.breaks != "shifts"]
    x = torch.randn(2, 3, n, n, dtype=torch.float64, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        err = equilayers.testing.equivariance_error(model, x, "p4", in_rep="trivial",
                                                    out_rep="trivial")
    assert bool(rotation) == (err > 1e-3), (rotation, err)  # each side occurs over the params
    # a max pool is one MaxBlurPool2d(ceil_mode=True) ("1"), an average pool a Sequential whose
    # first module pads ("1.0")
    layer = "1" if isinstance(pool, nn.MaxPool2d) else "1.0"
    assert all(f.problem == "asymmetric-padding" and f.layer == layer for f in rotation)
    # the findings of the ceil_mode window name it, not a padding_mode argument that an average
    # pool's pad module does not have (where ceil_mode adds no window, a MaxBlurPool2d's own
    # padding_mode is the shift finding's fix; so always for its blur's reflect padding, a
    # finding of its own)
    assert all("ceil_mode" in f.fix for f in findings if f.layer == layer and (
        rotation or layer == "1.0") and "its blur's" not in f.message)


def _hooked(layer, calls):
    """Forward pre-, forward and full backward hooks on ``layer`` that log to ``calls``."""
    return [layer.register_forward_pre_hook(lambda m, a: calls.append(("pre", type(m)))),
            layer.register_forward_hook(lambda m, a, y: calls.append(("fwd", tuple(y.shape)))),
            layer.register_full_backward_hook(lambda m, gi, go: calls.append(("bwd", None)))]


@pytest.mark.parametrize("mode", ["blur", "folded", "polyphase"])
@pytest.mark.parametrize("inplace", [False, True])
def test_antialias_carries_the_hooks_of_the_layers_it_replaces(inplace, mode):
    """A hook on a strided conv or a max pool (a feature extractor, a gradient probe) fires on
    the layer that replaces it, with the same output shape; the user's handles still remove
    it (in place). They were dropped in silence. Control: a layer left alone keeps its hooks."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))
    calls: list = []
    handles = _hooked(net[0], calls) + _hooked(net[2], calls) + _hooked(net[3], calls)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    net(x).sum().backward()
    want = [c if c[0] != "pre" else ("pre",) for c in calls]
    out = antialias(net, inplace=inplace, mode=mode)
    calls.clear()
    out(x).sum().backward()
    # each hook fires once, on the replacement's output (in polyphase mode the stride-1 copy
    # of the conv inside the replacement fired them a second time, at full resolution)
    assert [c if c[0] != "pre" else ("pre",) for c in calls] == want
    new_types = ((BlurConv2d, MaxBlurPool2d) if mode != "polyphase"
                 else (nn.Sequential, nn.Sequential))
    assert ("pre", new_types[0]) in calls and ("pre", new_types[1]) in calls
    if inplace:  # the handles the user holds reach the hooks on the new layers
        for h in handles:
            h.remove()
        calls.clear()
        out(x).sum().backward()
        assert calls == []
